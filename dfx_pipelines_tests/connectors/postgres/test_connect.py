"""Connecting a PostgreSQL database against a real throwaway cluster (TLS from the sandbox CA, SCRAM):
the read-only role connects and only the vault holds its password; a role that may write, administer
or owns what it reads is refused with the grant named and nothing stored; the selection, specs and
change tracking are checked against the catalog; hostile identifiers, sslmode downgrades, DSN tricks and
private or metadata hosts are refused before any session is opened; every session is read-only."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import psycopg
import pytest

from dfx_pipelines.connectors.postgres.connect import connect_postgres, key_line, parse_dsn
from dfx_pipelines.connectors.postgres.resource import (
    GatedQuery,
    PostgresResource,
    PrivilegeRefused,
    Target,
    check_endpoint_config,
    key_pem_of,
    open_session,
)
from dfx_pipelines.connectors.postgres.sandbox import CERT_READER, READER, WRITER
from dfx_pipelines.platform.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    IdentifierError,
    UnsafeDestinationError,
)

from .conftest import COLUMNS, GROUP, admin_sql, connect

pytestmark = pytest.mark.xdist_group(GROUP)


def nothing_stored(platform) -> bool:
    return platform.registry.find("pg-acme") is None and ("acme", "pg-acme") not in set(platform.vault.connections())


def test_the_read_only_role_connects_and_only_the_vault_holds_its_password(platform, workspace, seeded) -> None:
    connection = connect(platform, seeded)
    stored = platform.registry.get("pg-acme")
    assert stored.endpoint["user"] == READER and stored.endpoint["sslmode"] == "verify-full"
    assert set(stored.discovered["tables"]["sales.orders"]["columns"]) >= {"amount", "customer_email"}
    assert platform.vault.get(connection.secret_ref("database_password")).get_secret_value() == seeded.passwords[READER]
    assert seeded.passwords[READER] not in json.dumps(stored.config_json())


@pytest.mark.parametrize(
    ("grant", "undo", "named"),
    [
        (None, None, f"role {WRITER} has INSERT on sales.orders: REVOKE INSERT ON sales.orders FROM {WRITER}"),
        ("GRANT CREATE ON SCHEMA sales TO {r}", "REVOKE CREATE ON SCHEMA sales FROM {r}", "has CREATE on schema sales"),
        ("GRANT TRUNCATE ON sales.orders TO {r}", "REVOKE TRUNCATE ON sales.orders FROM {r}", "has TRUNCATE on sales.orders"),
        ("GRANT UPDATE (status) ON sales.orders TO {r}", "REVOKE UPDATE (status) ON sales.orders FROM {r}", "has UPDATE on sales.orders"),
        ("ALTER TABLE sales.orders OWNER TO {r}", "ALTER TABLE sales.orders OWNER TO postgres", "owns sales.orders"),
        ("ALTER ROLE {r} BYPASSRLS", "ALTER ROLE {r} NOBYPASSRLS", "bypasses row-level security (BYPASSRLS)"),
        ("ALTER ROLE {r} SUPERUSER", "ALTER ROLE {r} NOSUPERUSER", "is a superuser"),
        ("GRANT pg_write_all_data TO {r}", "REVOKE pg_write_all_data FROM {r}", "is a member of pg_write_all_data"),
    ],
)  # fmt: skip
def test_a_role_that_may_do_more_than_read_is_refused_with_the_grant_named(
    platform, workspace, seeded, grant, undo, named
) -> None:
    role = WRITER if grant is None else READER
    if grant:
        admin_sql(seeded, grant.format(r=role))
    try:
        with pytest.raises(PrivilegeRefused, match="not least-privileged") as refused:
            connect(platform, seeded, user=role)
    finally:
        if undo:
            admin_sql(seeded, undo.format(r=role))
    assert named in str(refused.value)
    assert nothing_stored(platform)


def test_a_role_missing_select_is_told_which_grant_it_needs(platform, workspace, seeded) -> None:
    admin_sql(seeded, f"REVOKE SELECT ON sales.orders FROM {READER}")
    try:
        with pytest.raises(
            PrivilegeRefused, match=f"lacks SELECT on sales.orders: GRANT SELECT ON sales.orders TO {READER}"
        ):
            connect(platform, seeded)
    finally:
        admin_sql(seeded, f"GRANT SELECT ON sales.orders TO {READER}")
    assert nothing_stored(platform)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"selection": {"sales": ["orders", "nope"]}}, "table sales.nope does not exist"),
        ({"objects": {"sales.orders": ["id", "ordered_at", "no_such_column"]}}, "column sales.orders.no_such_column does not exist"),
        ({"metric_specs": [{"name": "emails", "table": "sales.orders", "measure": "COUNT_DISTINCT",
                            "column": "customer_email", "time_column": "ordered_at"}]},
         "metric emails: column sales.orders.customer_email is not selected"),
        ({"metric_specs": [{"name": "avg_status", "table": "sales.orders", "measure": "AVG", "column": "status",
                            "time_column": "ordered_at"}]}, "AVG needs a numeric column, status is text"),
        ({"metric_specs": [{"name": "by_region", "table": "sales.orders", "measure": "COUNT", "time_column": "region"}]},
         "time column region of sales.orders is text"),
        ({"change_tracking": [{"table": "sales.customers", "watermark_column": "id", "time_column": "id"}]},
         "table sales.customers is not selected"),
    ],
)  # fmt: skip
def test_the_selection_is_checked_against_the_catalog(platform, workspace, seeded, overrides, problem) -> None:
    with pytest.raises(ConfigError, match="does not match this PostgreSQL database") as refused:
        connect(platform, seeded, **overrides)
    assert problem in str(refused.value)
    assert nothing_stored(platform)


HOSTILE = [
    {"selection": {'sales"; DROP TABLE sales.orders; --': ["orders"]}},
    {"selection": {"sales": ['orders" CASCADE']}},
    {"selection": {"pg_catalog": ["pg_authid"]}},
    {"objects": {"sales.orders": ["amount) FROM sales.customers --"]}},
    {"metric_specs": [{"name": "x", "table": "sales.orders", "measure": "SUM(amount); DELETE FROM sales.orders; --",
                       "column": "amount", "time_column": "ordered_at"}]},
    {"metric_specs": [{"name": "x", "table": "sales.orders", "measure": "SUM", "column": 'amount"), (SELECT email',
                       "time_column": "ordered_at"}]},
    {"metric_specs": [{"name": "x", "table": "sales.orders; --", "measure": "COUNT", "time_column": "ordered_at"}]},
    {"metric_specs": [{"name": "x", "table": "sales.orders", "measure": "COUNT", "group_by": ["status, customer_email"],
                       "time_column": "ordered_at"}]},
    {"metric_specs": [{"name": "x", "table": "sales.orders", "measure": "COUNT", "time_column": "dfx_period"}]},
    {"change_tracking": [{"table": "sales.orders", "watermark_column": "updated_at' OR '1'='1", "time_column": "ordered_at"}]},
]  # fmt: skip


@pytest.mark.parametrize("overrides", HOSTILE)
def test_hostile_identifiers_are_refused_before_any_session(platform, workspace, overrides) -> None:
    """The host cannot even be resolved: an identifier error proves the refusal came first."""
    config_overrides = {k: v for k, v in overrides.items() if k in ("selection", "objects")}
    endpoint_overrides = {k: v for k, v in overrides.items() if k not in config_overrides}

    class Unreachable:
        host, port, passwords = "db.invalid", 5432, {READER: "unused"}
        ca = type("CA", (), {"ca_pem_path": type("P", (), {"read_text": lambda self: ""})()})()

        def endpoint(self, user, **extra):
            return {
                "host": self.host,
                "port": self.port,
                "database": "customer",
                "user": user,
                "sslmode": "verify-full",
                **extra,
            }

    with pytest.raises((IdentifierError, ConfigError)) as refused:
        connect(platform, Unreachable(), **config_overrides, **endpoint_overrides)  # type: ignore[arg-type]
    assert not isinstance(refused.value, UnsafeDestinationError)
    assert "cannot be resolved" not in str(refused.value)
    assert nothing_stored(platform)


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca"])
def test_sslmode_downgrades_are_refused_to_a_customer_host(mode: str) -> None:
    for sandbox_allowed in (False, True):  # a customer host is never the sandbox, in either mode
        with pytest.raises(ConfigError, match=f"sslmode={mode} is refused"):
            check_endpoint_config(
                {"host": "db.customer.example", "database": "d", "user": "u", "sslmode": mode},
                sandbox_allowed=sandbox_allowed,
                allow_private=False,
            )
    with pytest.raises(ConfigError, match="sslmode 'verify_full' is not one of"):
        check_endpoint_config(
            {"host": "db.customer.example", "database": "d", "user": "u", "sslmode": "verify_full"},
            sandbox_allowed=False,
            allow_private=False,
        )


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("postgresql://reader:hunter2@db.example.com/customer", "must not carry a password"),
        ("postgresql://reader@evil.example@127.0.0.1/customer", "exactly one role before a single @"),
        ("postgresql://reader@db1.example.com,db2.example.com/customer", "exactly one host"),
        ("postgresql://reader@db.example.com/customer?host=/var/run/postgresql", "parameters host are refused"),
        ("postgresql://reader@db.example.com/customer?hostaddr=169.254.169.254", "parameters hostaddr are refused"),
        (
            "postgresql://reader@db.example.com/customer?options=-c%20default_transaction_read_only%3Doff",
            "parameters options are refused",
        ),
        ("postgresql://reader@db.example.com/customer?sslmode=verify-full&sslmode=disable", "repeats a parameter"),
        ("postgresql://reader@%31%32%37.0.0.1/customer", "percent-encoding"),
        ("postgresql://reader@db.example.com/customer/other", "one database"),
        ("mysql://reader@db.example.com/customer", "must start with postgresql://"),
        ("postgresql://reader@db.example.com:99999/customer", "port"),
    ],
)
def test_dsn_tricks_are_refused(dsn: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="DSN") as refused:
        parse_dsn(dsn)
    assert problem in str(refused.value)


def test_a_plain_dsn_is_read_as_its_parts() -> None:
    assert parse_dsn("postgresql://reader@db.example.com:6543/customer?sslmode=verify-full") == {
        "host": "db.example.com", "port": 6543, "database": "customer", "user": "reader", "sslmode": "verify-full"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("host", "sandbox_allowed", "problem"),
    [
        ("169.254.169.254", True, "link-local or cloud metadata"),
        ("10.1.2.3", False, "non-public address"),
        ("127.0.0.1", False, "loopback"),
        ("db.example.com/../x", False, "single DNS name or IP address"),
        ("reader@db.example.com", False, "single DNS name or IP address"),
        ("/var/run/postgresql", False, "single DNS name or IP address"),
    ],
)
def test_the_host_is_held_to_the_platforms_address_rules(host: str, sandbox_allowed: bool, problem: str) -> None:
    with pytest.raises(UnsafeDestinationError, match="the PostgreSQL host") as refused:
        check_endpoint_config(
            {"host": host, "database": "d", "user": "u", "sslmode": "verify-full"},
            sandbox_allowed=sandbox_allowed,
            allow_private=False,
        )
    assert problem in str(refused.value)


def test_every_session_is_read_only_with_its_timeouts(seeded) -> None:
    target = check_endpoint_config(
        {
            "host": seeded.host,
            "port": seeded.port,
            "database": "customer",
            "user": WRITER,
            "statement_timeout_ms": 1234,
        },
        sandbox_allowed=True,
        allow_private=False,
    )
    target = Target(**{**target.__dict__, "sslrootcert": str(seeded.ca.ca_pem_path)})
    session = open_session(target, seeded.passwords[WRITER])  # the writer role may INSERT: the session may not
    try:
        settings = session.execute(
            "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout'), "
            "ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
        assert settings[0] == "1234ms" and settings[1] == "1min" and settings[2] is True
        assert settings[3] in ("TLSv1.2", "TLSv1.3")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            session.execute("INSERT INTO sales.orders VALUES (0, 'x', 'x', 1, 'x', now(), current_date, now())")
    finally:
        session.close()


def test_a_wrong_password_is_a_clear_auth_error_without_the_password(seeded) -> None:
    target = check_endpoint_config(
        {"host": seeded.host, "port": seeded.port, "database": "customer", "user": READER},
        sandbox_allowed=True,
        allow_private=False,
    )
    target = Target(**{**target.__dict__, "sslrootcert": str(seeded.ca.ca_pem_path)})
    with pytest.raises(AuthError, match=f"refused the login of role {READER}") as refused:
        open_session(target, "wrong-password-canary-7f3a")
    assert "wrong-password-canary-7f3a" not in str(refused.value)


def test_a_server_whose_certificate_is_not_trusted_is_refused(seeded) -> None:
    target = check_endpoint_config(
        {"host": seeded.host, "port": seeded.port, "database": "customer", "user": READER},
        sandbox_allowed=True,
        allow_private=False,
    )  # sslrootcert "system": the sandbox CA is not among the system roots
    with pytest.raises(ConnectorError, match=r"could not connect to PostgreSQL .*certificate verify failed") as refused:
        open_session(target, seeded.passwords[READER])
    assert seeded.passwords[READER] not in str(refused.value)


def _cert_login(platform, cluster, cert_pem: str, key_pem: str):
    from .conftest import endpoint as cluster_endpoint

    return connect_postgres(
        platform,
        config={
            "id": "pg-acme",
            "workspace_id": "acme",
            "display_name": "Acme by certificate",
            "selection": {"schemas": {"sales": ["orders"]}, "objects": {"sales.orders": COLUMNS}},
            "endpoint": cluster_endpoint(cluster, user=CERT_READER, client_cert_pem=cert_pem),
        },
        client_key=key_pem,
    )


def test_a_client_certificate_login_keeps_its_key_only_in_the_vault(platform, workspace, seeded) -> None:
    cert_pem, key_pem = seeded.client_certs[CERT_READER]
    connection = _cert_login(platform, seeded, cert_pem, key_pem)
    stored_key = platform.vault.get(connection.secret_ref("database_client_key")).get_secret_value()
    assert stored_key == key_line(key_pem) == key_line(key_pem_of(stored_key))  # one line in the vault, the same key
    config = json.dumps(platform.registry.get("pg-acme").config_json())
    assert stored_key not in config and key_pem.splitlines()[1] not in config
    with PostgresResource().gated(platform, connection) as gated:  # a run's session: the key from the vault
        outcome = gated.run([GatedQuery("SELECT COUNT(*) AS n FROM sales.orders", "count")])
    assert outcome.results[0].rows == [{"n": 3100}]
    # The certificate's files existed for the handshake only (other tests' sessions may be connecting now,
    # so only this test's own leftovers would count: none can remain after its sessions closed).
    leftovers = [*Path(tempfile.gettempdir()).glob("dfx-pg-*"), *Path("/dev/shm").glob("dfx-pg-*")]
    assert leftovers == []


def test_bad_client_keys_are_refused_before_any_session(platform, workspace, seeded, tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization

    from dfx_pipelines.platform.sandbox import SandboxCA

    cert_pem, key_pem = seeded.client_certs[CERT_READER]
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()
    other_cert, other_key = SandboxCA(tmp_path / "other-ca").issue_client_cert(CERT_READER)
    for bad_key, problem in (
        ("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "is not a PEM private key"),
        (encrypted, "is encrypted"),
        (other_key, "does not belong to the client certificate"),
    ):
        with pytest.raises(ConfigError, match=problem):
            _cert_login(platform, seeded, cert_pem, bad_key)
    # A certificate the server's CA did not sign: the server refuses the login; nothing is stored.
    with pytest.raises(ConnectorError, match="PostgreSQL"):
        _cert_login(platform, seeded, other_cert, other_key)
    assert nothing_stored(platform)
