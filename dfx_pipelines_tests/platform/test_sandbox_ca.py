"""The sandbox CA in a shared folder: a second start (another process, or the same one) reuses the CA the
first wrote instead of replacing it, so the first one's clients keep completing TLS requests; the key
is private (0600); concurrent starts end with one CA that all trust; a trusted CA is never dropped."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
import trustme
from cryptography import x509

from dfx_pipelines.platform.http import NO_RETRY, build_session
from dfx_pipelines.platform.sandbox import EchoApp, SandboxCA, SandboxServer

TOKEN = "echo-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ping(url: str, ca_pem: Path) -> dict:
    """One request on a new session (so a new connection, reading the trust file afresh)."""
    response = build_session(sandbox_ca=str(ca_pem), retry=NO_RETRY).get(f"{url}/v1/ping", headers=AUTH)
    response.raise_for_status()
    return response.json()


def certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_a_second_start_in_the_same_folder_keeps_the_first_ones_clients_working(tmp_path: Path) -> None:
    with SandboxServer(EchoApp(TOKEN), ca=SandboxCA(tmp_path)) as first:
        trust = Path(first.ca_pem_path or "")
        assert ping(first.url, trust) == {"pong": True}
        with SandboxServer(EchoApp(TOKEN), ca=SandboxCA(tmp_path)) as second:
            assert second.ca_pem_path == str(trust)
            assert ping(first.url, trust) == {"pong": True}  # the first's clients still trust what they find
            assert ping(second.url, trust) == {"pong": True}
    assert len(certificates(trust)) == 1


_SERVE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dfx_pipelines.platform.sandbox import EchoApp, SandboxCA, SandboxServer

    server = SandboxServer(EchoApp(sys.argv[2]), ca=SandboxCA(Path(sys.argv[1]))).start()
    print(server.url, flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
    server.stop()
    """
)


def test_two_sandbox_processes_in_one_folder_share_a_ca_their_clients_trust(tmp_path: Path) -> None:
    started: list[subprocess.Popen] = []

    def serve() -> str:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(tmp_path), TOKEN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        return process.stdout.readline().strip()

    try:
        first = serve()
        trust = tmp_path / "sandbox-ca.pem"
        client = build_session(sandbox_ca=str(trust), retry=NO_RETRY)
        assert client.get(f"{first}/v1/ping", headers=AUTH).json() == {"pong": True}
        second = serve()
        assert second and second != first
        # The first process's client, on a new connection, and a fresh client of either process.
        client.close()
        assert client.get(f"{first}/v1/ping", headers=AUTH).json() == {"pong": True}
        assert ping(first, trust) == ping(second, trust) == {"pong": True}
    finally:
        for process in started:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=20)


def _start_in(directory: str, barrier, results) -> None:
    barrier.wait()
    ca = SandboxCA(Path(directory))
    results.put(ca._ca.cert_pem.bytes())


def test_concurrent_starts_end_with_one_ca_that_all_trust(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    starters = 6
    barrier, results = context.Barrier(starters), context.Queue()
    processes = [context.Process(target=_start_in, args=(str(tmp_path), barrier, results)) for _ in range(starters)]
    for process in processes:
        process.start()
    signing = {results.get(timeout=60) for _ in processes}
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    assert len(signing) == 1  # every starter signs with the same CA ...
    (trusted,) = certificates(tmp_path / "sandbox-ca.pem")  # ... which is the one (complete) certificate clients trust
    assert x509.load_pem_x509_certificate(signing.pop()) == trusted
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sandbox-ca.key",
        "sandbox-ca.lock",
        "sandbox-ca.pem",
    ]  # no temp file left


def test_the_ca_key_is_private_and_reused(tmp_path: Path) -> None:
    first = SandboxCA(tmp_path)
    key = tmp_path / "sandbox-ca.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(first.ca_pem_path).st_mode) == 0o644
    before = (first.ca_pem_path.read_bytes(), key.read_bytes())
    second = SandboxCA(tmp_path)
    assert (second.ca_pem_path.read_bytes(), key.read_bytes()) == before
    assert second._ca.cert_pem.bytes() == first._ca.cert_pem.bytes()


def test_a_trusted_ca_whose_key_is_gone_stays_trusted(tmp_path: Path) -> None:
    # A trust file written by an older start (or another tool) without its key: a new CA is needed, and
    # the old certificate stays in the file, since a running server may still present it.
    old = trustme.CA()
    (tmp_path / "sandbox-ca.pem").write_bytes(old.cert_pem.bytes())
    ca = SandboxCA(tmp_path)
    trusted = certificates(ca.ca_pem_path)
    assert len(trusted) == 2 and trusted[0] == x509.load_pem_x509_certificate(old.cert_pem.bytes())
    with SandboxServer(EchoApp(TOKEN), ca=ca) as server:
        assert ping(server.url, ca.ca_pem_path) == {"pong": True}
    assert SandboxCA(tmp_path)._ca.cert_pem.bytes() == ca._ca.cert_pem.bytes()


def test_a_client_still_refuses_a_ca_from_another_folder(tmp_path: Path) -> None:
    with SandboxServer(EchoApp(TOKEN), ca=SandboxCA(tmp_path / "one")) as server:
        SandboxCA(tmp_path / "two")
        with pytest.raises(requests.exceptions.SSLError):
            ping(server.url, tmp_path / "two" / "sandbox-ca.pem")
