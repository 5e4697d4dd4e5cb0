"""Settings of the audit signer, API and CLI (environment prefix CASEBRIDGE_AUDIT_).

Kept apart from `services.runtime.settings` so the audit pieces own their knobs; the database
and Kafka come from the shared `Settings`.

Auditor tokens are configured, never stored in the database, and only as SHA-256 hashes::

    {"auditors": [{"id": "auditor-a", "token_sha256": "<64 hex>",
                   "scopes": ["audit:metadata", "audit:payload"]}]}

either in the file named by CASEBRIDGE_AUDIT_TOKENS_FILE or inline in CASEBRIDGE_AUDIT_TOKENS
(both are read; ids must be unique). A token is a random string handed to the auditor once
(`casebridge audit token` makes one); a leaked configuration does not reveal it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.audit.tree_head import load_private_key, load_public_key
from services.runtime.settings import REPO_ROOT

SCOPE_METADATA = "audit:metadata"
"""Records without their payload (no raw value, no payload document)."""
SCOPE_PAYLOAD = "audit:payload"
"""Records with their payload; implies metadata."""
SCOPES = frozenset({SCOPE_METADATA, SCOPE_PAYLOAD})

TREE_HEADS_FILE = "tree-heads.jsonl"
LEAF_HASHES_FILE = "leaf-hashes.bin"
PUBLIC_KEY_FILE = "audit-public-key.pem"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_AUDITOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class AuditSettings(BaseSettings):
    """Signer cadence, export location, signing key, auditor tokens, API address."""

    model_config = SettingsConfigDict(
        env_prefix="CASEBRIDGE_AUDIT_",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    signing_key: SecretStr | None = None
    """Ed25519 private key: PKCS#8 PEM or base64 of the 32-byte seed. Never in the database."""
    signing_key_file: Path | None = None
    """Alternative to `signing_key`: a file holding it (a mounted secret)."""
    public_key_file: Path | None = None
    """The signer's public key (PEM), which the API checks every tree head with. Default:
    `<export_dir>/audit-public-key.pem`, or the public half of a configured signing key."""
    export_dir: Path = REPO_ROOT / ".run"
    """Where the signer appends `tree-heads.jsonl` and `leaf-hashes.bin` (outside PostgreSQL)."""
    sth_every_records: int = Field(default=1000, ge=1, le=10_000_000)
    """Sign a tree head once this many records were appended since the last one..."""
    sth_every_seconds: float = Field(default=10.0, gt=0, le=86_400)
    """...or once this much time passed and at least one record was appended."""
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    """How often the signer looks for new records."""
    tokens_file: Path | None = None
    """Auditors and their tokens' SHA-256 hashes, as JSON (module docstring)."""
    tokens: SecretStr | None = None
    """The same JSON inline (both are read; ids must be unique)."""
    api_host: str = "127.0.0.1"
    """Address the auditors' HTTP API listens on."""
    api_port: int = Field(default=8095, ge=1, le=65535)
    """Port the auditors' HTTP API listens on."""
    page_limit_default: int = Field(default=100, ge=1, le=10_000)
    """Records per page when a query names no limit."""
    page_limit_max: int = Field(default=1000, ge=1, le=10_000)
    """Most records per page a query may ask for."""

    @property
    def tree_heads_path(self) -> Path:
        return self.export_dir / TREE_HEADS_FILE

    @property
    def leaf_hashes_path(self) -> Path:
        return self.export_dir / LEAF_HASHES_FILE

    def private_key(self) -> Ed25519PrivateKey:
        """The signing key; ValueError if none (or a malformed one) is configured."""
        if self.signing_key is not None:
            return load_private_key(self.signing_key.get_secret_value())
        if self.signing_key_file is not None:
            return load_private_key(self.signing_key_file.read_text())
        raise ValueError(
            "no signing key: set CASEBRIDGE_AUDIT_SIGNING_KEY or CASEBRIDGE_AUDIT_SIGNING_KEY_FILE"
        )

    def public_key(self) -> Ed25519PublicKey:
        """The key tree heads must be signed with; ValueError if there is none to be found.

        The API needs it because `audit_tree_head` is writable by the database owner: a head
        that does not verify must never be served as the latest.
        """
        if self.public_key_file is not None:
            return load_public_key(self.public_key_file.read_text())
        if self.signing_key is not None or self.signing_key_file is not None:
            return self.private_key().public_key()
        default = self.export_dir / PUBLIC_KEY_FILE
        if default.exists():
            return load_public_key(default.read_text())
        raise ValueError(
            "no public key to check tree heads with: set CASEBRIDGE_AUDIT_PUBLIC_KEY_FILE"
        )

    def auditors(self) -> AuditorRegistry:
        """Auditors from the tokens file and the inline tokens; ValueError if malformed."""
        entries: list[Any] = []
        if self.tokens_file is not None:
            entries += _auditor_entries(self.tokens_file.read_bytes(), str(self.tokens_file))
        if self.tokens is not None:
            entries += _auditor_entries(
                self.tokens.get_secret_value().encode(), "CASEBRIDGE_AUDIT_TOKENS"
            )
        return AuditorRegistry.from_entries(entries)


@dataclass(frozen=True, slots=True)
class Auditor:
    """An authenticated auditor: who, and what they may see."""

    id: str
    scopes: frozenset[str]

    @property
    def sees_payload(self) -> bool:
        return SCOPE_PAYLOAD in self.scopes


def token_hash(token: str) -> str:
    """What the configuration stores for a token: lowercase hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class AuditorRegistry:
    """Looks auditors up by token hash, so no plain token is ever held in memory at rest."""

    def __init__(self, auditors: dict[str, Auditor]) -> None:
        self._by_hash = auditors

    @classmethod
    def from_entries(cls, entries: list[Any]) -> AuditorRegistry:
        by_hash: dict[str, Auditor] = {}
        ids: set[str] = set()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"auditor entry {i} must be an object")
            ident, digest, scopes = entry.get("id"), entry.get("token_sha256"), entry.get("scopes")
            if not isinstance(ident, str) or not _AUDITOR_ID.fullmatch(ident):
                raise ValueError(f"auditor entry {i}: id must match {_AUDITOR_ID.pattern}")
            if ident in ids:
                raise ValueError(f"auditor id {ident!r} is configured twice")
            if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                raise ValueError(f"auditor {ident}: token_sha256 must be 64 lowercase hex digits")
            if digest in by_hash:
                raise ValueError(f"auditor {ident}: token hash shared with another auditor")
            if (
                not isinstance(scopes, list)
                or not scopes
                or not all(isinstance(s, str) and s in SCOPES for s in scopes)
            ):
                raise ValueError(f"auditor {ident}: scopes must be a non-empty subset of {SCOPES}")
            ids.add(ident)
            by_hash[digest] = Auditor(ident, frozenset(scopes))
        return cls(by_hash)

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, token: str) -> Auditor | None:
        """The auditor holding `token`, or None.

        Lookup is by the token's SHA-256, so how long it takes says nothing about how close a
        guess came to a real token (a guess and a token share no hash prefix structure).
        """
        return self._by_hash.get(token_hash(token))


def _auditor_entries(raw: bytes, where: str) -> list[Any]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("auditors"), list):
        raise ValueError(f'{where}: expected {{"auditors": [...]}}')
    entries: list[Any] = document["auditors"]
    return entries
