"""Records whose header names are not UTF-8 reach the consumer instead of killing it.

Kafka header names are bytes on the wire and the broker accepts any; aiokafka decodes them
strictly as UTF-8 while it unpacks a fetch, so one such record makes every `getmany` raise
`UnicodeDecodeError` (and FastStream's consume loop, which only expects Kafka errors, ends).
An agency's client that can write raw header names (librdkafka's C API, Go clients) could so
stop intake and the audit for every partition they hold.

`tolerate_undecodable_header_names()` makes aiokafka's fetcher read record batches through
`TolerantRecords`: batches are read by aiokafka's fast reader as before; only a batch on which
it fails is read again by aiokafka's pure-Python reader, with invalid bytes in header names
replaced by U+FFFD, so the record is delivered (and dead-lettered or audited like any other).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, SupportsIndex, overload

from aiokafka.consumer import fetcher
from aiokafka.record import default_records
from aiokafka.record.memory_records import MemoryRecords

_LOG_OVERHEAD = 12
"""Base offset (int64) and batch length (int32), before each batch on the wire."""


class TolerantRecords:
    """The record batches of one fetched partition (aiokafka's `MemoryRecords` interface)."""

    def __init__(self, data: bytes) -> None:
        self._records = MemoryRecords(data)
        self._data = memoryview(data)
        self._pos = 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        (length,) = struct.unpack_from(">i", self._data, self._pos + 8)
        end = self._pos + _LOG_OVERHEAD + length
        raw, self._pos = self._data[self._pos : end], end
        if batch.magic < 2:  # legacy formats carry no headers
            return batch
        return _TolerantBatch(batch, raw)


class _TolerantBatch:
    """aiokafka's batch, read again leniently from where it failed on a header name."""

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch = batch
        self._raw = raw
        self._read = 0
        self._lenient: Iterator[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> _TolerantBatch:
        iter(self._batch)
        return self

    def __next__(self) -> Any:
        if self._lenient is None:
            try:
                record = next(self._batch)
            except UnicodeDecodeError:
                self._lenient = _read_leniently(self._raw, skip=self._read)
            else:
                self._read += 1
                return record
        return next(self._lenient)


def _read_leniently(raw: memoryview, *, skip: int) -> Iterator[Any]:
    batch = default_records._DefaultRecordBatchPy(raw)
    iter(batch)  # decompresses into the batch's buffer
    batch._buffer = _ReplacingBuffer(batch._buffer)
    for index, record in enumerate(batch):
        if index >= skip:
            yield record


class _Replacing(bytearray):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return super().decode(encoding, "replace")


class _ReplacingBuffer(bytearray):
    """A buffer whose slices decode invalid UTF-8 as U+FFFD: the pure-Python reader decodes a
    header name with `buffer[start:end].decode("utf-8")` and keys and values with `bytes(...)`,
    so only header names are affected."""

    @overload
    def __getitem__(self, index: SupportsIndex) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> bytearray: ...
    def __getitem__(self, index: SupportsIndex | slice) -> int | bytearray:
        if isinstance(index, slice):
            return _Replacing(super().__getitem__(index))
        return super().__getitem__(index)


def tolerate_undecodable_header_names() -> None:
    """Make every aiokafka consumer in this process read batches through `TolerantRecords`
    (idempotent)."""
    fetcher.MemoryRecords = TolerantRecords
