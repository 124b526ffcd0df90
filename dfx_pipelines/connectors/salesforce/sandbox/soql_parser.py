"""Recursive-descent parser for the SOQL subset the sandbox runs; anything else is a MALFORMED_QUERY."""

from __future__ import annotations

from .soql_ast import (
    AGGREGATES,
    DATE_FUNCTIONS,
    BoolOp,
    Comparison,
    Condition,
    Expr,
    FieldRef,
    FuncCall,
    Literal,
    Not,
    OrderItem,
    Query,
    SelectItem,
)
from .soql_dates import DATE_LITERALS, DATE_LITERALS_WITH_N
from .soql_errors import malformed
from .soql_lexer import Token, tokenize

# Words that end a select item or clause; they can never be an alias.
RESERVED = frozenset({
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "GROUP", "BY", "HAVING", "ORDER", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "INCLUDES", "EXCLUDES", "WITH", "FOR",
    "USING", "TYPEOF", "END", "ROLLUP", "CUBE",
})  # fmt: skip


def parse(text: str) -> Query:
    return _Parser(text).query()


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    # ------------------------------------------------------------ token helpers

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def unexpected(self, token: Token | None = None) -> Exception:
        token = token or self.token
        if token.kind == "EOF":
            return malformed(self.text, token.pos, "unexpected token: <EOF>")
        shown = token.value if token.kind != "STRING" else f"'{token.value}'"
        return malformed(self.text, token.pos, f"unexpected token: '{shown}'")

    def expect_word(self, *words: str) -> Token:
        if not self.token.is_word(*words):
            raise self.unexpected()
        return self.advance()

    def expect(self, kind: str) -> Token:
        if self.token.kind != kind:
            raise self.unexpected()
        return self.advance()

    def accept_word(self, *words: str) -> Token | None:
        return self.advance() if self.token.is_word(*words) else None

    # ------------------------------------------------------------ query

    def query(self) -> Query:
        self.expect_word("SELECT")
        select = self.select_list()
        self.expect_word("FROM")
        obj = self.expect("IDENT")
        query = Query(self.text, select, obj.value, obj.pos)
        if self.token.kind == "IDENT" and self.token.value.upper() not in RESERVED:
            query.object_alias = self.advance().value
        if self.token.is_word("USING"):
            raise malformed(self.text, self.token.pos, "USING SCOPE is not supported by the sandbox")
        if self.accept_word("WHERE"):
            query.where = self.condition(allow_aggregates=False)
        if self.accept_word("WITH"):
            # WITH SECURITY_ENFORCED / USER_MODE / SYSTEM_MODE: the sandbox user sees everything anyway.
            if not self.token.is_word("SECURITY_ENFORCED", "USER_MODE", "SYSTEM_MODE"):
                raise self.unexpected()
            self.advance()
        if self.accept_word("GROUP"):
            self.expect_word("BY")
            if self.token.is_word("ROLLUP", "CUBE"):
                raise malformed(self.text, self.token.pos, "GROUP BY ROLLUP/CUBE is not supported by the sandbox")
            query.group_by = [self.expression(allow_aggregates=False)]
            while self.token.kind == "COMMA":
                self.advance()
                query.group_by.append(self.expression(allow_aggregates=False))
        if self.accept_word("HAVING"):
            if not query.group_by:
                raise malformed(self.text, self.tokens[self.index - 1].pos, "HAVING requires a GROUP BY clause")
            query.having = self.condition(allow_aggregates=True)
        if self.accept_word("ORDER"):
            self.expect_word("BY")
            query.order_by = [self.order_item()]
            while self.token.kind == "COMMA":
                self.advance()
                query.order_by.append(self.order_item())
        if self.accept_word("LIMIT"):
            query.limit = self.integer()
        if self.accept_word("OFFSET"):
            query.offset = self.integer()
        if self.accept_word("FOR"):
            self.expect_word("VIEW", "REFERENCE", "UPDATE")
        if self.token.kind != "EOF":
            raise self.unexpected()
        return query

    def integer(self) -> int:
        token = self.expect("NUMBER")
        if not token.value.isdigit():
            raise self.unexpected(token)
        return int(token.value)

    def select_list(self) -> list[SelectItem]:
        items = [self.select_item()]
        while self.token.kind == "COMMA":
            self.advance()
            items.append(self.select_item())
        return items

    def select_item(self) -> SelectItem:
        token = self.token
        if token.kind == "LPAREN":
            raise malformed(self.text, token.pos, "relationship sub-queries are not supported by the sandbox")
        if token.is_word("TYPEOF"):
            raise malformed(self.text, token.pos, "TYPEOF is not supported by the sandbox")
        if token.kind != "IDENT" or token.value.upper() in RESERVED - {"FIRST", "LAST"}:
            raise self.unexpected()
        expr = self.expression(allow_aggregates=True)
        alias = None
        if self.token.kind == "IDENT" and self.token.value.upper() not in RESERVED:
            alias = self.advance().value
        return SelectItem(expr, alias, token.pos)

    def expression(self, *, allow_aggregates: bool) -> Expr:
        token = self.token
        if token.kind != "IDENT":
            raise self.unexpected()
        if self.peek().kind == "LPAREN":
            name = token.value.upper()
            if name not in AGGREGATES and name not in DATE_FUNCTIONS:
                raise malformed(self.text, token.pos, f"Unknown function: {token.value}")
            if name in AGGREGATES and not allow_aggregates:
                raise malformed(self.text, token.pos, f"Aggregate function {name} is not allowed here")
            self.advance()
            self.advance()
            if self.token.kind == "RPAREN":
                if name != "COUNT":
                    raise self.unexpected()
                self.advance()
                return FuncCall(name, None, token.pos)
            arg = self.field_ref()
            self.expect("RPAREN")
            return FuncCall(name, arg, token.pos)
        return self.field_ref()

    def field_ref(self) -> FieldRef:
        first = self.expect("IDENT")
        if first.value.upper() in RESERVED:
            raise self.unexpected(first)
        parts = [first.value]
        while self.token.kind == "DOT":
            self.advance()
            parts.append(self.expect("IDENT").value)
        return FieldRef(tuple(parts), first.pos)

    def order_item(self) -> OrderItem:
        pos = self.token.pos
        expr = self.expression(allow_aggregates=True)
        descending = False
        if self.accept_word("DESC"):
            descending = True
        else:
            self.accept_word("ASC")
        nulls_last = None
        if self.accept_word("NULLS"):
            nulls_last = self.expect_word("FIRST", "LAST").value.upper() == "LAST"
        return OrderItem(expr, descending, nulls_last, pos)

    # ------------------------------------------------------------ conditions

    def condition(self, *, allow_aggregates: bool) -> Condition:
        """A chain of AND or of OR; SOQL refuses to mix them without parentheses."""
        items = [self.unary(allow_aggregates)]
        operator = None
        while self.token.is_word("AND", "OR"):
            word = self.token.value.upper()
            if operator is not None and word != operator:
                raise self.unexpected()
            operator = word
            self.advance()
            items.append(self.unary(allow_aggregates))
        return items[0] if operator is None else BoolOp(operator, tuple(items))

    def unary(self, allow_aggregates: bool) -> Condition:
        if self.accept_word("NOT"):
            return Not(self.unary(allow_aggregates))
        if self.token.kind == "LPAREN":
            self.advance()
            inner = self.condition(allow_aggregates=allow_aggregates)
            self.expect("RPAREN")
            return inner
        return self.comparison(allow_aggregates)

    def comparison(self, allow_aggregates: bool) -> Comparison:
        if self.token.kind != "IDENT" or self.token.value.upper() in RESERVED:
            raise self.unexpected()
        left = self.expression(allow_aggregates=allow_aggregates)
        token = self.token
        if token.kind == "OP":
            self.advance()
            return Comparison(left, token.value, self.value(), token.pos)
        if token.is_word("LIKE"):
            self.advance()
            return Comparison(left, "LIKE", self.value(), token.pos)
        if token.is_word("IN", "INCLUDES", "EXCLUDES"):
            self.advance()
            return Comparison(left, token.value.upper(), self.value_list(), token.pos)
        if token.is_word("NOT") and self.peek().is_word("IN"):
            self.advance()
            self.advance()
            return Comparison(left, "NOT IN", self.value_list(), token.pos)
        raise self.unexpected()

    def value_list(self) -> tuple[Literal, ...]:
        self.expect("LPAREN")
        if self.token.is_word("SELECT"):
            raise malformed(self.text, self.token.pos, "semi-join sub-queries are not supported by the sandbox")
        values = [self.value()]
        while self.token.kind == "COMMA":
            self.advance()
            values.append(self.value())
        self.expect("RPAREN")
        return tuple(values)

    def value(self) -> Literal:
        token = self.token
        if token.kind == "STRING":
            self.advance()
            return Literal("string", token.value, token.pos, token.like_pattern)
        if token.kind in ("MINUS", "PLUS") and self.peek().kind == "NUMBER":
            self.advance()
            number = self.advance()
            value = float(number.value) if "." in number.value else int(number.value)
            return Literal("number", -value if token.kind == "MINUS" else value, token.pos)
        if token.kind == "NUMBER":
            self.advance()
            return Literal("number", float(token.value) if "." in token.value else int(token.value), token.pos)
        if token.kind in ("DATE", "DATETIME"):
            self.advance()
            return Literal(token.kind.lower(), token.value, token.pos)
        if token.kind == "IDENT":
            word = token.value.upper()
            if word in ("TRUE", "FALSE"):
                self.advance()
                return Literal("boolean", word == "TRUE", token.pos)
            if word == "NULL":
                self.advance()
                return Literal("null", None, token.pos)
            if word in DATE_LITERALS:
                self.advance()
                return Literal("dateliteral", word, token.pos)
            if word in DATE_LITERALS_WITH_N:
                self.advance()
                self.expect("COLON")
                return Literal("dateliteral", word, token.pos, n=self.integer())
        raise self.unexpected()
