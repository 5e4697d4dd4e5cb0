"""A record whose header name is not UTF-8 is delivered, not raised out of every fetch.

Batches are built as the broker stores them (aiokafka's pure-Python builder, given a name
whose bytes are not UTF-8, as a librdkafka or Go client can send) and read through
`TolerantRecords`, the reader the services' consumers use."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.record import default_records
from aiokafka.record.memory_records import MemoryRecords

from services.runtime.header_names import TolerantRecords, tolerate_undecodable_header_names


class RawName(str):
    """A header name whose wire bytes are not UTF-8."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"ce_\xff\xfe"


def batch_bytes(
    records: list[tuple[bytes, list[tuple[str, bytes]]]], *, base: int, compression: int = 0
) -> bytes:
    builder = default_records._DefaultRecordBatchBuilderPy(
        magic=2,
        compression_type=compression,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1_000_000,
    )
    for offset, (value, headers) in enumerate(records):
        builder.append(offset, timestamp=None, key=b"CASE-1", value=value, headers=headers)
    built = bytearray(builder.build())
    built[0:8] = base.to_bytes(8, "big")  # the broker assigns the base offset
    return bytes(built)


def read(records: Any) -> list[tuple[int, bytes, list[tuple[str, bytes | None]]]]:
    out: list[tuple[int, bytes, list[tuple[str, bytes | None]]]] = []
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        out.extend((r.offset, r.value, list(r.headers)) for r in batch)
    return out


@pytest.mark.parametrize("compression", [0, 1], ids=["plain", "gzip"])
def test_every_record_of_a_batch_with_an_undecodable_header_name_is_delivered(
    compression: int,
) -> None:
    data = batch_bytes([(b"one", [])], base=0) + batch_bytes(
        [
            (b"two", [("ce_id", b"a")]),
            (b"bad", [(RawName("x"), b"\xff"), ("ce_id", b"b")]),
            (b"four", []),
        ],
        base=1,
        compression=compression,
    )
    with pytest.raises(UnicodeDecodeError):
        read(MemoryRecords(data))  # what aiokafka alone does, on every fetch

    got = read(TolerantRecords(data))
    assert [(offset, value) for offset, value, _ in got] == [
        (0, b"one"),
        (1, b"two"),
        (2, b"bad"),
        (3, b"four"),
    ]
    assert got[2][2] == [("ce_\ufffd\ufffd", b"\xff"), ("ce_id", b"b")]
    assert got[1][2] == [("ce_id", b"a")]


def test_the_tolerant_reader_is_what_consumers_use() -> None:
    tolerate_undecodable_header_names()
    assert fetcher.MemoryRecords is TolerantRecords
