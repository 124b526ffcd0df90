"""JQL tokens: words, quoted strings (with escapes), operators and punctuation, with their positions."""

from __future__ import annotations

from dataclasses import dataclass

KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "EMPTY", "NULL", "ORDER", "BY", "ASC", "DESC"})
OPERATOR_CHARS = "=!<>~"
PUNCTUATION = "(),"
# Characters that end an unquoted word: JQL reserves them (plus whitespace and quotes).
_WORD_STOP = set(" \t\r\n\"'" + OPERATOR_CHARS + PUNCTUATION + "&|")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t", "r": "\r", " ": " "}


class JqlError(ValueError):
    """A JQL query Jira would refuse with HTTP 400; `str()` is Jira's message."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "word", "string", "op", "punct", "keyword", "end"
    text: str  # the value (unescaped for strings, upper-cased for keywords)
    position: int  # 1-based character, as Jira reports it

    def describe(self) -> str:
        return "EOF" if self.kind == "end" else f"'{self.text}'"


def _error(message: str, position: int) -> JqlError:
    return JqlError(f"Error in the JQL Query: {message} (line 1, character {position})")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char.isspace():
            index += 1
            continue
        start = index + 1
        if char in "\"'":
            value, index = _read_string(text, index)
            tokens.append(Token("string", value, start))
        elif char in PUNCTUATION:
            tokens.append(Token("punct", char, start))
            index += 1
        elif char in OPERATOR_CHARS:
            two = text[index : index + 2]
            if two in ("!=", ">=", "<=", "!~"):
                tokens.append(Token("op", two, start))
                index += 2
            elif char == "!":
                tokens.append(Token("keyword", "NOT", start))  # `!` is JQL's NOT
                index += 1
            else:
                tokens.append(Token("op", char, start))
                index += 1
        elif text.startswith("&&", index) or text.startswith("||", index):
            tokens.append(Token("keyword", "AND" if char == "&" else "OR", start))
            index += 2
        elif char in "&|":
            raise _error(
                f"The character '{char}' is a reserved JQL character. You must enclose it in a string or use the escape '\\u{ord(char):04x}' instead.",
                start,
            )
        else:
            end = index
            while end < length and text[end] not in _WORD_STOP:
                end += 1
            word = text[index:end]
            upper = word.upper()
            tokens.append(Token("keyword", upper, start) if upper in KEYWORDS else Token("word", word, start))
            index = end
    tokens.append(Token("end", "", length + 1))
    return tokens


def _read_string(text: str, index: int) -> tuple[str, int]:
    quote, start = text[index], index + 1
    index += 1
    chars: list[str] = []
    while index < len(text):
        char = text[index]
        if char == quote:
            return "".join(chars), index + 1
        if char == "\\":
            if index + 1 >= len(text):
                break
            escaped = text[index + 1]
            if escaped == "u" and index + 6 <= len(text):
                digits = text[index + 2 : index + 6]
                try:
                    chars.append(chr(int(digits, 16)))
                except ValueError:
                    raise _error(f"The escape sequence '\\u{digits}' in the string is illegal.", index + 1) from None
                index += 6
                continue
            if escaped not in _ESCAPES:
                raise _error(
                    f"'\\{escaped}' is an illegal JQL escape sequence. The valid escape sequences are \\', \\\", \\t, \\n, \\r, \\\\, '\\ ' and \\uXXXX.",
                    index + 1,
                )
            chars.append(_ESCAPES[escaped])
            index += 2
            continue
        chars.append(char)
        index += 1
    raise _error("Missing closing quote for the string started here.", start)
