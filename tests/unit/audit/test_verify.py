"""verify_log: a clean log verifies; every kind of tampering is caught and located."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.canonical import AuditEntry, entry_leaf_hash
from services.audit.merkle import root_from_leaf_hashes
from services.audit.tree_head import SignedTreeHead, generate_keypair, sign_tree_head
from services.audit.verify_entries import (
    BAD_SIGNATURE,
    DUPLICATE_SEQ,
    EARLIER_ROOT_MISMATCH,
    GAP,
    ROOT_MISMATCH,
    SEQ_OUT_OF_ORDER,
    SIZE_MISMATCH,
    UNENCODABLE_ENTRY,
    VerificationReport,
    verify_log,
)

PRIVATE, PUBLIC = generate_keypair()
OTHER_PRIVATE, _ = generate_keypair()
T0 = datetime(2025, 1, 1, tzinfo=UTC)
N = 64


def entry(seq: int, tag: str = "") -> AuditEntry:
    return AuditEntry(
        seq=seq,
        event_id=f"evt-{seq}{tag}",
        event_source="ngo-lighthouse",
        event_type="referral.created",
        subject=f"case-{seq % 7}",
        kafka_topic="casebridge.inbound.ngo-lighthouse",
        kafka_partition=seq % 3,
        kafka_offset=1000 + seq,
        recorded_at=T0 + timedelta(seconds=seq),
        outcome="accepted" if seq % 5 else "rejected",
        reason_code=None if seq % 5 else "schema_invalid",
        payload_digest=hashlib.sha256(f"payload-{seq}{tag}".encode()).digest(),
    )


LOG = [entry(i) for i in range(N)]
HASHES = [entry_leaf_hash(e) for e in LOG]


def head(
    size: int, hashes: list[bytes] = HASHES, key: Ed25519PrivateKey = PRIVATE
) -> SignedTreeHead:
    return sign_tree_head(key, size, root_from_leaf_hashes(hashes[:size]), 1_700_000_000_000 + size)


STH = head(N)
ALL_HEADS = [head(s) for s in range(1, N)]  # one signed head per appended entry


def renumber(entries: list[AuditEntry]) -> list[AuditEntry]:
    return [dataclasses.replace(e, seq=i) for i, e in enumerate(entries)]


def check(
    report: VerificationReport,
    problem: str | None,
    first: int | None,
    *,
    intact: int | None = None,
) -> None:
    assert report.problem == problem, report
    assert report.ok is (problem is None)
    assert report.first_divergent_seq == first, report
    if intact is not None:
        assert report.intact_prefix == intact, report


# --- clean logs --------------------------------------------------------------------------


def test_clean_log_verifies() -> None:
    report = verify_log(LOG, STH, PUBLIC)
    check(report, None, None, intact=N)
    assert (report.checked, report.tree_size, report.divergent_before) == (N, N, None)


def test_clean_log_verifies_with_all_evidence() -> None:
    check(
        verify_log(iter(LOG), STH, PUBLIC, earlier_sths=ALL_HEADS, leaf_hashes=HASHES),
        None,
        None,
        intact=N,
    )


def test_entries_after_the_head_are_not_read() -> None:
    def stream() -> Iterator[AuditEntry]:
        yield from LOG[:10]
        raise AssertionError("read past the tree head")

    check(verify_log(stream(), head(10), PUBLIC), None, None, intact=10)


def test_empty_log() -> None:
    check(verify_log([], head(0), PUBLIC), None, None, intact=0)
    check(verify_log(LOG, head(0), PUBLIC), None, None, intact=0)


def test_bad_signature() -> None:
    forged = head(N, key=OTHER_PRIVATE)
    check(verify_log(LOG, forged, PUBLIC), BAD_SIGNATURE, None)
    tampered = dataclasses.replace(STH, root_hash=hashlib.sha256(b"x").digest())
    check(verify_log(LOG, tampered, PUBLIC), BAD_SIGNATURE, None)
    check(verify_log(LOG, dataclasses.replace(STH, tree_size=N - 1), PUBLIC), BAD_SIGNATURE, None)


# --- tampering -----------------------------------------------------------------------------

FIELD_CHANGES: dict[str, Any] = {
    "event_id": "evt-forged",
    "event_type": "referral.withdrawn",
    "subject": None,
    "kafka_offset": 999_999,
    "recorded_at": T0 - timedelta(days=1),
    "outcome": "delivered",
    "reason_code": "manual_override",
    "payload_digest": bytes(32),
}


def changed(k: int, field: str = "outcome") -> list[AuditEntry]:
    log = list(LOG)
    log[k] = dataclasses.replace(log[k], **{field: FIELD_CHANGES[field]})
    return log


@pytest.mark.parametrize("field", sorted(FIELD_CHANGES))
@pytest.mark.parametrize("k", [0, 1, 31, 32, N - 1])
def test_changed_field_is_located_by_earlier_heads(field: str, k: int) -> None:
    report = verify_log(changed(k, field), STH, PUBLIC, earlier_sths=ALL_HEADS)
    check(report, ROOT_MISMATCH, k, intact=k)
    assert report.divergent_before == k + 1


@pytest.mark.parametrize("k", [0, 5, 33, N - 1])
def test_changed_field_is_located_by_exported_leaf_hashes(k: int) -> None:
    check(verify_log(changed(k), STH, PUBLIC, leaf_hashes=HASHES), ROOT_MISMATCH, k, intact=k)
    # An export longer than the head is authenticated by its prefix.
    longer = [*HASHES, hashlib.sha256(b"later").digest()]
    check(verify_log(changed(k), STH, PUBLIC, leaf_hashes=longer), ROOT_MISMATCH, k, intact=k)


def test_changed_field_without_evidence_is_detected_but_not_located() -> None:
    report = verify_log(changed(17), STH, PUBLIC)
    check(report, ROOT_MISMATCH, None, intact=0)
    assert report.divergent_before == N


def test_sparse_heads_bound_the_divergence() -> None:
    sparse = [head(s) for s in (8, 16, 24, 40)]
    report = verify_log(changed(20), STH, PUBLIC, earlier_sths=sparse)
    check(report, ROOT_MISMATCH, None, intact=16)
    assert report.divergent_before == 24
    # Heads at consecutive sizes around the change pin it down.
    report = verify_log(changed(20), STH, PUBLIC, earlier_sths=[*sparse, head(20), head(21)])
    check(report, ROOT_MISMATCH, 20, intact=20)


def test_untrusted_export_is_ignored() -> None:
    forged_export = [entry_leaf_hash(e) for e in changed(9)]
    report = verify_log(changed(9), STH, PUBLIC, leaf_hashes=forged_export)
    check(report, ROOT_MISMATCH, None, intact=0)
    check(verify_log(changed(9), STH, PUBLIC, leaf_hashes=[b"bad"]), ROOT_MISMATCH, None, intact=0)


def test_heads_signed_by_another_key_are_ignored() -> None:
    forged = [head(s, [entry_leaf_hash(e) for e in changed(3)], OTHER_PRIVATE) for s in range(1, N)]
    check(verify_log(LOG, STH, PUBLIC, earlier_sths=forged), None, None, intact=N)
    report = verify_log(changed(40), STH, PUBLIC, earlier_sths=forged)
    check(report, ROOT_MISMATCH, None, intact=0)


def test_heads_larger_than_the_log_are_ignored() -> None:
    report = verify_log(LOG[:30], head(30), PUBLIC, earlier_sths=ALL_HEADS)
    check(report, None, None, intact=30)


@pytest.mark.parametrize("k", [0, 10, N - 1])
def test_deleted_entry_leaves_a_gap(k: int) -> None:
    log = [e for e in LOG if e.seq != k]
    if k == N - 1:  # deleting the last entry is a truncation
        check(verify_log(log, STH, PUBLIC), SIZE_MISMATCH, k)
    else:
        check(verify_log(log, STH, PUBLIC), GAP, k)
        check(verify_log(log, STH, PUBLIC, earlier_sths=ALL_HEADS), GAP, k, intact=k)


@pytest.mark.parametrize("k", [0, 10, 50])
def test_deleted_and_renumbered_entry(k: int) -> None:
    log = renumber([e for e in LOG if e.seq != k])
    # Without evidence only the missing tail is visible.
    check(verify_log(log, STH, PUBLIC), SIZE_MISMATCH, N - 1, intact=0)
    check(verify_log(log, STH, PUBLIC, earlier_sths=ALL_HEADS), ROOT_MISMATCH, k, intact=k)
    check(verify_log(log, STH, PUBLIC, leaf_hashes=HASHES), ROOT_MISMATCH, k, intact=k)


@pytest.mark.parametrize("k", [0, 10, N - 1])
def test_inserted_and_renumbered_entry(k: int) -> None:
    log = renumber([*LOG[:k], entry(k, "-inserted"), *LOG[k:]])
    check(verify_log(log, STH, PUBLIC), ROOT_MISMATCH, None)
    check(verify_log(log, STH, PUBLIC, earlier_sths=ALL_HEADS), ROOT_MISMATCH, k, intact=k)
    check(verify_log(log, STH, PUBLIC, leaf_hashes=HASHES), ROOT_MISMATCH, k, intact=k)


@pytest.mark.parametrize("k", [0, 10, N - 2])
def test_inserted_entry_with_duplicate_seq(k: int) -> None:
    log = [*LOG[:k], entry(k, "-inserted"), *LOG[k:]]
    check(verify_log(log, STH, PUBLIC), DUPLICATE_SEQ, k + 1, intact=0)
    report = verify_log(log, STH, PUBLIC, earlier_sths=ALL_HEADS)
    check(report, ROOT_MISMATCH, k, intact=k)
    assert f"{DUPLICATE_SEQ} at seq {k + 1}" in report.detail


def test_replayed_entry_is_a_duplicate() -> None:
    log = [*LOG[:11], LOG[10], *LOG[11:]]
    check(verify_log(log, STH, PUBLIC, earlier_sths=ALL_HEADS), DUPLICATE_SEQ, 11, intact=11)


@pytest.mark.parametrize("k", [0, 10, N - 2])
def test_swapped_entries(k: int) -> None:
    log = list(LOG)
    log[k], log[k + 1] = log[k + 1], log[k]
    check(verify_log(log, STH, PUBLIC), SEQ_OUT_OF_ORDER, k)
    check(
        verify_log(renumber(log), STH, PUBLIC, earlier_sths=ALL_HEADS), ROOT_MISMATCH, k, intact=k
    )


@pytest.mark.parametrize("keep", [0, 1, 33, N - 1])
def test_truncated_tail(keep: int) -> None:
    report = verify_log(LOG[:keep], STH, PUBLIC, earlier_sths=ALL_HEADS)
    check(report, SIZE_MISMATCH, keep, intact=keep)
    assert report.checked == keep


def test_truncated_tail_with_earlier_change() -> None:
    report = verify_log(changed(5)[:40], STH, PUBLIC, earlier_sths=ALL_HEADS)
    check(report, ROOT_MISMATCH, 5, intact=5)
    assert f"{SIZE_MISMATCH} at seq 40" in report.detail


def test_rewritten_history_re_signed_with_stolen_key() -> None:
    log = changed(12)
    resigned = head(N, [entry_leaf_hash(e) for e in log])
    check(verify_log(log, resigned, PUBLIC), None, None)  # the latest head alone is fooled ...
    report = verify_log(log, resigned, PUBLIC, earlier_sths=ALL_HEADS)  # ... exported heads are not
    check(report, EARLIER_ROOT_MISMATCH, 12, intact=12)


def test_unencodable_entry() -> None:
    log = list(LOG)
    log[7] = dataclasses.replace(log[7], event_id="\ud800")
    check(verify_log(log, STH, PUBLIC, earlier_sths=ALL_HEADS), UNENCODABLE_ENTRY, 7, intact=7)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, N),
    st.data(),
    st.sampled_from(["change", "delete", "insert", "swap", "truncate"]),
)
def test_property_first_divergence_is_exact_with_a_head_per_entry(
    size: int, data: st.DataObject, kind: str
) -> None:
    k = data.draw(st.integers(0, size - 1))
    log = list(LOG[:size])
    if kind == "change":
        log[k] = dataclasses.replace(log[k], event_id="forged")
    elif kind == "delete":
        log = renumber(log[:k] + log[k + 1 :])
    elif kind == "insert":
        log = renumber([*log[:k], entry(k, "-x"), *log[k:]])
    elif kind == "swap":
        k = min(k, size - 2)
        if k < 0:
            return
        log[k], log[k + 1] = log[k + 1], log[k]
        log = renumber(log)
    else:
        log = log[:k]
    sth = head(size)
    report = verify_log(log, sth, PUBLIC, earlier_sths=ALL_HEADS[: size - 1])
    assert not report.ok
    assert report.first_divergent_seq == k, report
    assert report.intact_prefix == k
    export = verify_log(log, sth, PUBLIC, leaf_hashes=HASHES)
    assert export.first_divergent_seq == k, export


def test_a_missing_or_repeated_seq_is_said_plainly() -> None:
    """The report names the seq and what is wrong with it, not only a code."""
    missing = verify_log([e for e in LOG if e.seq != 12], STH, PUBLIC)
    assert (missing.problem, missing.first_divergent_seq) == (GAP, 12)
    assert "seq 12 is missing" in missing.detail
    repeated = verify_log([*LOG[:11], LOG[10], *LOG[11:]], STH, PUBLIC, earlier_sths=ALL_HEADS)
    assert repeated.problem == DUPLICATE_SEQ
    assert "seq 10 appears more than once" in repeated.detail
    swapped = list(LOG)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert "seq 3 comes after 4" in verify_log(swapped, STH, PUBLIC).detail
    assert verify_log(LOG, STH, PUBLIC).ok  # positive control
