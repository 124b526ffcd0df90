"""The project's error types: each names what is wrong, and none ever carries a secret.

`permanent` says whether trying again can help. A permanent error (refused or revoked credentials,
missing permissions, an invalid configuration, an exhausted budget) fails its step once, is not
retried, and notifies; anything else (a network error, a 5xx, a rate limit outlasting the client's own
retries) is transient and retried with backoff (see `platform.failures`).
"""

from __future__ import annotations


class DfxError(Exception):
    """Base of every error the project raises on purpose. `exit_code` is what `dfx` exits with: 1 for an
    operation that failed, 2 for input (an option, a file, a variable, an id) that is wrong."""

    exit_code = 1
    permanent = False


class ConfigError(DfxError):
    """Invalid configuration: a connection, a selection, a setting, an environment variable."""

    exit_code = 2
    permanent = True


class IdentifierError(ConfigError):
    """An identifier that would reach SOQL, SQL or JQL does not match its strict pattern."""


class UnknownConnectionError(DfxError):
    """No connection with that id (or slug) exists in the registry."""

    exit_code = 2
    permanent = True


class ConnectionInactiveError(DfxError):
    """The connection is revoked or removed: nothing may be read from it and no request is sent."""

    permanent = True


class VaultError(DfxError):
    """A secret could not be stored, found or decrypted (wrong key, tampering, destroyed data key)."""

    permanent = True


class SecretNotFoundError(VaultError):
    """The vault holds no such secret (never stored, deleted, or its connection's data key destroyed)."""


class ConnectorError(DfxError):
    """A source API refused or failed a request; the message is safe to show (no token text)."""


class AuthError(ConnectorError):
    """Authentication or authorisation failed: bad grant, wrong scopes, state or verifier mismatch."""

    permanent = True


class UnsafeDestinationError(ConnectorError):
    """A URL we were asked to send a credential to is not one we trust for that credential."""

    exit_code = 2
    permanent = True
