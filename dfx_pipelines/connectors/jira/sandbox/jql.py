"""JQL parsing by recursive descent into a small AST: clauses joined by AND/OR/NOT, then ORDER BY.

Grammar (keywords case-insensitive; `&&`, `||`, `!` are accepted for AND, OR, NOT):
    query   := [or] [ORDER BY sort ("," sort)*]
    or      := and (OR and)*
    and     := not (AND not)*
    not     := NOT not | "(" or ")" | clause
    clause  := field op value | field [NOT] IN list | field IS [NOT] (EMPTY | NULL)
    value   := word | string | function "(" [value ("," value)*] ")"
    list    := "(" value ("," value)* ")" | function call
    sort    := field [ASC | DESC]
Evaluation against the site lives in `jql_eval`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dfx_pipelines.connectors.jira.sandbox.jql_lexer import JqlError, Token, tokenize

COMPARISON_OPERATORS = ("=", "!=", "<", ">", "<=", ">=", "~", "!~")
_VALID_OPERATORS = "'=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'"


@dataclass(frozen=True)
class Value:
    text: str
    quoted: bool
    function: str | None = None  # `openSprints` for `openSprints()`; text then holds nothing
    arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Clause:
    field: str
    operator: str  # "=", "!=", "<", ">", "<=", ">=", "~", "!~", "in", "not in", "is", "is not", "changed"
    values: tuple[Value, ...]  # one value, a list, or empty for IS [NOT] EMPTY and CHANGED
    position: int
    predicates: tuple[tuple[str, Value], ...] = ()  # CHANGED's history predicates, e.g. ("after", value)


HISTORY_PREDICATES = frozenset({"AFTER", "BEFORE", "ON", "DURING", "FROM", "TO", "BY"})


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    operator: str  # "and" | "or"
    operands: tuple[Node, ...]


Node = Clause | Not | BoolOp


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool


@dataclass(frozen=True)
class Query:
    where: Node | None
    order_by: tuple[SortKey, ...]

    def clause_fields(self) -> set[str]:
        """The field names the query's clauses test, lower-cased."""
        found: set[str] = set()
        pending = [self.where] if self.where is not None else []
        while pending:
            node = pending.pop()
            if isinstance(node, Clause):
                found.add(node.field.lower())
            elif isinstance(node, Not):
                pending.append(node.operand)
            else:
                pending.extend(node.operands)
        return found

    @property
    def bounded(self) -> bool:
        """Jira Cloud's enhanced search refuses queries without any search restriction."""
        return self.where is not None


