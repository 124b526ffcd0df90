"""SOQL tokenizer: identifiers, quoted strings with SOQL escapes, numbers, date/datetime literals, operators."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .soql_errors import malformed

# Only used to recognise one literal token at a time; queries are never built from regex pieces.
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![0-9T])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")
_PUNCTUATION = {"(": "LPAREN", ")": "RPAREN", ",": "COMMA", ".": "DOT", ":": "COLON", "-": "MINUS", "+": "PLUS"}
# SOQL's escape sequences; \% and \_ only mean something inside LIKE, so they are kept escaped here.
_ESCAPES = {"n": "\n", "N": "\n", "r": "\r", "R": "\r", "t": "\t", "T": "\t", "b": "\b", "B": "\b",
            "f": "\f", "F": "\f", '"': '"', "'": "'", "\\": "\\"}  # fmt: skip


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT STRING NUMBER DATE DATETIME OP LPAREN RPAREN COMMA DOT COLON MINUS PLUS EOF
    value: str
    pos: int
    # For STRING: the value with \% and \_ still escaped (what LIKE needs); `value` has them unescaped.
    like_pattern: str = ""

    def is_word(self, *words: str) -> bool:
        return self.kind == "IDENT" and self.value.upper() in words


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    length = len(text)
    while pos < length:
        char = text[pos]
        if char.isspace():
            pos += 1
            continue
        if char == "'":
            token, pos = _string(text, pos)
            tokens.append(token)
            continue
        if char.isdigit() or (char == "." and pos + 1 < length and text[pos + 1].isdigit()):
            for kind, pattern in (("DATETIME", _DATETIME), ("DATE", _DATE), ("NUMBER", _NUMBER)):
                match = pattern.match(text, pos)
                if match:
                    tokens.append(Token(kind, match.group(), pos))
                    pos = match.end()
                    break
            if pos < length and (text[pos].isalpha() or text[pos] == "_"):
                raise malformed(text, pos, f"unexpected token: '{text[pos]}'")
            continue
        match = _IDENT.match(text, pos)
        if match:
            tokens.append(Token("IDENT", match.group(), pos))
            pos = match.end()
            continue
        operator = next((op for op in _OPERATORS if text.startswith(op, pos)), None)
        if operator:
            tokens.append(Token("OP", "!=" if operator == "<>" else operator, pos))
            pos += len(operator)
            continue
        if char in _PUNCTUATION:
            tokens.append(Token(_PUNCTUATION[char], char, pos))
            pos += 1
            continue
        raise malformed(text, pos, f"unexpected token: '{char}'")
    tokens.append(Token("EOF", "", length))
    return tokens


def _string(text: str, start: int) -> tuple[Token, int]:
    value: list[str] = []
    like: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == "'":
            return Token("STRING", "".join(value), start, "".join(like)), pos + 1
        if char == "\\":
            if pos + 1 >= len(text):
                break
            escaped = text[pos + 1]
            if escaped in ("%", "_"):
                value.append(escaped)
                like.append("\\" + escaped)
            elif escaped == "u" and pos + 5 < len(text):
                try:
                    decoded = chr(int(text[pos + 2 : pos + 6], 16))
                except ValueError:
                    raise malformed(text, pos, "Invalid string literal: illegal \\u escape") from None
                value.append(decoded)
                like.append(_like_literal(decoded))
                pos += 6
                continue
            elif escaped in _ESCAPES:
                decoded = _ESCAPES[escaped]
                value.append(decoded)
                like.append(_like_literal(decoded))
            else:
                raise malformed(
                    text,
                    pos,
                    f"Invalid string literal '{text[start : pos + 2]}'. Illegal character sequence '\\{escaped}' in string literal.",
                )
            pos += 2
            continue
        value.append(char)
        like.append(char)
        pos += 1
    raise malformed(text, start, "unexpected token: unterminated string literal")


def _like_literal(char: str) -> str:
    # A literal backslash must stay literal under SQLite's `ESCAPE '\'`.
    return "\\\\" if char == "\\" else char
