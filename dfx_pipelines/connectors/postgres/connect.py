"""Connecting a PostgreSQL database: the endpoint checked (names, sslmode, the host by the platform's
address rules), a session opened as a run would open it (TLS, SCRAM, read-only, timeouts), the role's
least privilege proven, the selection, metric specs and change tracking validated against the server's
own catalog, and only then the password stored in the vault with the connection — all or nothing.

The password exists only in memory: registered as a secret the moment it is accepted (so even an
accidental log line is masked), handed to libpq and to the vault, never to a file, an environment
variable or an error message. A DSN (`postgresql://role@host:port/db?sslmode=verify-full`) is accepted
for convenience and held to a strict grammar: no password in it, one host, no socket path, no
parameter but `sslmode` (`host=`, `hostaddr=`, `options=`, `passfile=` … would move the connection
somewhere the checks did not look).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from dfx_pipelines.connectors.postgres.metrics import parse_specs, parse_tracking, spec_problems, tracking_problems
from dfx_pipelines.connectors.postgres.resource import (
    KIND,
    PrivilegeRefused,
    ca_file,
    check_endpoint_config,
    describe_tables,
    open_session,
    privilege_problems,
)
from dfx_pipelines.connectors.postgres.selection import PostgresSelection
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.redaction import register_secret
from dfx_pipelines.platform.registry import Connection, parse_connection
from dfx_pipelines.platform.secret_input import accept_secret
from dfx_pipelines.platform.services import Platform

DSN_SCHEMES = ("postgresql", "postgres")
DSN_PARAMETERS = {"sslmode"}


def parse_dsn(dsn: object) -> dict[str, Any]:
    """`postgresql://role@host[:port]/database[?sslmode=…]` as endpoint fields, or a `ConfigError` naming
    what is not allowed in it. Parsed, never prefix-matched."""
    if not isinstance(dsn, str) or not dsn:
        raise ConfigError("the DSN must be a postgresql:// URL")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in dsn) or "\\" in dsn:
        raise ConfigError("the DSN contains a space, control, backslash or non-ASCII character: refused")
    parts = urllib.parse.urlsplit(dsn)
    if parts.scheme not in DSN_SCHEMES:
        raise ConfigError(f"the DSN must start with postgresql://, got {parts.scheme or 'no scheme'}")
    if parts.fragment:
        raise ConfigError("the DSN must not have a #fragment")
    netloc = parts.netloc
    if netloc.count("@") != 1:
        raise ConfigError("the DSN must name exactly one role before a single @ (role@host)")
    userinfo, _, hostport = netloc.partition("@")
    if ":" in userinfo:
        raise ConfigError("the DSN must not carry a password: it is asked for separately and kept in the vault")
    if "%" in netloc:
        raise ConfigError("the DSN must not use percent-encoding in its role or host")
    if "," in hostport or not hostport:
        raise ConfigError("the DSN must name exactly one host (no host list, no socket directory)")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"the DSN's port is not valid: {exc}") from None
    database = parts.path.removeprefix("/")
    if not database or "/" in database:
        raise ConfigError("the DSN must name one database as its path (/database)")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    extra = sorted({name for name, _ in query} - DSN_PARAMETERS)
    if extra:
        raise ConfigError(
            f"the DSN's parameters {', '.join(extra)} are refused: only sslmode may be given (host, port, database and role are its parts)"
        )
    names = [name for name, _ in query]
    if len(names) != len(set(names)):
        raise ConfigError("the DSN repeats a parameter")
    endpoint: dict[str, Any] = {"host": host, "port": port or 5432, "database": database, "user": userinfo}
    endpoint.update(dict(query))
    return endpoint


def check_client_certificate(cert_pem: object, key_pem: object) -> tuple[str, str]:
    """A client certificate (PEM, kept in the endpoint: it is public) and its unencrypted private key (PEM,
    for the vault), parsed and matched, or one clear line. Neither text is ever quoted back."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not isinstance(key_pem, str) or not isinstance(cert_pem, str):
        raise ConfigError("a client certificate login needs the certificate and its private key, both PEM text")
    register_secret(key_pem)
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except TypeError:
        raise ConfigError("the client key is encrypted: give it decrypted (it is encrypted in the vault)") from None
    except ValueError:
        raise ConfigError("the client key is not a PEM private key") from None
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise ConfigError("the client certificate is not a PEM certificate") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificate.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(encoding, public):
        raise ConfigError("the client key does not belong to the client certificate")
    return cert_pem, key_pem


