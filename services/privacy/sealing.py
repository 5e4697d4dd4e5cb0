"""Sealing: AES-256-GCM under a person's data key, whole values or chosen JSON fields.

A sealed blob is a version byte, a random 96-bit nonce and the ciphertext with its tag. The
`context` (associated data) binds a blob to where it belongs (table, case), so a blob moved to
another row fails to open instead of showing someone else's data.

Sealed JSON fields are replaced by `{"$sealed": "<base64>"}`; what is not personal stays in
plain JSON, so the facts a case is rebuilt from survive the destruction of the key.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.privacy.keys import NONCE_BYTES

SEALED_V1: Final = b"\x01"
SEALED_MARK: Final = "$sealed"

FieldPath = tuple[str, ...]
"""A path of object keys into a JSON document, e.g. ("referral", "person")."""


class SealBrokenError(Exception):
    """A blob does not open with the key it names: altered, moved, or the wrong key."""


def seal(data_key: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return SEALED_V1 + nonce + AESGCM(data_key).encrypt(nonce, plaintext, context)


class Unsealer:
    """Opens blobs sealed under one data key. Holding one per key saves the cipher's set-up on
    every blob, which is half the cost of opening when many share a key (verification opens
    every value in the log)."""

    __slots__ = ("_aead",)

    def __init__(self, data_key: bytes) -> None:
        self._aead = AESGCM(data_key)

    def __call__(self, blob: bytes, *, context: bytes) -> bytes:
        if blob[:1] != SEALED_V1:
            raise SealBrokenError("unknown sealed format")
        nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, context)
        except InvalidTag as exc:
            raise SealBrokenError("sealed value does not open") from exc


def unseal(data_key: bytes, blob: bytes, *, context: bytes) -> bytes:
    return Unsealer(data_key)(blob, context=context)


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and SEALED_MARK in value


def seal_fields(
    document: dict[str, Any], paths: Iterable[FieldPath], data_key: bytes, *, context: bytes
) -> dict[str, Any]:
    """A copy of `document` with the value at each present, non-null path sealed."""
    out = _copy_along(document, paths)
    for path in paths:
        parent = _parent(out, path)
        if parent is None or parent.get(path[-1]) is None:
            continue
        plain = orjson.dumps(parent[path[-1]])
        blob = seal(data_key, plain, context=context + b"|" + ".".join(path).encode())
        parent[path[-1]] = {SEALED_MARK: base64.b64encode(blob).decode()}
    return out


def unseal_fields(
    document: dict[str, Any],
    paths: Iterable[FieldPath],
    data_key: bytes | None,
    *,
    context: bytes,
    erased: Any = None,
) -> dict[str, Any]:
    """A copy with each sealed path opened, or set to `erased` when the key is gone (None)."""
    out = _copy_along(document, paths)
    for path in paths:
        parent = _parent(out, path)
        if parent is None or not is_sealed(parent.get(path[-1])):
            continue
        if data_key is None:
            parent[path[-1]] = erased
            continue
        blob = base64.b64decode(parent[path[-1]][SEALED_MARK])
        plain = unseal(data_key, blob, context=context + b"|" + ".".join(path).encode())
        parent[path[-1]] = orjson.loads(plain)
    return out


def _copy_along(document: dict[str, Any], paths: Iterable[FieldPath]) -> dict[str, Any]:
    """Shallow copies of the objects on each path, so the caller's document is not changed."""
    out = dict(document)
    for path in paths:
        node = out
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                break
            node[key] = child = dict(child)
            node = child
    return out


def _parent(document: dict[str, Any], path: FieldPath) -> dict[str, Any] | None:
    node: Any = document
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
