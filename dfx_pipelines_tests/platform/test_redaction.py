"""The redacting formatter and record factory: live secrets and token-shaped strings never get out."""

import logging

import pytest

from dfx_pipelines.platform.redaction import MASK, RedactingFormatter, install_redaction, redact, register_secret

from .escaped_forms import escaped_forms

PRIVATE_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
)


@pytest.mark.parametrize(
    "text, leaked",
    [
        (
            "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlX2hlcmU",
            "eyJhbGciOiJSUzI1NiJ9",
        ),
        ("session 00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog.39AsX.LVpxezPwuX5VAI", "AR8AQJXg5oj8"),
        ('{"refresh_token": "5Aep861TSESvWeug_xvFHRBTTbf_YrTWgEyjBJiAMsFOkf"}', "5Aep861TSESvWeug"),
        ("POST /token code=aPrxsmIEeqM9PiQroGEWx1UiMQd9&state=x", "aPrxsmIEeqM9"),
        ("key file: " + PRIVATE_KEY, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
        ("Basic dXNlcjpwYXNzd29yZDEyMw==", "dXNlcjpwYXNzd29yZDEyMw"),
    ],
)
def test_token_shaped_strings_are_masked(text: str, leaked: str) -> None:
    assert leaked not in redact(text) and MASK in redact(text)


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("plain-looking-api-token-value")
    assert redact("jira said: plain-looking-api-token-value is wrong") == f"jira said: {MASK} is wrong"
    register_secret('{"type": "service_account", "private_key": "very-long-private-key-body-0123456789abcdef"}')
    assert "very-long-private-key-body-0123456789abcdef" not in redact(
        "field very-long-private-key-body-0123456789abcdef"
    )


def test_ordinary_text_is_left_alone() -> None:
    text = 'errorCode INVALID_SESSION_ID on /services/data/v59.0/query, 12 records, "errorCode": "MALFORMED_QUERY"'
    assert redact(text) == text


def test_formatter_masks_messages_and_tracebacks() -> None:
    register_secret("traceback-secret-123456")
    formatter = RedactingFormatter("%(message)s")
    try:
        raise ValueError("failed with traceback-secret-123456")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "token %s", ("traceback-secret-123456",), sys.exc_info()
        )
    output = formatter.format(record)
    assert "traceback-secret-123456" not in output and "ValueError" in output


def test_record_factory_redacts_at_creation(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()
    register_secret("factory-secret-abcdef")
    logging.getLogger("dfx_pipelines.test").warning("got %s from the vault", "factory-secret-abcdef")
    assert "factory-secret-abcdef" not in caplog.text and "got [REDACTED] from the vault" in caplog.text


ESCAPED_SECRET = 'esc4ped/s3cr"et+with=\\odd chars&é?'


@pytest.mark.parametrize("form", sorted(escaped_forms(ESCAPED_SECRET)))
def test_a_secrets_escaped_forms_are_masked(form: str) -> None:
    import base64

    register_secret(ESCAPED_SECRET)
    planted = escaped_forms(ESCAPED_SECRET)[form]
    assert planted != ESCAPED_SECRET or form == "json, non-ASCII kept"
    text = redact(f"request failed: {planted} (retrying)")
    assert planted not in text and MASK in text
    if form.startswith("base64 inside"):  # what is left cannot be decoded back to the secret
        for chunk in text.split():
            try:
                assert ESCAPED_SECRET.encode() not in base64.b64decode(chunk + "==", validate=False)
            except ValueError:
                pass


def test_escaped_forms_are_masked_in_log_records_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()
    secret = 'log/s3cr"et+&value'
    register_secret(secret)
    forms = escaped_forms(secret)
    for name, planted in forms.items():
        logging.getLogger("dfx_pipelines.test").warning("%s: %s", name, planted)
    assert not [name for name, planted in forms.items() if planted in caplog.text]
    formatter = RedactingFormatter("%(message)s")
    try:
        raise ValueError(f"payload {forms['json']} and {forms['url, lower-case hex']} and {forms['base64']}")
    except ValueError:
        import sys

        output = formatter.format(logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()))
    assert (
        not [name for name in ("json", "url, lower-case hex", "base64") if forms[name] in output]
        and "ValueError" in output
    )


def test_masking_escaped_forms_leaves_ordinary_text_alone() -> None:
    register_secret("another/s3cret+value")
    text = (
        'GET /services/data/v59.0/query?q=SELECT+Id+FROM+Opportunity 200 {"done": true, "url": "\\/a\\/b"} dXNlcjpwYXNz'
    )
    assert redact(text) == text
