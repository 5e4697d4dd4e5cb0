"""Ed25519-signed tree heads (STH) for the audit log.

An STH commits the log operator to the root of the first ``tree_size`` leaves at a time.
Anyone holding only the public key can later check an exported log against it.

Signed message (57 bytes, fixed layout so there is exactly one encoding to sign)::

    b"cb-sth-v1"            9 bytes  domain/version tag: a signature made for another purpose
                                     (or another format version) can never verify as an STH
    tree_size               8 bytes  unsigned big-endian
    timestamp               8 bytes  unsigned big-endian, milliseconds since the Unix epoch
    root_hash              32 bytes  RFC 6962 Merkle tree hash

``key_id`` is not signed: it is a hint for choosing the verification key, namely the lowercase
hex SHA-256 of the raw 32-byte public key; verification also checks that it matches the key.

JSON export (``sth_to_json``) is an object with ``version`` (1), ``tree_size``, ``timestamp``,
``root_hash`` and ``signature`` (standard base64 with padding) and ``key_id``.

Heads are read back from places an attacker may write to (a database owner can insert rows
into `audit_tree_head`), so whoever uses a set of heads first screens it
(``screen_tree_heads``): heads that are not signed by the key, cover more records than the
log holds, disagree with another head of their size, or go back in time are set aside with
the reason, so that none of them can become the "latest" head that everything is checked
against, and so that they are reported rather than silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "HEAD_BAD_SIGNATURE",
    "HEAD_BEYOND_LOG",
    "HEAD_CONFLICTING_ROOT",
    "HEAD_TIME_REVERSED",
    "STH_MESSAGE_TAG",
    "RejectedHead",
    "ScreenedHeads",
    "SignedTreeHead",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_pem",
    "screen_tree_heads",
    "sign_tree_head",
    "sth_from_dict",
    "sth_from_json",
    "sth_message",
    "sth_to_dict",
    "sth_to_json",
    "verify_tree_head",
]

STH_MESSAGE_TAG: Final = b"cb-sth-v1"
_U64_MAX = 2**64 - 1
_ROOT_SIZE = 32
_SIG_SIZE = 64
_JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """A signed commitment to the log's first ``tree_size`` leaves.

    ``timestamp`` is milliseconds since the Unix epoch (UTC); ``signature`` is the 64-byte
    Ed25519 signature over ``sth_message(tree_size, timestamp, root_hash)``.
    """

    tree_size: int
    root_hash: bytes
    timestamp: int
    signature: bytes
    key_id: str


def _check_u64(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name} must be an int in 0..2**64-1, got {value!r}")


def sth_message(tree_size: int, timestamp: int, root_hash: bytes) -> bytes:
    """The exact bytes that are signed (layout in the module docstring)."""
    _check_u64("tree_size", tree_size)
    _check_u64("timestamp", timestamp)
    if not isinstance(root_hash, bytes) or len(root_hash) != _ROOT_SIZE:
        raise ValueError("root_hash must be 32 bytes")
    return STH_MESSAGE_TAG + struct.pack(">QQ", tree_size, timestamp) + root_hash


def key_id(public_key: Ed25519PublicKey) -> str:
    """Lowercase hex SHA-256 of the raw public key: a stable, unambiguous key identifier."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_tree_head(
    private_key: Ed25519PrivateKey, size: int, root: bytes, timestamp: int
) -> SignedTreeHead:
    """Sign the tree head for ``size`` leaves with root ``root`` at ``timestamp`` (ms)."""
    message = sth_message(size, timestamp, root)
    return SignedTreeHead(
        tree_size=size,
        root_hash=root,
        timestamp=timestamp,
        signature=private_key.sign(message),
        key_id=key_id(private_key.public_key()),
    )


def verify_tree_head(public_key: Ed25519PublicKey, sth: SignedTreeHead) -> bool:
    """True iff ``sth`` was signed by ``public_key`` and names that key.  Never raises."""
    try:
        message = sth_message(sth.tree_size, sth.timestamp, sth.root_hash)
    except ValueError:
        return False
    if not isinstance(sth.signature, bytes) or len(sth.signature) != _SIG_SIZE:
        return False
    if sth.key_id != key_id(public_key):
        return False
    try:
        public_key.verify(sth.signature, message)
    except InvalidSignature:
        return False
    return True


# --- JSON export ---------------------------------------------------------------------------


