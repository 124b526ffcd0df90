"""The secrets store: envelope encryption with AES-256-GCM, one data key per connection.

- Each connection gets its own random 32-byte data key. Secrets (OAuth tokens, API tokens,
  service-account keys) are encrypted with it; the data key itself is stored wrapped by a master key
  whose id travels with it, so the master key can be rotated by re-wrapping data keys only.
- Associated data binds every ciphertext to its workspace, connection, secret kind and data key id: a
  ciphertext copied to another connection or kind fails authentication instead of decrypting.
- Destroying a connection's data key makes everything encrypted under it unreadable at once: that is
  how revocation and removal "invalidate credentials immediately".
- Backends only store opaque blobs by name: a local directory (the embedded default) or Google Secret
  Manager (production). The metric database never sees any of this.

Fernet is AES-128-CBC and does not meet the AES-256 promise; only AESGCM with 32-byte keys is used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets as pysecrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import SecretNotFoundError, VaultError
from dfx_pipelines.platform.redaction import register_secret
from dfx_pipelines.platform.secret_input import has_control_character

log = logging.getLogger(__name__)

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM standard nonce
FORMAT_VERSION = 1
# `database_password`: a database login's password (PostgreSQL's SCRAM role); `database_client_key`: the private
# key of a database login's client certificate (PostgreSQL's `cert` method).
SECRET_KINDS = frozenset(
    {
        "oauth_access_token",
        "oauth_refresh_token",
        "api_token",
        "service_account_key",
        "client_secret",
        "basic_auth",
        "database_password",
        "database_client_key",
    }
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _check_key(key: bytes, what: str) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise VaultError(
            f"{what} must be exactly {KEY_BYTES} bytes for AES-256 (got {len(key) if isinstance(key, bytes) else type(key).__name__})"
        )
    return key


# ---------------------------------------------------------------- master keys


@dataclass
class MasterKeyring:
    """Master keys by id; new data keys are wrapped with `active_id`, old ids still unwrap until retired."""

    keys: dict[str, bytes]
    active_id: str

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            raise VaultError(f"active master key id {self.active_id!r} is not in the keyring")
        for key_id, key in self.keys.items():
            _check_key(key, f"master key {key_id!r}")

    @property
    def active_key(self) -> bytes:
        return self.keys[self.active_id]

    @staticmethod
    def key_id_for(key: bytes) -> str:
        """A stable, non-secret id for a key: a truncated hash with a distinct label."""
        return "mk-" + hashlib.sha256(b"dfx-master-key-id\0" + key).hexdigest()[:12]

    @classmethod
    def from_env_value(cls, value: str) -> MasterKeyring:
        """`DFX_MASTER_KEY`: base64 of 32 bytes, or `id:base64,id:base64` with the active key first.
        A control character anywhere (a stray line break from a secrets file) is refused, not trimmed."""
        register_secret(value)
        if has_control_character(value):
            raise VaultError(
                "DFX_MASTER_KEY contains a control character (a line break?): refused; give base64 of 32 bytes on one line"
            )
        entries = [part.strip() for part in value.split(",") if part.strip()]
        if not entries:
            raise VaultError("DFX_MASTER_KEY is empty")
        keys: dict[str, bytes] = {}
        for entry in entries:
            key_id, sep, encoded = entry.rpartition(":")
            try:
                key = _unb64(encoded if sep else entry)
            except ValueError:
                raise VaultError("DFX_MASTER_KEY is not valid base64 (expected base64 of 32 random bytes)") from None
            _check_key(key, "DFX_MASTER_KEY")
            keys[key_id if sep else cls.key_id_for(key)] = key
        return cls(keys=keys, active_id=next(iter(keys)))

    @classmethod
    def generate(cls) -> MasterKeyring:
        key = AESGCM.generate_key(bit_length=256)
        return cls(keys={cls.key_id_for(key): key}, active_id=cls.key_id_for(key))

    def with_new_active_key(self) -> MasterKeyring:
        key = AESGCM.generate_key(bit_length=256)
        key_id = self.key_id_for(key)
        return MasterKeyring(keys={key_id: key, **self.keys}, active_id=key_id)

    def retiring_all_but_active(self) -> MasterKeyring:
        return MasterKeyring(keys={self.active_id: self.active_key}, active_id=self.active_id)

    # -- a keyring file, for the embedded default only (production uses DFX_MASTER_KEY or a KMS)

    def save(self, path: Path) -> None:
        payload = {"active": self.active_id, "keys": {kid: _b64(key) for kid, key in self.keys.items()}}
        _atomic_write(path, json.dumps(payload).encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> MasterKeyring:
        try:
            payload = json.loads(path.read_text())
            return cls(keys={kid: _unb64(k) for kid, k in payload["keys"].items()}, active_id=payload["active"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VaultError(f"master key file {path} is unreadable or malformed ({type(exc).__name__})") from None

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKeyring:
        if path.exists():
            return cls.load(path)
        keyring = cls.generate()
        keyring.save(path)
        log.warning(
            "generated a local master key at %s (embedded default only): set DFX_MASTER_KEY or use the "
            "Secret Manager backend in production",
            path,
        )
        return keyring


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a 0600 temp file beside `path`, fsync, then rename over it: never a half-written secret."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- backends


class VaultBackend(Protocol):
    """Opaque blobs by name (`datakeys/<ws>/<conn>`, `secrets/<ws>/<conn>/<kind>`)."""

    def read(self, name: str) -> bytes | None: ...

    def write(self, name: str, data: bytes) -> None: ...

    def delete(self, name: str) -> bool: ...

    def names(self, prefix: str) -> list[str]: ...


class LocalFileBackend:
    """One 0600 file per blob under a 0700 directory; writes are atomic renames."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise VaultError(f"invalid vault entry name {name!r}")
        return self.root.joinpath(*parts[:-1], parts[-1] + ".json")

    def read(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _atomic_write(self._path(name), data)

    def delete(self, name: str) -> bool:
        path = self._path(name)
        try:
            # Overwrite before unlinking: a best effort on file systems that do not copy on write.
            size = path.stat().st_size
            with open(path, "r+b") as handle:
                handle.write(os.urandom(size))
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()
            return True
        except FileNotFoundError:
            return False

    def names(self, prefix: str) -> list[str]:
        base = self.root.joinpath(*[p for p in prefix.split("/") if p])
        if not base.exists():
            return []
        found = []
        for path in base.rglob("*.json"):
            relative = path.relative_to(self.root).with_suffix("")
            found.append("/".join(relative.parts))
        return sorted(found)


class GoogleSecretManagerBackend:
    """Blobs as Google Secret Manager secrets (`dfx--<name with / as -->`), latest version wins.

    The client is created lazily (no network at import or definition load) and can be injected, which
    is how tests exercise this backend at its network edge.
    """

    PREFIX = "dfx--"

    def __init__(self, project_id: str, client: Any | None = None):
        self.project_id = project_id
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud import secretmanager

            self._client = secretmanager.SecretManagerServiceClient()
        return self._client

    def _secret_id(self, name: str) -> str:
        return self.PREFIX + name.replace("/", "--")

    def _secret_path(self, name: str) -> str:
        return f"projects/{self.project_id}/secrets/{self._secret_id(name)}"

    def read(self, name: str) -> bytes | None:
        from google.api_core import exceptions as gexc

        try:
            response = self.client.access_secret_version(request={"name": self._secret_path(name) + "/versions/latest"})
        except gexc.NotFound:
            return None
        return bytes(response.payload.data)

    def write(self, name: str, data: bytes) -> None:
        from google.api_core import exceptions as gexc

        try:
            self.client.create_secret(
                request={
                    "parent": f"projects/{self.project_id}",
                    "secret_id": self._secret_id(name),
                    "secret": {"replication": {"automatic": {}}, "labels": {"managed-by": "dfx"}},
                }
            )
        except gexc.AlreadyExists:
            pass
        self.client.add_secret_version(request={"parent": self._secret_path(name), "payload": {"data": data}})

    def delete(self, name: str) -> bool:
        from google.api_core import exceptions as gexc

        try:
            self.client.delete_secret(request={"name": self._secret_path(name)})
            return True
        except gexc.NotFound:
            return False

    def names(self, prefix: str) -> list[str]:
        wanted = self._secret_id(prefix)
        found = []
        for secret in self.client.list_secrets(
            request={"parent": f"projects/{self.project_id}", "filter": f"name:{wanted}"}
        ):
            secret_id = secret.name.rsplit("/", 1)[-1]
            if secret_id.startswith(wanted):
                found.append(secret_id[len(self.PREFIX) :].replace("--", "/"))
        return sorted(found)


# ---------------------------------------------------------------- the vault


@dataclass(frozen=True)
class SecretRef:
    workspace_id: str
    connection_id: str
    kind: str

    def __post_init__(self) -> None:
        identifiers.workspace_id(self.workspace_id)
        identifiers.connection_slug(self.connection_id)
        if self.kind not in SECRET_KINDS:
            raise VaultError(f"unknown secret kind {self.kind!r}; expected one of {sorted(SECRET_KINDS)}")

    @property
    def name(self) -> str:
        return f"secrets/{self.workspace_id}/{self.connection_id}/{self.kind}"

    def associated_data(self, data_key_id: str) -> bytes:
        return (
            f"dfx-secret|v{FORMAT_VERSION}|{self.workspace_id}|{self.connection_id}|{self.kind}|{data_key_id}".encode()
        )


@dataclass(frozen=True)
class DestroyReceipt:
    """What destroying a connection's keys did, for the deletion audit."""

    workspace_id: str
    connection_id: str
    data_key_id: str | None
    secrets_deleted: int


def _data_key_name(workspace_id: str, connection_id: str) -> str:
    return f"datakeys/{workspace_id}/{connection_id}"


def _data_key_aad(workspace_id: str, connection_id: str, data_key_id: str) -> bytes:
    return f"dfx-datakey|v{FORMAT_VERSION}|{workspace_id}|{connection_id}|{data_key_id}".encode()


class Vault:
    def __init__(self, backend: VaultBackend, keyring: MasterKeyring):
        self.backend = backend
        self.keyring = keyring

    # -- data keys

    def _load_data_key_record(self, workspace_id: str, connection_id: str) -> dict[str, Any] | None:
        blob = self.backend.read(_data_key_name(workspace_id, connection_id))
        if blob is None:
            return None
        try:
            return json.loads(blob)
        except ValueError:
            raise VaultError(f"data key record of {workspace_id}/{connection_id} is malformed") from None

    def _unwrap(self, workspace_id: str, connection_id: str, record: dict[str, Any]) -> bytes:
        master_id = record.get("kid")
        master = self.keyring.keys.get(master_id) if isinstance(master_id, str) else None
        if master is None:
            raise VaultError(
                f"data key of {workspace_id}/{connection_id} is wrapped by master key {master_id!r}, "
                f"which is not in the keyring (wrong DFX_MASTER_KEY, or a retired key)"
            )
        try:
            key = AESGCM(master).decrypt(
                _unb64(record["n"]), _unb64(record["wrapped"]), _data_key_aad(workspace_id, connection_id, record["id"])
            )
        except (InvalidTag, KeyError, ValueError):
            raise VaultError(
                f"data key of {workspace_id}/{connection_id} failed authentication under master key {master_id!r} "
                f"(wrong master key, or the record was tampered with or moved)"
            ) from None
        return _check_key(key, "data key")

    def _wrap(self, workspace_id: str, connection_id: str, data_key_id: str, key: bytes) -> bytes:
        nonce = pysecrets.token_bytes(NONCE_BYTES)
        wrapped = AESGCM(self.keyring.active_key).encrypt(
            nonce, key, _data_key_aad(workspace_id, connection_id, data_key_id)
        )
        record = {
            "v": FORMAT_VERSION,
            "alg": "AES-256-GCM",
            "kid": self.keyring.active_id,
            "id": data_key_id,
            "n": _b64(nonce),
            "wrapped": _b64(wrapped),
        }
        return json.dumps(record).encode("utf-8")

    def _data_key(self, workspace_id: str, connection_id: str, *, create: bool) -> tuple[str, bytes]:
        record = self._load_data_key_record(workspace_id, connection_id)
        if record is not None:
            return record["id"], self._unwrap(workspace_id, connection_id, record)
        if not create:
            raise SecretNotFoundError(
                f"no data key for connection {workspace_id}/{connection_id} (never stored, or destroyed)"
            )
        key = AESGCM.generate_key(bit_length=256)
        data_key_id = "dk-" + pysecrets.token_hex(8)
        self.backend.write(
            _data_key_name(workspace_id, connection_id), self._wrap(workspace_id, connection_id, data_key_id, key)
        )
        return data_key_id, key

    def data_key_id(self, workspace_id: str, connection_id: str) -> str | None:
        record = self._load_data_key_record(workspace_id, connection_id)
        return record["id"] if record else None

    # -- secrets

    def put(self, ref: SecretRef, value: str | bytes) -> None:
        plaintext = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if not plaintext:
            raise VaultError(f"refusing to store an empty {ref.kind} for {ref.workspace_id}/{ref.connection_id}")
        register_secret(plaintext)
        # The last line of defence behind each input's own check: nothing stored can carry a line break
        # into a header or a log line later (a service-account key is stored as compact JSON: escaped).
        if has_control_character(plaintext.decode("utf-8", "replace")):
            raise VaultError(
                f"refusing to store a {ref.kind} containing a control character for {ref.workspace_id}/{ref.connection_id}"
            )
        data_key_id, key = self._data_key(ref.workspace_id, ref.connection_id, create=True)
        nonce = pysecrets.token_bytes(NONCE_BYTES)
        ciphertext = AESGCM(key).encrypt(nonce, plaintext, ref.associated_data(data_key_id))
        record = {
            "v": FORMAT_VERSION,
            "alg": "AES-256-GCM",
            "dk": data_key_id,
            "n": _b64(nonce),
            "ct": _b64(ciphertext),
        }
        self.backend.write(ref.name, json.dumps(record).encode("utf-8"))

    def get(self, ref: SecretRef) -> SecretStr:
        blob = self.backend.read(ref.name)
        if blob is None:
            raise SecretNotFoundError(f"no {ref.kind} stored for connection {ref.workspace_id}/{ref.connection_id}")
        try:
            record = json.loads(blob)
            nonce, ciphertext, data_key_id = _unb64(record["n"]), _unb64(record["ct"]), record["dk"]
        except (ValueError, KeyError, TypeError):
            raise VaultError(f"{ref.kind} record of {ref.workspace_id}/{ref.connection_id} is malformed") from None
        current_id, key = self._data_key(ref.workspace_id, ref.connection_id, create=False)
        if current_id != data_key_id:
            raise VaultError(
                f"{ref.kind} of {ref.workspace_id}/{ref.connection_id} was encrypted under another data key (moved or stale)"
            )
        try:
            plaintext = AESGCM(key).decrypt(nonce, ciphertext, ref.associated_data(data_key_id))
        except InvalidTag:
            raise VaultError(
                f"{ref.kind} of {ref.workspace_id}/{ref.connection_id} failed authentication (tampered with, or moved from another connection or kind)"
            ) from None
        text = plaintext.decode("utf-8")
        register_secret(text)
        return SecretStr(text)

    def has(self, ref: SecretRef) -> bool:
        return self.backend.read(ref.name) is not None

    def delete(self, ref: SecretRef) -> bool:
        return self.backend.delete(ref.name)

    def destroy_connection(self, workspace_id: str, connection_id: str) -> DestroyReceipt:
        """Delete the connection's data key first (everything under it is unreadable from that instant),
        then its ciphertexts. Safe to repeat: a second call reports nothing left to destroy."""
        record = self._load_data_key_record(workspace_id, connection_id)
        self.backend.delete(_data_key_name(workspace_id, connection_id))
        deleted = sum(
            self.backend.delete(name) for name in self.backend.names(f"secrets/{workspace_id}/{connection_id}")
        )
        return DestroyReceipt(workspace_id, connection_id, record["id"] if record else None, deleted)

    def connections(self) -> Iterable[tuple[str, str]]:
        for name in self.backend.names("datakeys"):
            _, workspace_id, connection_id = name.split("/")
            yield workspace_id, connection_id

    def rotate_master_key(self, new_keyring: MasterKeyring) -> int:
        """Re-wrap every data key under `new_keyring.active_id`; secrets themselves are untouched.

        All or nothing: every data key is unwrapped with the current keyring before anything is written
        (a wrong keyring or a damaged record fails with nothing changed); each re-wrapped record is read
        back and verified under the new keyring; if any write or check fails, every record already
        rewritten is put back byte for byte and the current keyring stays in force."""
        planned = []
        for workspace_id, connection_id in self.connections():
            name = _data_key_name(workspace_id, connection_id)
            original = self.backend.read(name)
            if original is None:
                continue
            record = self._load_data_key_record(workspace_id, connection_id)
            assert record is not None
            key = self._unwrap(workspace_id, connection_id, record)
            planned.append((workspace_id, connection_id, name, original, record["id"], key))
        current, rewritten = self.keyring, []
        try:
            self.keyring = new_keyring
            for workspace_id, connection_id, name, original, data_key_id, key in planned:
                rewritten.append((name, original))
                self.backend.write(name, self._wrap(workspace_id, connection_id, data_key_id, key))
            for workspace_id, connection_id, _name, _original, _data_key_id, key in planned:
                record = self._load_data_key_record(workspace_id, connection_id)
                if (
                    record is None
                    or record.get("kid") != new_keyring.active_id
                    or self._unwrap(workspace_id, connection_id, record) != key
                ):
                    raise VaultError(f"data key of {workspace_id}/{connection_id} did not verify after re-wrapping")
        except BaseException:
            self.keyring = current
            for name, original in reversed(rewritten):
                self.backend.write(name, original)
            raise
        return len(planned)
