"""A throwaway PostgreSQL cluster, set up as a customer's database would be: the real server (`initdb` +
`pg_ctl` in a temp folder), TLS only over TCP with a certificate from the sandbox CA (TLS 1.2+),
`scram-sha-256` for every TCP login, a read-only role (`dfx_reader`: CONNECT, USAGE, SELECT) and a wrongly
privileged one (`dfx_writer`: also INSERT), seeded tables. Administration goes through the cluster's own
Unix socket in its private folder (mode 0700), never over TCP. The tests, the demo and the benchmark use it.

`seed_orders` fills `sales.orders` with generated rows on the server (`generate_series`), so a
10,000,000-row table costs one statement, and `sales.customers` holds text the connector must never read.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.sandbox import SandboxCA

DATABASE = "customer"
READER, WRITER, CERT_READER = "dfx_reader", "dfx_writer", "dfx_cert_reader"
FIRST_DAY = date(2024, 3, 1)
DAYS = 31


def find_bindir() -> Path:
    """The server's binaries: `DFX_PG_BINDIR`, else the newest /usr/lib/postgresql/<v>/bin, else PATH."""
    candidates = [os.environ.get("DFX_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    on_path = shutil.which("pg_ctl")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise ConfigError("no PostgreSQL server binaries (initdb, pg_ctl) found: install PostgreSQL or set DFX_PG_BINDIR")


def _server_user() -> tuple[list[str], tuple[int, int] | None]:
    """PostgreSQL refuses to run as root: as root, run its binaries as `DFX_PG_USER` (default `postgres`)
    and give it the cluster's folder; as anyone else, run them as oneself."""
    if os.geteuid() != 0:
        return [], None
    import pwd

    name = os.environ.get("DFX_PG_USER", "postgres")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            f"running as root, the sandbox cluster needs an unprivileged user {name!r} (set DFX_PG_USER)"
        ) from None
    return ["runuser", "-u", name, "--"], (entry.pw_uid, entry.pw_gid)


def _give(folder: Path, owner: tuple[int, int] | None) -> None:
    if owner is None:
        return
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), *owner)
    os.chown(folder, *owner)


# A cluster must not outlive the process that started it, however that process ends (`dfx sandbox serve`
# stopped with SIGTERM runs no `finally`): a watchdog in its own session polls the owner and, once it is
# gone, stops the cluster and deletes its folder. `LocalCluster.stop()` ends the watchdog first.
_WATCHDOG = """
import os, shutil, subprocess, sys, time
owner, pg_ctl, folder, run_as = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
while os.path.isdir(folder):
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        subprocess.run([*run_as, pg_ctl, "-D", os.path.join(folder, "data"), "-m", "immediate", "-w", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)
        break
    except PermissionError:
        pass
    time.sleep(1)
"""


