"""The person vault: one data key per subject (a person, known by their case), wrapped by the KEK.

Rows of `data_key` hold only wrapped keys. Erasure sets a subject's wrapped key to NULL and
records when, why and at whose request: every value sealed under that key is then unreadable
everywhere it is stored, while the rows around it (and the audit log's hashes) stay intact.
A subject erased and then written again gets a new key; the old one stays destroyed.

Unwrapped keys are cached for `cache_ttl_s` so a hot path does not unwrap per record; an
erasure is therefore complete in every other process's memory within that time.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.privacy.keys import KEY_BYTES, KeyEncryptionKey, load_kek
from services.runtime.settings import Settings


def case_subject(case_id: str) -> str:
    """The subject whose key seals a case's personal data: the person the case is about."""
    return f"case:{case_id}"


@dataclass(frozen=True, slots=True)
class DataKey:
    key_id: int
    subject: str
    key: bytes


@dataclass(frozen=True, slots=True)
class Erasure:
    subject: str
    key_id: int
    reason: str
    requested_by: str


_LIVE = (
    "SELECT key_id, subject, wrapped_key FROM data_key"
    " WHERE subject = ANY($1::text[]) AND erased_at IS NULL"
)
_CREATE = (
    "INSERT INTO data_key (subject, wrapped_key, kek_id)"
    " SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[])"
    " ON CONFLICT (subject) WHERE erased_at IS NULL DO NOTHING"
)


class PersonVault:
    def __init__(
        self, kek: KeyEncryptionKey, *, cache_ttl_s: float = 30.0, cache_size: int = 50_000
    ) -> None:
        self._kek = kek
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._by_subject: OrderedDict[str, tuple[float, DataKey]] = OrderedDict()
        self._by_id: OrderedDict[int, tuple[float, bytes | None]] = OrderedDict()

    async def keys_for(self, conn: Any, subjects: Iterable[str]) -> dict[str, DataKey]:
        """The live key of each subject, created where there is none (two round trips at most,
        whatever the number of subjects; concurrent creators agree on one key per subject)."""
        wanted = dict.fromkeys(subjects)
        found: dict[str, DataKey] = {}
        now = time.monotonic()
        for subject in wanted:
            cached = self._by_subject.get(subject)
            if cached is not None and now - cached[0] < self._ttl:
                found[subject] = cached[1]
        missing = [s for s in wanted if s not in found]
        if missing:
            rows = await conn.fetch(_LIVE, missing)
            absent = sorted(set(missing) - {r[1] for r in rows})
            if absent:
                await conn.execute(
                    _CREATE,
                    absent,
                    [self._kek.wrap(os.urandom(KEY_BYTES), subject=s) for s in absent],
                    [self._kek.key_id] * len(absent),
                )
                rows = await conn.fetch(_LIVE, missing)
            for key_id, subject, wrapped in rows:
                data_key = DataKey(key_id, subject, self._kek.unwrap(wrapped, subject=subject))
                found[subject] = data_key
                self._remember(subject, data_key, now)
        return found

    async def keys_by_id(self, conn: Any, key_ids: Iterable[int]) -> dict[int, bytes | None]:
        """Each key by id; None for a key that was erased (or never existed)."""
        wanted = set(key_ids)
        now = time.monotonic()
        out: dict[int, bytes | None] = {}
        for key_id in wanted:
            cached = self._by_id.get(key_id)
            if cached is not None and now - cached[0] < self._ttl:
                out[key_id] = cached[1]
        missing = sorted(wanted - out.keys())
        if missing:
            rows = await conn.fetch(
                "SELECT key_id, subject, wrapped_key FROM data_key"
                " WHERE key_id = ANY($1::bigint[])",
                missing,
            )
            opened: dict[int, bytes | None] = dict.fromkeys(missing)
            for key_id, subject, wrapped in rows:
                if wrapped is not None:
                    opened[key_id] = self._kek.unwrap(wrapped, subject=subject)
            for key_id, key in opened.items():
                out[key_id] = key
                self._by_id[key_id] = (now, key)
            self._trim()
        return out

    async def erase(
        self, conn: Any, subject: str, *, reason: str, requested_by: str
    ) -> Erasure | None:
        """Destroy the subject's live key; None if it has none (nothing sealed, or done)."""
        key_id = await conn.fetchval(
            "UPDATE data_key SET wrapped_key = NULL, erased_at = now(), erasure_reason = $2,"
            " erased_by = $3 WHERE subject = $1 AND erased_at IS NULL RETURNING key_id",
            subject,
            reason,
            requested_by,
        )
        self.forget(subject)
        if key_id is None:
            return None
        self._by_id.pop(key_id, None)
        return Erasure(subject, key_id, reason, requested_by)

    def forget(self, subject: str) -> None:
        cached = self._by_subject.pop(subject, None)
        if cached is not None:
            self._by_id.pop(cached[1].key_id, None)

    def _remember(self, subject: str, data_key: DataKey, now: float) -> None:
        self._by_subject[subject] = (now, data_key)
        self._by_subject.move_to_end(subject)
        self._by_id[data_key.key_id] = (now, data_key.key)
        self._trim()

    def _trim(self) -> None:
        while len(self._by_subject) > self._size:
            self._by_subject.popitem(last=False)
        while len(self._by_id) > self._size:
            self._by_id.popitem(last=False)


def person_vault(settings: Settings, *, cache_ttl_s: float = 30.0) -> PersonVault:
    """The person vault over the deployment's key-encryption key (`CASEBRIDGE_KEK`, or the
    file set-up makes): the audit service seals with it, readers open with it (the auditors'
    API with no cache, so auditors see an erasure at once)."""
    return PersonVault(load_kek(secrets_dir=settings.secrets_dir), cache_ttl_s=cache_ttl_s)