def sth_to_dict(sth: SignedTreeHead) -> dict[str, Any]:
    """JSON-ready dict (bytes as standard base64) for files, Kafka and HTTP responses."""
    return {
        "version": _JSON_VERSION,
        "tree_size": sth.tree_size,
        "timestamp": sth.timestamp,
        "root_hash": base64.b64encode(sth.root_hash).decode("ascii"),
        "signature": base64.b64encode(sth.signature).decode("ascii"),
        "key_id": sth.key_id,
    }


def sth_to_json(sth: SignedTreeHead) -> bytes:
    """Compact JSON (UTF-8 bytes) of ``sth_to_dict``."""
    return orjson.dumps(sth_to_dict(sth))


def _b64(data: dict[str, Any], name: str, size: int) -> bytes:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{name} is not valid base64") from exc
    if len(raw) != size:
        raise ValueError(f"{name} must decode to {size} bytes")
    return raw


def sth_from_dict(data: dict[str, Any]) -> SignedTreeHead:
    """Parse ``sth_to_dict`` output strictly; raises ``ValueError`` on anything malformed.

    Parsing does not verify the signature: call ``verify_tree_head``.
    """
    if not isinstance(data, dict):
        raise ValueError("STH must be a JSON object")
    if data.get("version") != _JSON_VERSION or type(data.get("version")) is not int:
        raise ValueError(f"unsupported STH version {data.get('version')!r}")
    tree_size, timestamp, kid = data.get("tree_size"), data.get("timestamp"), data.get("key_id")
    if type(tree_size) is not int or type(timestamp) is not int:
        raise ValueError("tree_size and timestamp must be integers")
    _check_u64("tree_size", tree_size)
    _check_u64("timestamp", timestamp)
    if not isinstance(kid, str):
        raise ValueError("key_id must be a string")
    return SignedTreeHead(
        tree_size=tree_size,
        root_hash=_b64(data, "root_hash", _ROOT_SIZE),
        timestamp=timestamp,
        signature=_b64(data, "signature", _SIG_SIZE),
        key_id=kid,
    )


