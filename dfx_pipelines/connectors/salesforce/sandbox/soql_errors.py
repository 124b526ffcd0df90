"""SOQL errors in Salesforce's words: the query line, a caret under the culprit, `ERROR at Row:r:Column:c`."""

from __future__ import annotations

from .errors import SalesforceApiError


def query_error(code: str, text: str, pos: int, detail: str) -> SalesforceApiError:
    """A 400 whose message points at character `pos` of `text`, as Salesforce's parser reports it."""
    pos = max(0, min(pos, len(text)))
    row = text.count("\n", 0, pos) + 1
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    column = pos - line_start + 1
    message = f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{detail}"
    return SalesforceApiError(400, code, message)


def malformed(text: str, pos: int, detail: str) -> SalesforceApiError:
    return query_error("MALFORMED_QUERY", text, pos, detail)


def invalid_field(text: str, pos: int, detail: str) -> SalesforceApiError:
    return query_error("INVALID_FIELD", text, pos, detail)


def no_such_column(text: str, pos: int, field: str, entity: str) -> SalesforceApiError:
    return invalid_field(
        text,
        pos,
        f"No such column '{field}' on entity '{entity}'. If you are attempting to use a custom field, be sure to "
        "append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
        "appropriate names.",
    )


def bad_relationship(text: str, pos: int, name: str) -> SalesforceApiError:
    return invalid_field(
        text,
        pos,
        f"Didn't understand relationship '{name}' in field path. If you are attempting to use a custom "
        "relationship, be sure to append the '__r' after the custom relationship name. Please reference your "
        "WSDL or the describe call for the appropriate names.",
    )


def unsupported_type(text: str, pos: int, name: str) -> SalesforceApiError:
    return query_error(
        "INVALID_TYPE",
        text,
        pos,
        f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append "
        "the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
    )
