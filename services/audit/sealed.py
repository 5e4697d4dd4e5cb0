"""Audit record values at rest: sealed per person, bound to their row, opened a batch at a time.

The writer seals each value under the data key of the subject the record is about
(`records.describe` names it) with the row's seq as associated data, so a sealed value copied
onto another row does not open, even one sealed under the same person's key. Readers (the
auditors' API, exports, verification) fetch the keys a batch names in one query, through the
person vault, and tell an erased key (the person's data is gone, by design) from a key id that
names no key (the row was tampered with).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.privacy.keys import KeyUnavailableError
from services.privacy.sealing import Unsealer, seal
from services.privacy.vault import PersonVault

__all__ = ["BatchKeys", "batch_keys", "open_value", "seal_value", "value_context"]


def value_context(seq: int) -> bytes:
    """Associated data of record `seq`'s sealed value: what binds it to its row."""
    return b"audit_log|%d" % seq


def seal_value(data_key: bytes, value: bytes, seq: int) -> bytes:
    return seal(data_key, value, context=value_context(seq))


def open_value(data_key: Unsealer, sealed_value: bytes, seq: int) -> bytes:
    """The plaintext; `SealBrokenError` if the value was altered or belongs to another row."""
    return data_key(sealed_value, context=value_context(seq))


@dataclass(frozen=True, slots=True)
class BatchKeys:
    """The data keys a batch of rows names, sorted by what can be done with each."""

    live: dict[int, Unsealer] = field(default_factory=dict)
    """Keys that open, ready to open values (one cipher set-up per key, not per value)."""
    erased: frozenset[int] = frozenset()
    """Keys destroyed by an erasure: their values are gone, which is not a fault."""
    unknown: frozenset[int] = frozenset()
    """Ids that name no key at all: the rows naming them were tampered with."""
    unopenable: frozenset[int] = frozenset()
    """Wrapped keys that do not open: the wrong key-encryption key, or altered keys."""


async def batch_keys(conn: Any, vault: PersonVault, key_ids: Iterable[int]) -> BatchKeys:
    """The keys of `key_ids` in one query (a second only when some are not live)."""
    wanted = set(key_ids)
    if not wanted:
        return BatchKeys()
    unopenable: set[int] = set()
    try:
        found = await vault.keys_by_id(conn, wanted)
    except KeyUnavailableError:
        found = {}  # rare: find out key by key which wrapped keys do not open
        for key_id in sorted(wanted):
            try:
                found.update(await vault.keys_by_id(conn, [key_id]))
            except KeyUnavailableError:
                unopenable.add(key_id)
    live = {k: Unsealer(v) for k, v in found.items() if v is not None}
    missing = wanted - live.keys() - unopenable
    erased: set[int] = set()
    if missing:
        erased = {
            row[0]
            for row in await conn.fetch(
                "SELECT key_id FROM data_key"
                " WHERE key_id = ANY($1::bigint[]) AND erased_at IS NOT NULL",
                sorted(missing),
            )
        }
    return BatchKeys(live, frozenset(erased), frozenset(missing - erased), frozenset(unopenable))
