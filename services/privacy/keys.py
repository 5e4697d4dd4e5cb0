"""The key-encryption key (KEK): it wraps every person's data key and never enters the database.

Today the KEK is 32 bytes from the environment (`CASEBRIDGE_KEK`, base64) or from a 0600 file
under the deployment's secrets (`keys/kek`); a KMS can take its place behind the same two
methods, `wrap` and `unwrap`, because nothing else ever sees the KEK itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
"""AES-256 for the KEK and for every data key."""
NONCE_BYTES = 12


class KeyUnavailableError(Exception):
    """A wrapped key cannot be opened: wrong KEK, or the wrapped bytes were altered."""


class KeyEncryptionKey(Protocol):
    """What a KEK holder (a file today, a KMS later) must do; `key_id` names the KEK used."""

    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, *, subject: str) -> bytes: ...

    def unwrap(self, wrapped: bytes, *, subject: str) -> bytes: ...


class LocalKek:
    """A KEK held in this process's memory: AES-256-GCM over the data key, bound to its subject
    (associated data), so a wrapped key copied onto another person's row does not open."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the key-encryption key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self._key_id = "local:" + hashlib.sha256(b"casebridge-kek-id\x00" + key).hexdigest()[:16]

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, data_key: bytes, *, subject: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, subject.encode())

    def unwrap(self, wrapped: bytes, *, subject: str) -> bytes:
        try:
            key = self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], subject.encode())
        except InvalidTag as exc:
            raise KeyUnavailableError(f"the data key of {subject!r} does not open") from exc
        if len(key) != KEY_BYTES:
            raise KeyUnavailableError(f"the data key of {subject!r} has the wrong length")
        return key


def kek_path(secrets_dir: Path) -> Path:
    return secrets_dir / "keys" / "kek"


def person_key_secret_path(secrets_dir: Path) -> Path:
    """The HMAC secret of pseudonymous person keys (services/cases/domain/person_key.py)."""
    return secrets_dir / "keys" / "person-key"


def ensure_secret_file(path: Path) -> bool:
    """Create a random 32-byte secret file (base64; 0600 in a 0700 directory) unless one
    exists; True if created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
    return True


def ensure_deployment_keys(secrets_dir: Path) -> list[Path]:
    """Set-up: the KEK and the person-key secret exist; returns the files it created."""
    paths = (kek_path(secrets_dir), person_key_secret_path(secrets_dir))
    return [p for p in paths if ensure_secret_file(p)]


def read_secret_file(path: Path) -> bytes:
    """The bytes of a secret file written by `ensure_secret_file`."""
    try:
        return base64.b64decode(path.read_text().strip(), validate=True)
    except ValueError as exc:
        raise ValueError(f"{path} is not base64") from exc


def load_kek(*, secrets_dir: Path, environ: dict[str, str] | None = None) -> LocalKek:
    """The KEK from `CASEBRIDGE_KEK` (base64) if set, else from `<secrets>/keys/kek`."""
    env = os.environ if environ is None else environ
    text = env.get("CASEBRIDGE_KEK")
    if text is not None:
        try:
            return LocalKek(base64.b64decode(text.strip(), validate=True))
        except ValueError as exc:
            raise ValueError("CASEBRIDGE_KEK is not a base64 32-byte key") from exc
    path = kek_path(secrets_dir)
    if not path.exists():
        raise FileNotFoundError(
            f"no key-encryption key at {path}: run `casebridge migrate` (set-up)"
        )
    return LocalKek(read_secret_file(path))
