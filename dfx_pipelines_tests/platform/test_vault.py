"""The vault: AES-256-GCM envelope encryption, associated data, master-key rotation, backends."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc

from dfx_pipelines.platform.errors import SecretNotFoundError, VaultError
from dfx_pipelines.platform.vault import (
    GoogleSecretManagerBackend,
    LocalFileBackend,
    MasterKeyring,
    SecretRef,
    Vault,
)

TOKEN = (
    "00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog.39AsX.LVpxezPwuX5VAIrrbbHMuol7GQxnMeYMN7cj8EoWr78nt1u44zU31IbYNNJguseu"
)


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault(LocalFileBackend(tmp_path / "vault"), MasterKeyring.generate())


def ref(connection: str = "sf-acme", kind: str = "oauth_refresh_token", workspace: str = "acme") -> SecretRef:
    return SecretRef(workspace, connection, kind)


def test_round_trip_and_nothing_plaintext_on_disk(vault: Vault, tmp_path: Path) -> None:
    vault.put(ref(), TOKEN)
    assert vault.get(ref()).get_secret_value() == TOKEN
    for path in (tmp_path / "vault").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes()
            assert b"AR8AQJXg5oj8" not in path.read_bytes()
            assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_records_name_aes_256_gcm_and_the_master_key_id(vault: Vault, tmp_path: Path) -> None:
    vault.put(ref(), TOKEN)
    data_key = json.loads((tmp_path / "vault/datakeys/acme/sf-acme.json").read_text())
    secret = json.loads((tmp_path / "vault/secrets/acme/sf-acme/oauth_refresh_token.json").read_text())
    assert data_key["alg"] == secret["alg"] == "AES-256-GCM"
    assert data_key["kid"] == vault.keyring.active_id
    assert secret["dk"] == data_key["id"]


def test_ciphertext_moved_to_another_connection_or_kind_fails(vault: Vault, tmp_path: Path) -> None:
    vault.put(ref("sf-acme"), TOKEN)
    vault.put(ref("sf-other"), "another-token-value")
    root = tmp_path / "vault/secrets/acme"
    # Same kind, other connection: its data key differs, and the associated data names the connection.
    (root / "sf-other/oauth_refresh_token.json").write_bytes((root / "sf-acme/oauth_refresh_token.json").read_bytes())
    with pytest.raises(VaultError, match=r"another data key|failed authentication"):
        vault.get(ref("sf-other"))
    # Same connection, other kind: same data key, but the associated data names the kind.
    (root / "sf-acme/oauth_access_token.json").write_bytes((root / "sf-acme/oauth_refresh_token.json").read_bytes())
    with pytest.raises(VaultError, match="failed authentication"):
        vault.get(ref("sf-acme", "oauth_access_token"))


def test_tampered_ciphertext_fails(vault: Vault, tmp_path: Path) -> None:
    vault.put(ref(), TOKEN)
    path = tmp_path / "vault/secrets/acme/sf-acme/oauth_refresh_token.json"
    record = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(record["ct"]))
    raw[5] ^= 0x01
    record["ct"] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(record))
    with pytest.raises(VaultError, match="failed authentication") as info:
        vault.get(ref())
    assert TOKEN not in str(info.value)


def test_wrong_master_key_is_named(vault: Vault, tmp_path: Path) -> None:
    vault.put(ref(), TOKEN)
    other = Vault(LocalFileBackend(tmp_path / "vault"), MasterKeyring.generate())
    with pytest.raises(VaultError, match="not in the keyring"):
        other.get(ref())
    # Same key id, different key bytes (someone edited DFX_MASTER_KEY): authentication fails.
    forged = MasterKeyring(keys={vault.keyring.active_id: os.urandom(32)}, active_id=vault.keyring.active_id)
    with pytest.raises(VaultError, match="wrong master key"):
        Vault(LocalFileBackend(tmp_path / "vault"), forged).get(ref())


def test_master_key_rotation_rewraps_data_keys_only(vault: Vault, tmp_path: Path) -> None:
    vault.put(ref("sf-acme"), TOKEN)
    vault.put(ref("jira-acme", "api_token"), "jira-api-token-123")
    secret_file = tmp_path / "vault/secrets/acme/sf-acme/oauth_refresh_token.json"
    secret_before = secret_file.read_bytes()
    old_id = vault.keyring.active_id
    new_keyring = vault.keyring.with_new_active_key()

    assert vault.rotate_master_key(new_keyring) == 2
    assert secret_file.read_bytes() == secret_before  # secrets untouched
    for name in ("sf-acme", "jira-acme"):
        assert json.loads((tmp_path / f"vault/datakeys/acme/{name}.json").read_text())["kid"] == new_keyring.active_id
    # The old key can now be retired: everything still decrypts with the new key alone.
    retired = Vault(LocalFileBackend(tmp_path / "vault"), new_keyring.retiring_all_but_active())
    assert retired.get(ref("sf-acme")).get_secret_value() == TOKEN
    # New connections are wrapped with the new key.
    retired.put(ref("bq-acme", "service_account_key"), '{"type": "service_account"}')
    assert json.loads((tmp_path / "vault/datakeys/acme/bq-acme.json").read_text())["kid"] != old_id


def test_rotation_with_a_keyring_missing_the_old_key_writes_nothing(vault: Vault, tmp_path: Path) -> None:
    vault.put(ref(), TOKEN)
    stranger = Vault(LocalFileBackend(tmp_path / "vault"), MasterKeyring.generate())
    before = (tmp_path / "vault/datakeys/acme/sf-acme.json").read_bytes()
    with pytest.raises(VaultError):
        stranger.rotate_master_key(MasterKeyring.generate())
    assert (tmp_path / "vault/datakeys/acme/sf-acme.json").read_bytes() == before


class FailingOnWrite(LocalFileBackend):
    """A storage fault: the n-th data-key write fails (a full disk, a Secret Manager outage)."""

    def __init__(self, root: Path, fail_on: int):
        super().__init__(root)
        self.fail_on, self.data_key_writes = fail_on, 0

    def write(self, name: str, data: bytes) -> None:
        if name.startswith("datakeys/"):
            self.data_key_writes += 1
            if self.data_key_writes == self.fail_on:
                raise OSError(28, "No space left on device")
        super().write(name, data)


@pytest.mark.parametrize("fail_on", [1, 2, 3])
def test_rotation_failing_halfway_puts_every_data_key_back(vault: Vault, tmp_path: Path, fail_on: int) -> None:
    for name in ("sf-acme", "jira-acme", "bq-acme"):
        vault.put(ref(name), f"token-of-{name}")
    records = sorted((tmp_path / "vault").rglob("*.json"))
    before = {p: p.read_bytes() for p in records}
    flaky = Vault(FailingOnWrite(tmp_path / "vault", fail_on), vault.keyring)
    with pytest.raises(OSError, match="No space"):
        flaky.rotate_master_key(vault.keyring.with_new_active_key())
    assert {p: p.read_bytes() for p in sorted((tmp_path / "vault").rglob("*.json"))} == before
    assert flaky.keyring is vault.keyring  # the old keyring stays in force
    for name in ("sf-acme", "jira-acme", "bq-acme"):
        assert vault.get(ref(name)).get_secret_value() == f"token-of-{name}"


@pytest.mark.parametrize("length", [16, 24, 31, 33])
def test_keys_must_be_32_bytes(length: int) -> None:
    with pytest.raises(VaultError, match="32 bytes"):
        MasterKeyring(keys={"k": os.urandom(length)}, active_id="k")
    with pytest.raises(VaultError, match="32 bytes"):
        MasterKeyring.from_env_value(base64.b64encode(os.urandom(length)).decode())


def test_env_keyring_with_ids_and_active_first() -> None:
    new, old = os.urandom(32), os.urandom(32)
    keyring = MasterKeyring.from_env_value(f"k2:{base64.b64encode(new).decode()},k1:{base64.b64encode(old).decode()}")
    assert keyring.active_id == "k2" and keyring.keys["k1"] == old
    with pytest.raises(VaultError, match="base64"):
        MasterKeyring.from_env_value("not base64!!")


def test_destroying_a_connection_makes_its_secrets_unreadable(vault: Vault) -> None:
    vault.put(ref("sf-acme"), TOKEN)
    vault.put(ref("sf-acme", "oauth_access_token"), "access-token-value")
    vault.put(ref("sf-keep"), "keep-this-token")
    receipt = vault.destroy_connection("acme", "sf-acme")
    assert receipt.data_key_id and receipt.data_key_id.startswith("dk-")
    assert receipt.secrets_deleted == 2
    with pytest.raises(SecretNotFoundError):
        vault.get(ref("sf-acme"))
    assert vault.get(ref("sf-keep")).get_secret_value() == "keep-this-token"
    again = vault.destroy_connection("acme", "sf-acme")
    assert again.data_key_id is None and again.secrets_deleted == 0


def test_bad_references_are_refused() -> None:
    with pytest.raises(VaultError, match="unknown secret kind"):
        SecretRef("acme", "sf-acme", "password")
    with pytest.raises(Exception, match="connection slug"):
        SecretRef("acme", "../etc", "api_token")


def test_local_master_key_file_is_private_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "home/master.key"
    first = MasterKeyring.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert MasterKeyring.load_or_create(path).keys == first.keys


class FakeSecretManager:
    """The Secret Manager API at its network edge: the calls our backend makes, with the service's errors."""

    def __init__(self) -> None:
        self.secrets: dict[str, list[bytes]] = {}
        self.calls: list[str] = []

    def create_secret(self, request: dict) -> None:
        self.calls.append("create_secret")
        name = f"{request['parent']}/secrets/{request['secret_id']}"
        if name in self.secrets:
            raise gexc.AlreadyExists("exists")
        assert request["secret"]["replication"] == {"automatic": {}}
        self.secrets[name] = []

    def add_secret_version(self, request: dict) -> None:
        self.calls.append("add_secret_version")
        if request["parent"] not in self.secrets:
            raise gexc.NotFound("no secret")
        self.secrets[request["parent"]].append(bytes(request["payload"]["data"]))

    def access_secret_version(self, request: dict):
        self.calls.append("access_secret_version")
        name = request["name"].removesuffix("/versions/latest")
        if not self.secrets.get(name):
            raise gexc.NotFound("no version")

        class Payload:
            data = self.secrets[name][-1]

        class Response:
            payload = Payload()

        return Response()

    def delete_secret(self, request: dict) -> None:
        self.calls.append("delete_secret")
        if self.secrets.pop(request["name"], None) is None:
            raise gexc.NotFound("no secret")

    def list_secrets(self, request: dict):
        needle = request["filter"].removeprefix("name:")

        class Secret:
            def __init__(self, name: str) -> None:
                self.name = name

        return [Secret(name) for name in self.secrets if needle in name.rsplit("/", 1)[-1]]


def test_google_secret_manager_backend() -> None:
    fake = FakeSecretManager()
    vault = Vault(GoogleSecretManagerBackend("dfx-prod", client=fake), MasterKeyring.generate())
    vault.put(ref(), TOKEN)
    vault.put(ref(), TOKEN + "-refreshed")  # a second version of the same secret
    assert vault.get(ref()).get_secret_value() == TOKEN + "-refreshed"
    assert all(TOKEN.encode() not in v for versions in fake.secrets.values() for v in versions)
    assert "projects/dfx-prod/secrets/dfx--secrets--acme--sf-acme--oauth_refresh_token" in fake.secrets
    receipt = vault.destroy_connection("acme", "sf-acme")
    assert receipt.secrets_deleted == 1 and fake.secrets == {}
    with pytest.raises(SecretNotFoundError):
        vault.get(ref())