def key_line(key_pem: str) -> str:
    """An unencrypted PEM private key as one line for the vault: its PKCS#8 DER in base64."""
    import base64

    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    line = base64.b64encode(der).decode("ascii")
    register_secret(line)
    return line


def connect_postgres(
    platform: Platform,
    *,
    config: dict[str, Any],
    password: str | None = None,
    client_key: str | None = None,
    replace_password: bool = False,
) -> Connection:
    """Check everything against the live server, then store the connection and its secret together.
    `config` is a connection dict; its `endpoint` holds host, port, database, user, sslmode, optional
    `ca_pem`, timeouts and ceilings, `metric_specs` and `change_tracking`. The login is a password
    (SCRAM), or a client certificate: `endpoint["client_cert_pem"]` with `client_key`."""
    endpoint = dict(config.get("endpoint") or {})
    if (password is None) == (client_key is None):
        raise ConfigError("give the PostgreSQL role's password or its client certificate's key (exactly one)")
    credentials: dict[str, Any]
    if password is not None:
        password = accept_secret(password, "the PostgreSQL password")
        endpoint.pop("client_cert_pem", None)
        credentials, secret_kind, secret = {"password": password}, "database_password", password
    else:
        cert_pem, key_pem = check_client_certificate(endpoint.get("client_cert_pem"), client_key)
        # Stored on one line (the vault refuses line breaks): the key's PKCS#8 DER, base64.
        credentials, secret_kind, secret = (
            {"client_cert": (cert_pem, key_pem)},
            "database_client_key",
            key_line(key_pem),
        )
    specs = parse_specs(endpoint.get("metric_specs", []))
    tracking = parse_tracking(endpoint.get("change_tracking", []))
    endpoint["metric_specs"] = [spec.model_dump(mode="json") for spec in specs]
    endpoint["change_tracking"] = [entry.model_dump(mode="json") for entry in tracking]
    connection = parse_connection({**config, "kind": KIND, "endpoint": endpoint})  # every identifier checked here
    existing = platform.registry.find(connection.id)
    if existing is not None and not (replace_password and existing.is_active and existing.kind == KIND):
        raise ConfigError(
            f"connection {connection.id!r} already exists"
            + ("" if existing.is_active else f" and is {existing.status.value}")
        )
    selection = connection.selection.narrowed(PostgresSelection)
    if not selection.tables():
        raise ConfigError(
            "a PostgreSQL connection needs at least one selected schema and table (--select schema:table)"
        )
    target = check_endpoint_config(
        connection.endpoint,
        sandbox_allowed=platform.settings.sandbox_allowed,
        allow_private=connection.settings.allow_private_address,
    )
    target = type(target)(
        **{**target.__dict__, "sslrootcert": ca_file(platform, connection.id, endpoint.get("ca_pem"))}
    )
    session = open_session(target, **credentials)
    try:
        problems = privilege_problems(session, selection)
        if problems:
            raise PrivilegeRefused(
                "the PostgreSQL role is not least-privileged, nothing was stored: " + "; ".join(problems)
            )
        infos = describe_tables(session, selection.tables())
    finally:
        session.close()
    problems = [
        f"table {s}.{t} does not exist (or the role cannot see it)"
        for s, t in selection.tables()
        if f"{s}.{t}" not in infos
    ]
    for qualified, narrowed in sorted(selection.objects.items()):
        schema, _, table = qualified.partition(".")
        if not selection.is_selected(schema, table):
            problems.append(f"columns are narrowed for {qualified}, which is not a selected table")
        elif qualified in infos:
            problems += [
                f"column {qualified}.{c} does not exist" for c in narrowed if c not in infos[qualified].columns
            ]
    for spec in specs:
        problems += spec_problems(spec, selection, infos)
    for entry in tracking:
        problems += tracking_problems(entry, selection, infos)
    if problems:
        raise ConfigError("the selection does not match this PostgreSQL database: " + "; ".join(problems))
    connection.discovered = {
        **connection.discovered,
        "tables": {name: {"kind": info.kind, "columns": dict(info.columns)} for name, info in infos.items()},
    }
    if existing is not None:
        connection.created_at = existing.created_at
        platform.vault.put(connection.secret_ref(secret_kind), secret)
        return platform.registry.save(connection)
    return platform.registry.add_connection(connection, vault=platform.vault, secrets={secret_kind: secret})