def parse(text: str) -> Query:
    return _Parser(tokenize(text or "")).query()


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.current.kind == "keyword" and self.current.text in words

    def at_punct(self, char: str) -> bool:
        return self.current.kind == "punct" and self.current.text == char

    def fail(self, message: str) -> JqlError:
        return JqlError(f"Error in the JQL Query: {message} (line 1, character {self.current.position})")

    def query(self) -> Query:
        where = None
        if self.current.kind != "end" and not self.at_keyword("ORDER"):
            where = self.or_expression()
        order_by: list[SortKey] = []
        if self.at_keyword("ORDER"):
            self.advance()
            if not self.at_keyword("BY"):
                raise self.fail(f"Expecting 'by' but got {self.current.describe()}.")
            self.advance()
            while True:
                field = self.field_name()
                descending = False
                if self.at_keyword("ASC", "DESC"):
                    descending = self.advance().text == "DESC"
                order_by.append(SortKey(field, descending))
                if not self.at_punct(","):
                    break
                self.advance()
        if self.current.kind != "end":
            raise self.fail(f"Expecting either 'OR' or 'AND' but got {self.current.describe()}.")
        return Query(where, tuple(order_by))

    def or_expression(self) -> Node:
        operands = [self.and_expression()]
        while self.at_keyword("OR"):
            self.advance()
            operands.append(self.and_expression())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def and_expression(self) -> Node:
        operands = [self.not_expression()]
        while self.at_keyword("AND"):
            self.advance()
            operands.append(self.not_expression())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def not_expression(self) -> Node:
        if self.at_keyword("NOT"):
            self.advance()
            return Not(self.not_expression())
        if self.at_punct("("):
            self.advance()
            inner = self.or_expression()
            if not self.at_punct(")"):
                raise self.fail(f"Expecting ')' but got {self.current.describe()}.")
            self.advance()
            return inner
        return self.clause()

    def field_name(self) -> str:
        token = self.current
        if token.kind not in ("word", "string"):
            raise self.fail(f"Expecting a field name but got {token.describe()}.")
        self.advance()
        return token.text

    def clause(self) -> Clause:
        position = self.current.position
        field = self.field_name()
        token = self.current
        if token.kind == "op":
            self.advance()
            if self.at_punct("("):
                raise self.fail(f"Operator '{token.text}' does not support the list value.")
            return Clause(field, token.text, (self.value(),), position)
        if self.at_keyword("IN"):
            self.advance()
            return Clause(field, "in", self.value_list(), position)
        if self.at_keyword("NOT"):
            self.advance()
            if not self.at_keyword("IN"):
                raise self.fail(f"Expecting 'IN' but got {self.current.describe()}.")
            self.advance()
            return Clause(field, "not in", self.value_list(), position)
        if token.kind == "word" and token.text.upper() == "CHANGED":
            # History search: `status CHANGED [AFTER date] [BEFORE date] ...`
            self.advance()
            predicates = []
            while self.current.text.upper() in HISTORY_PREDICATES and self.current.kind in ("word", "keyword"):
                name = self.advance().text.lower()
                predicates.append((name, self.value()))
            return Clause(field, "changed", (), position, tuple(predicates))
        if self.at_keyword("IS"):
            self.advance()
            operator = "is"
            if self.at_keyword("NOT"):
                self.advance()
                operator = "is not"
            if not self.at_keyword("EMPTY", "NULL"):
                raise self.fail(f"Expecting 'EMPTY' or 'NULL' but got {self.current.describe()}.")
            self.advance()
            return Clause(field, operator, (), position)
        raise self.fail(f"Expecting operator but got {token.describe()}. The valid operators are {_VALID_OPERATORS}.")

    def value(self) -> Value:
        token = self.current
        if token.kind == "string":
            self.advance()
            return Value(token.text, quoted=True)
        if token.kind == "word" or (token.kind == "keyword" and token.text in ("EMPTY", "NULL")):
            self.advance()
            if self.at_punct("("):
                return self.function_call(token.text)
            return Value(token.text, quoted=False)
        raise self.fail(f"Expecting either a value, list or function but got {token.describe()}.")

    def function_call(self, name: str) -> Value:
        self.advance()  # "("
        arguments: list[str] = []
        while not self.at_punct(")"):
            token = self.current
            if token.kind not in ("word", "string"):
                raise self.fail(f"Expecting ')' but got {token.describe()}.")
            arguments.append(self.advance().text)
            if self.at_punct(","):
                self.advance()
        self.advance()
        return Value("", quoted=False, function=name, arguments=tuple(arguments))

    def value_list(self) -> tuple[Value, ...]:
        if (
            self.current.kind == "word"
            and self.tokens[self.index + 1].kind == "punct"
            and self.tokens[self.index + 1].text == "("
        ):
            return (self.value(),)  # a list function such as openSprints()
        if not self.at_punct("("):
            raise self.fail(f"Expecting '(' but got {self.current.describe()}.")
        self.advance()
        values = [self.value()]
        while self.at_punct(","):
            self.advance()
            values.append(self.value())
        if not self.at_punct(")"):
            raise self.fail(f"Expecting ')' but got {self.current.describe()}.")
        self.advance()
        return tuple(values)
