"""What "verified locally" means for the CLI and the API's output, on in-memory logs: proofs,
the record format round trip, scopes in the record, and verifying an export file."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.canonical import entry_leaf_hash
from services.audit.merkle import MerkleTree
from services.audit.proof_checks import check_consistency, check_inclusion
from services.audit.queries import AuditRow
from services.audit.tree_head import SignedTreeHead, generate_keypair, sign_tree_head, sth_to_dict
from services.audit.verify_entries import BAD_SIGNATURE, GAP, ROOT_MISMATCH, SIZE_MISMATCH
from services.audit.verify_stored import (
    CONFLICTING_HEADS,
    NO_TREE_HEAD,
    PAYLOAD_MISMATCH,
    UNREADABLE_EXPORT,
    entry_from_record,
    verify_export,
)

PRIVATE, PUBLIC = generate_keypair()
OTHER, OTHER_PUBLIC = generate_keypair()
T0 = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)


def row(seq: int, *, raw: bytes | None = None, subject: str | None = "CASE-1") -> AuditRow:
    raw = raw if raw is not None else orjson.dumps({"n": seq, "name": "synthetic"})
    return AuditRow(
        seq=seq,
        recorded_at=T0 + timedelta(seconds=seq, microseconds=7),
        event_id=f"e-{seq}",
        event_source="urn:test",
        event_type="org.casebridge.referral.submitted.v1",
        subject=subject,
        agency="id-police-aht",
        outcome="received",
        reason_code=None,
        kafka_topic="casebridge.in.id-shelter-ngo",
        kafka_partition=seq % 6,
        kafka_offset=seq * 2,
        attributes_json='{"ce_id": "e"}',
        payload_digest=hashlib.sha256(raw).digest(),
        leaf_hash=b"",
        with_payload=True,
        raw_value=raw,
    )


def log(n: int) -> tuple[list[AuditRow], MerkleTree]:
    rows = [row(i) for i in range(n)]
    rows = [dataclasses.replace(r, leaf_hash=entry_leaf_hash(r.entry())) for r in rows]
    return rows, MerkleTree.from_leaf_hashes(r.leaf_hash for r in rows)


def head(tree: MerkleTree, size: int, key: Any = PRIVATE) -> SignedTreeHead:
    return sign_tree_head(key, size, tree.root(size), 1_770_000_000_000 + size)


def proof_for(tree: MerkleTree, seq: int, size: int, key: Any = PRIVATE) -> dict[str, Any]:
    return {
        "leaf_index": seq,
        "tree_size": size,
        "audit_path": [base64.b64encode(h).decode() for h in tree.inclusion_proof(seq, size)],
        "tree_head": sth_to_dict(head(tree, size, key)),
    }


# --- records ----------------------------------------------------------------------------------


def test_metadata_records_hold_no_payload() -> None:
    r = dataclasses.replace(row(1), with_payload=False, raw_value=None)
    data = r.to_dict()
    assert "payload" not in data
    assert "raw_value" not in data
    assert data["recorded_at"] == "2026-05-01T08:30:01.000007Z"


def test_payload_records_hold_the_exact_bytes_and_the_document() -> None:
    raw = b'{"b": 1,  "a": [1.0, "\\u00e9"]}'  # spacing and escapes that JSON parsing loses
    data = row(2, raw=raw).to_dict()
    assert base64.b64decode(data["raw_value"]) == raw
    assert data["payload"] == {"b": 1, "a": [1.0, "é"]}
    assert hashlib.sha256(raw).hexdigest() == data["payload_digest"]
    assert data["erased"] is False
    not_json = row(3, raw=b"\xff\x00").to_dict()
    assert not_json["payload"] is None
    assert base64.b64decode(not_json["raw_value"]) == b"\xff\x00"


def test_an_erased_record_keeps_its_metadata_and_shows_no_payload() -> None:
    erased = dataclasses.replace(row(4), raw_value=None, erased=True).to_dict()
    assert (erased["erased"], erased["payload"], erased["raw_value"]) == (True, None, None)
    assert erased["payload_digest"] == row(4).to_dict()["payload_digest"]
    assert entry_from_record(erased) == row(4).entry()


@settings(max_examples=200)
@given(
    subject=st.none() | st.text(max_size=20),
    text=st.text(max_size=30),
    micro=st.integers(0, 999_999),
    offset=st.integers(0, 2**63 - 1),
)
def test_a_served_record_recomputes_to_its_leaf(
    subject: str | None, text: str, micro: int, offset: int
) -> None:
    r = dataclasses.replace(
        row(5, subject=subject),
        event_id=text,
        kafka_offset=offset,
        recorded_at=T0.replace(microsecond=micro),
    )
    try:
        expected = entry_leaf_hash(r.entry())
    except ValueError:  # lone surrogates cannot be logged in the first place
        return
    served = orjson.loads(orjson.dumps(r.to_dict()))
    assert entry_leaf_hash(entry_from_record(served)) == expected


@pytest.mark.parametrize(
    "change",
    [
        {"recorded_at": "2026-05-01T08:30:05.000007+00:00"},
        {"recorded_at": "2026-05-01T08:30:05Z"},
        {"payload_digest": "zz"},
        {"seq": "5"},
        {"seq": True},
        {"kafka_offset": -1},
        {"event_id": None},
    ],
)
def test_malformed_records_are_not_entries(change: dict[str, Any]) -> None:
    record = {**row(5).to_dict(), **change}
    with pytest.raises((ValueError, TypeError)):
        entry_from_record(record)


# --- proofs -----------------------------------------------------------------------------------


def test_inclusion_proofs_verify_for_every_record_and_size() -> None:
    rows, tree = log(13)
    for size in range(1, 14):
        for seq in range(size):
            ok, message = check_inclusion(rows[seq].to_dict(), proof_for(tree, seq, size), PUBLIC)
            assert ok, message


def test_inclusion_checks_fail_on_any_alteration() -> None:
    rows, tree = log(9)
    record, proof = rows[4].to_dict(), proof_for(tree, 4, 9)
    assert check_inclusion(record, proof, PUBLIC)[0]
    assert not check_inclusion({**record, "outcome": "routed"}, proof, PUBLIC)[0]
    assert not check_inclusion({**record, "seq": 5}, proof, PUBLIC)[0]
    assert not check_inclusion(rows[5].to_dict(), proof, PUBLIC)[0]
    assert not check_inclusion(record, proof, OTHER_PUBLIC)[0]
    assert not check_inclusion(record, proof_for(tree, 4, 9, OTHER), PUBLIC)[0]
    assert not check_inclusion(record, {**proof, "audit_path": proof["audit_path"][:-1]}, PUBLIC)[0]
    assert not check_inclusion(record, {**proof, "tree_size": 8}, PUBLIC)[0]
    assert not check_inclusion(record, {**proof, "audit_path": ["!!"]}, PUBLIC)[0]
    assert not check_inclusion(record, {**proof, "tree_head": None}, PUBLIC)[0]
    forged = {**proof["tree_head"], "root_hash": base64.b64encode(bytes(32)).decode()}
    assert not check_inclusion(record, {**proof, "tree_head": forged}, PUBLIC)[0]
    # The served leaf_hash is not trusted: a wrong one changes nothing.
    assert check_inclusion({**record, "leaf_hash": "00" * 32}, proof, PUBLIC)[0]


def test_consistency_checks() -> None:
    _, tree = log(20)
    for m in range(1, 21):
        ok, message = check_consistency(
            head(tree, m), head(tree, 20), tree.consistency_proof(m, 20), PUBLIC
        )
        assert ok, message
    _, other_tree = log(21)
    other_tree = MerkleTree.from_leaf_hashes(
        [other_tree.leaf_hash(i) for i in range(7)]
        + [bytes(32)]
        + [other_tree.leaf_hash(i) for i in range(8, 20)]
    )
    rewritten = head(other_tree, 20)  # validly signed, but over a rewritten history
    assert not check_consistency(head(tree, 10), rewritten, tree.consistency_proof(10, 20), PUBLIC)[
        0
    ]
    assert not check_consistency(
        head(tree, 10), head(tree, 20), tree.consistency_proof(10, 20), OTHER_PUBLIC
    )[0]


# --- verifying an export file -------------------------------------------------------------------


def write_export(path: Path, rows: list[AuditRow]) -> None:
    path.write_bytes(b"".join(r.to_json() + b"\n" for r in rows))


def test_an_intact_export_verifies_and_tampering_is_named(tmp_path: Path) -> None:
    rows, tree = log(30)
    heads = [head(tree, 10), head(tree, 30)]
    export = tmp_path / "log.jsonl"
    write_export(export, rows)
    report = verify_export(export, PUBLIC, heads)
    assert report.ok, report.detail

    changed = list(rows)
    changed[17] = dataclasses.replace(rows[17], event_type="org.casebridge.forged.v1")
    write_export(export, changed)
    report = verify_export(export, PUBLIC, heads)
    assert (report.ok, report.problem, report.first_divergent_seq) == (False, ROOT_MISMATCH, 17)

    write_export(export, rows[:12] + rows[13:])
    report = verify_export(export, PUBLIC, heads)
    assert (report.problem, report.first_divergent_seq) == (GAP, 12)

    write_export(export, [*rows[:4], dataclasses.replace(rows[4], raw_value=b"{}"), *rows[5:]])
    report = verify_export(export, PUBLIC, heads)
    assert (report.problem, report.first_divergent_seq) == (PAYLOAD_MISMATCH, 4)

    export.write_bytes(b"".join(r.to_json() + b"\n" for r in rows[:8]) + b"[1, 2]\n")
    report = verify_export(export, PUBLIC, heads)
    assert (report.problem, report.first_divergent_seq) == (UNREADABLE_EXPORT, 8)


def test_an_export_counts_erased_records_and_still_checks_every_payload_it_carries(
    tmp_path: Path,
) -> None:
    rows, tree = log(12)
    heads = [head(tree, 12)]
    export = tmp_path / "log.jsonl"
    erased = [dataclasses.replace(r, raw_value=None, erased=True) for r in rows[3:5]]
    write_export(export, [*rows[:3], *erased, *rows[5:]])
    report = verify_export(export, PUBLIC, heads)
    assert (report.ok, report.erased, report.payloads_checked) == (True, 2, 10), report.detail
    assert "2 erased" in report.detail
    # Marked erased but carrying a payload: the payload is checked all the same.
    forged = dataclasses.replace(rows[6], raw_value=b"{}", erased=True)
    write_export(export, [*rows[:6], forged, *rows[7:]])
    report = verify_export(export, PUBLIC, heads)
    assert (report.problem, report.first_divergent_seq) == (PAYLOAD_MISMATCH, 6)
    # Without payloads nothing is counted as checked.
    write_export(export, [dataclasses.replace(r, with_payload=False) for r in rows])
    report = verify_export(export, PUBLIC, heads)
    assert (report.ok, report.payloads_checked, report.erased) == (True, 0, 0)
    assert "12 sealed values not checked (the export has no payloads)" in report.detail


def test_tree_head_evidence_is_judged_before_the_log(tmp_path: Path) -> None:
    rows, tree = log(5)
    export = tmp_path / "log.jsonl"
    write_export(export, rows)
    assert verify_export(export, PUBLIC, []).problem == NO_TREE_HEAD
    assert verify_export(export, PUBLIC, [head(tree, 5, OTHER)]).problem == BAD_SIGNATURE
    fork = sign_tree_head(PRIVATE, 4, bytes(32), 1)
    report = verify_export(export, PUBLIC, [head(tree, 4), fork, head(tree, 5)])
    assert report.problem == CONFLICTING_HEADS


def test_heads_not_to_be_trusted_are_ignored_and_reported(tmp_path: Path) -> None:
    """A head the key did not sign is no evidence of anything (anyone who can write the table
    can add one), and one dated before a smaller head is not how the signer signs: neither
    becomes the head the log is checked against, neither breaks the verification, and the
    report lists both with the reason."""
    rows, tree = log(8)
    export = tmp_path / "log.jsonl"
    write_export(export, rows)
    forged = dataclasses.replace(head(tree, 8), tree_size=1000)  # signature no longer fits
    backdated = sign_tree_head(PRIVATE, 7, tree.root(7), 1)  # before the head of size 6
    report = verify_export(export, PUBLIC, [head(tree, 6), forged, backdated, head(tree, 8, OTHER)])
    assert (report.ok, report.tree_size) == (True, 6), report.detail
    assert [(r.head.tree_size, r.reason) for r in report.rejected_heads] == [
        (7, "timestamp_not_increasing"),
        (8, "bad_signature"),
        (1000, "bad_signature"),
    ]
    assert "ignored 3 tree head(s) that cannot be trusted" in report.detail
    # Positive control: the heads that can be trusted are used, to the last record.
    report = verify_export(export, PUBLIC, [head(tree, 6), head(tree, 8)])
    assert (report.ok, report.tree_size, report.rejected_heads) == (True, 8, ())
    # A validly signed head beyond the log is not set aside: it proves a lost tail.
    write_export(export, rows[:6])
    report = verify_export(export, PUBLIC, [head(tree, 6), head(tree, 8)])
    assert (report.ok, report.problem, report.first_divergent_seq) == (False, SIZE_MISMATCH, 6)


def log_v2(n: int) -> tuple[list[AuditRow], MerkleTree]:
    rows = [
        dataclasses.replace(
            row(i),
            attributes_json=orjson.dumps({"ce_id": f"e-{i}", "ce_type": "t"}).decode(),
            original_bytes=b'{"key_b64":null,"headers":[]}' if i == 3 else None,
            leaf_version=2,
        )
        for i in range(n)
    ]
    rows = [dataclasses.replace(r, leaf_hash=entry_leaf_hash(r.entry())) for r in rows]
    return rows, MerkleTree.from_leaf_hashes(r.leaf_hash for r in rows)


def test_a_v2_record_covers_its_agency_attributes_and_original_bytes(tmp_path: Path) -> None:
    rows, tree = log_v2(6)
    record, proof = rows[3].to_dict(), proof_for(tree, 3, 6)
    assert record["leaf_version"] == 2
    assert check_inclusion(record, proof, PUBLIC)[0]
    for change in (
        {"agency": "elsewhere"},
        {"attributes": {**record["attributes"], "ce_type": "forged"}},
        {"original_bytes": base64.b64encode(b"{}").decode()},
        {"leaf_version": 1},
    ):
        assert not check_inclusion({**record, **change}, proof, PUBLIC)[0], change
    export = tmp_path / "log.jsonl"
    write_export(export, rows)
    assert verify_export(export, PUBLIC, [head(tree, 6)]).ok
    moved = [*rows[:4], dataclasses.replace(rows[4], agency="elsewhere"), rows[5]]
    write_export(export, moved)
    report = verify_export(export, PUBLIC, [head(tree, 4), head(tree, 5), head(tree, 6)])
    assert (report.problem, report.first_divergent_seq) == (ROOT_MISMATCH, 4)


def test_a_v1_record_leaves_out_what_v1_never_covered() -> None:
    """Records logged before v2 verify as they were signed: their agency was not covered."""
    rows, tree = log(4)
    record, proof = rows[2].to_dict(), proof_for(tree, 2, 4)
    assert record["leaf_version"] == 1
    assert check_inclusion({**record, "agency": "elsewhere"}, proof, PUBLIC)[0]
    assert not check_inclusion({**record, "leaf_version": 2}, proof, PUBLIC)[0]