def sth_from_json(text: str | bytes) -> SignedTreeHead:
    """Parse ``sth_to_json`` output (str or bytes)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"STH is not valid JSON: {exc}") from exc
    return sth_from_dict(data)


# --- screening a set of heads ---------------------------------------------------------------

HEAD_BAD_SIGNATURE: Final = "bad_signature"
"""Not signed by the key (or naming another key): anyone could have written it."""
HEAD_BEYOND_LOG: Final = "beyond_log"
"""Covers more records than the log holds: it cannot describe this log (or the log lost its
tail: a verifier, which holds the log, reports that as truncation instead)."""
HEAD_CONFLICTING_ROOT: Final = "conflicting_root"
"""Validly signed, but another validly signed head of the same size has another root: the key
signed two histories, and nothing says which one is true, so neither is used."""
HEAD_TIME_REVERSED: Final = "timestamp_not_increasing"
"""Validly signed, but dated before a smaller head: the signer never does that (each head's
timestamp is at least its predecessor's)."""


@dataclass(frozen=True, slots=True)
class RejectedHead:
    """A head set aside by ``screen_tree_heads``, and why (one of the ``HEAD_*`` codes)."""

    head: SignedTreeHead
    reason: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"tree_head": sth_to_dict(self.head), "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ScreenedHeads:
    """Heads fit to check a log against (by size, then time) and the ones set aside."""

    accepted: tuple[SignedTreeHead, ...]
    rejected: tuple[RejectedHead, ...]

    @property
    def latest(self) -> SignedTreeHead | None:
        """The accepted head of the largest size (the newest of that size)."""
        return self.accepted[-1] if self.accepted else None

    def at(self, tree_size: int) -> SignedTreeHead | None:
        """The accepted head of exactly `tree_size` (the oldest, if the key signed it twice)."""
        return next((h for h in self.accepted if h.tree_size == tree_size), None)

    def verified(self) -> tuple[SignedTreeHead, ...]:
        """Every head the key signed, accepted or not (conflicts are evidence too)."""
        signed = [r.head for r in self.rejected if r.reason != HEAD_BAD_SIGNATURE]
        return tuple(sorted((*self.accepted, *signed), key=_order))


def _order(head: SignedTreeHead) -> tuple[int, int, bytes, bytes]:
    return (head.tree_size, head.timestamp, head.root_hash, head.signature)


def _time_ordered(heads: list[SignedTreeHead]) -> set[int]:
    """Positions (in `heads`, sorted by size) of the longest run whose timestamps never go
    down. The longest run, not the first: one odd head early on (a far-future timestamp)
    must not push every later, honest head out. Of equally long runs, the one ending at the
    smallest size: an odd head must not become the latest either."""
    tails: list[int] = []  # tails[k]: the run of length k+1 ending at the smallest timestamp
    tail_times: list[int] = []
    previous: list[int] = []
    lengths: list[int] = []
    for i, head in enumerate(heads):
        k = bisect.bisect_right(tail_times, head.timestamp)
        previous.append(tails[k - 1] if k else -1)
        lengths.append(k + 1)
        if k == len(tails):
            tails.append(i)
            tail_times.append(head.timestamp)
        else:
            tails[k] = i
            tail_times[k] = head.timestamp
    keep: set[int] = set()
    i = lengths.index(len(tails)) if tails else -1
    while i >= 0:
        keep.add(i)
        i = previous[i]
    return keep


def screen_tree_heads(
    heads: Iterable[SignedTreeHead],
    public_key: Ed25519PublicKey,
    *,
    log_size: int | None = None,
    signed: Callable[[SignedTreeHead], bool] | None = None,
) -> ScreenedHeads:
    """Split `heads` (from any places, duplicates allowed) into those fit to check a log of
    `log_size` records against and those set aside, each with its reason.

    `log_size` None skips the size check (a verifier judges a head beyond the log itself).
    `signed` replaces ``verify_tree_head`` (e.g. a memoised one: the API screens every
    request, and Ed25519 verification is the cost).
    """
    check = signed or partial(verify_tree_head, public_key)
    rejected: list[RejectedHead] = []
    valid: list[SignedTreeHead] = []
    for head in sorted(set(heads), key=_order):
        if not check(head):
            detail = f"the head of size {head.tree_size} is not signed by this key"
            rejected.append(RejectedHead(head, HEAD_BAD_SIGNATURE, detail))
        elif log_size is not None and head.tree_size > log_size:
            detail = f"the head covers {head.tree_size} records, the log holds {log_size}"
            rejected.append(RejectedHead(head, HEAD_BEYOND_LOG, detail))
        else:
            valid.append(head)
    roots: dict[int, set[bytes]] = {}
    for head in valid:
        roots.setdefault(head.tree_size, set()).add(head.root_hash)
    unique: list[SignedTreeHead] = []
    for head in valid:
        if len(roots[head.tree_size]) > 1:
            detail = f"two validly signed heads of size {head.tree_size} with different roots"
            rejected.append(RejectedHead(head, HEAD_CONFLICTING_ROOT, detail))
        else:
            unique.append(head)
    keep = _time_ordered(unique)
    accepted: list[SignedTreeHead] = []
    for i, head in enumerate(unique):
        if i in keep:
            accepted.append(head)
        else:
            detail = (
                f"the head of size {head.tree_size} is dated {head.timestamp} ms, before a"
                " head of a smaller size, or a larger size is dated before it"
            )
            rejected.append(RejectedHead(head, HEAD_TIME_REVERSED, detail))
    rejected.sort(key=lambda r: _order(r.head))
    return ScreenedHeads(tuple(accepted), tuple(rejected))


# --- keys ----------------------------------------------------------------------------------


def generate_keypair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    """Fresh Ed25519 key pair, for development and tests (production keys come from config)."""
    private = Ed25519PrivateKey.generate()
    return private, private.public_key()


def _as_text(data: str | bytes) -> str:
    return data.decode("ascii") if isinstance(data, bytes) else data


def load_private_key(data: str | bytes) -> Ed25519PrivateKey:
    """Load a PKCS#8 PEM (unencrypted) or the base64 of the raw 32-byte seed.

    Two forms because a PEM file suits mounted secrets and a one-line base64 suits env vars.
    """
    text = _as_text(data).strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("PEM private key is not Ed25519")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("private key is neither PEM nor base64") from exc
    if len(raw) != 32:
        raise ValueError("raw Ed25519 private key must be 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def private_key_pem(private_key: Ed25519PrivateKey) -> str:
    """Unencrypted PKCS#8 PEM of a private key (dev tooling; store it as a secret)."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_pem(private_key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SubjectPublicKeyInfo PEM of the public half, the only thing a verifier needs."""
    public = private_key.public_key() if isinstance(private_key, Ed25519PrivateKey) else private_key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(data: str | bytes) -> Ed25519PublicKey:
    """Load a SubjectPublicKeyInfo PEM, or the base64 of the raw 32-byte public key."""
    text = _as_text(data).strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("PEM public key is not Ed25519")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("public key is neither PEM nor base64") from exc
    if len(raw) != 32:
        raise ValueError("raw Ed25519 public key must be 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)