def _watch(folder: Path, bindir: Path, run_as: list[str]) -> subprocess.Popen:
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(bindir / "pg_ctl"), str(folder), *run_as],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalCluster:
    """A running throwaway cluster; `stop()` ends it and deletes its folder."""

    folder: Path
    port: int
    bindir: Path
    run_as: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    client_certs: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (certificate, key) PEM
    watchdog: subprocess.Popen | None = None
    url: str = ""

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def admin(self, database: str = DATABASE) -> Any:
        """A superuser session over the private socket (seeding and test set-up only)."""
        import psycopg

        return psycopg.connect(host=str(self.folder), port=self.port, dbname=database, user="postgres", autocommit=True)

    def endpoint(self, user: str = READER, **extra: Any) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "database": DATABASE,
            "user": user,
            "sslmode": "verify-full",
            **extra,
        }

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.kill()
            self.watchdog.wait()
        subprocess.run(
            [
                *self.run_as,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.folder / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster(ca: SandboxCA, *, bindir: Path | None = None) -> LocalCluster:
    """initdb, TLS and SCRAM configured, started, the roles and schema created (no rows yet)."""
    bindir = bindir or find_bindir()
    run_as, owner = _server_user()
    # Short: the Unix socket's path must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="dfxpg-"))
    os.chmod(folder, 0o700)
    data = folder / "data"
    admin_password = secrets.token_urlsafe(24)
    pwfile = folder / "pw"
    pwfile.write_text(admin_password)
    _give(folder, owner)
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile), "-A", "scram-sha-256",
         "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    pwfile.unlink()
    cert, key = ca.write_server_files(folder / "tls")
    (folder / "tls" / "client-ca.pem").write_bytes(ca.ca_pem_path.read_bytes())  # who may sign client certificates
    _give(folder, owner)
    port = _free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"""
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{folder}'
ssl = on
ssl_cert_file = '{cert}'
ssl_key_file = '{key}'
ssl_min_protocol_version = 'TLSv1.2'
ssl_ca_file = '{folder / "tls" / "client-ca.pem"}'
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 40
shared_buffers = 32MB
"""
        )
    # Over TCP: TLS and SCRAM or nothing. The socket (in the 0700 folder) is the administrator's.
    (data / "pg_hba.conf").write_text(
        "local all postgres trust\n"
        f"hostssl all {CERT_READER} 127.0.0.1/32 cert\n"  # its client certificate, no password
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostnossl all all 0.0.0.0/0 reject\n"
    )
    _give(folder, owner)
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "30", "start"],
        check=True,
        capture_output=True,
    )
    cluster = LocalCluster(folder, port, bindir, run_as, url=f"postgresql://127.0.0.1:{port}/{DATABASE}")
    cluster.watchdog = _watch(folder, bindir, run_as)
    try:
        cluster.client_certs[CERT_READER] = ca.issue_client_cert(CERT_READER)
        _create_roles_and_schema(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _create_roles_and_schema(cluster: LocalCluster) -> None:
    from psycopg import sql

    with cluster.admin("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    for role in (READER, WRITER):
        cluster.passwords[role] = secrets.token_urlsafe(18)
    with cluster.admin() as admin:
        admin.execute("REVOKE ALL ON DATABASE customer FROM PUBLIC")
        admin.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for role, password in cluster.passwords.items():
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
            admin.execute(sql.SQL("GRANT CONNECT ON DATABASE customer TO {}").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(CERT_READER))
        )  # no password: its certificate
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE customer TO {}").format(sql.Identifier(CERT_READER)))
        admin.execute(
            """
            CREATE SCHEMA sales;
            CREATE TABLE sales.orders (
                id bigint PRIMARY KEY,
                status text NOT NULL,
                region text NOT NULL,
                amount numeric(12, 2) NOT NULL,
                customer_email text NOT NULL,
                ordered_at timestamptz NOT NULL,
                order_day date NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE INDEX orders_ordered_at ON sales.orders (ordered_at);
            CREATE INDEX orders_updated_at ON sales.orders (updated_at);
            CREATE TABLE sales.customers (id bigint PRIMARY KEY, email text NOT NULL, notes text);
            GRANT USAGE ON SCHEMA sales TO dfx_reader, dfx_writer, dfx_cert_reader;
            GRANT SELECT ON sales.orders, sales.customers TO dfx_reader, dfx_writer, dfx_cert_reader;
            GRANT INSERT ON sales.orders TO dfx_writer;
            """
        )


def seed_orders(cluster: LocalCluster, rows: int, *, first_day: date = FIRST_DAY, days: int = DAYS) -> None:
    """`rows` orders spread evenly over `days` days from `first_day` (deterministic: a row's values
    follow from its id), each with a customer email the connector must never read."""
    with cluster.admin() as admin:
        admin.execute("TRUNCATE sales.orders, sales.customers")
        admin.execute(
            """
            INSERT INTO sales.orders (id, status, region, amount, customer_email, ordered_at, order_day, updated_at)
            SELECT g,
                   (ARRAY['open', 'won', 'lost'])[1 + g %% 3],
                   (ARRAY['emea', 'amer', 'apac', 'latam'])[1 + (g / 3) %% 4],
                   ((g * 7919) %% 100000) / 100.0,
                   'customer' || g || '@example.com',
                   %(first)s::timestamptz + ((g %% %(days)s) || ' days')::interval + ((g * 37 %% 86400) || ' seconds')::interval,
                   (%(first)s::date + (g %% %(days)s)::integer),
                   TIMESTAMPTZ '2024-04-15 00:00:00+00'
            FROM generate_series(1::bigint, %(rows)s::bigint) AS g
            """,
            {"first": first_day.isoformat(), "days": days, "rows": rows},
        )
        admin.execute(
            "INSERT INTO sales.customers SELECT g, 'customer' || g || '@example.com', 'private notes' "
            "FROM generate_series(1, 100) AS g"
        )
        admin.execute("ANALYZE sales.orders")
        admin.execute("ANALYZE sales.customers")
