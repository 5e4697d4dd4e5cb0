"""Judges a sequence of audit entries against signed tree heads: pure, no I/O.

Where the entries come from (PostgreSQL, an export file) and the checks beyond the leaves
(payloads, sealed values, the exported files) are `services.audit.verify_stored`'s business;
this module only decides whether the entries are the log the heads commit to, and if not,
where they first differ.

Trusts nothing but the Ed25519 public key: every entry is re-encoded (``encode_leaf``),
re-hashed and folded into a Merkle root, which must equal the root in a tree head the key
signed.  A matching root proves (by SHA-256 collision resistance) that entries
``0 .. tree_size - 1`` are exactly the ones that were logged; a mismatch proves that *some*
entry differs but not which one.  To name the first divergent entry the caller may supply
further signed evidence:

* ``earlier_sths``: older tree heads (e.g. from the exported STH topic).  A head of size ``s``
  whose root matches the recomputed prefix proves entries ``0 .. s - 1`` intact; one that does
  not match proves a divergence below ``s``.  Heads are bisected (O(log k) root computations,
  each O(log n) with cached subtrees), which assumes the signer never signed two conflicting
  histories; the divergence is pinned to one entry when heads exist for consecutive sizes.
  They are also checked when the latest root *does* match: an attacker who can re-sign (a
  stolen key) can make the latest head fit a rewritten log, but not heads already exported.
* ``leaf_hashes``: a previously exported list of leaf hashes.  It is trusted only for the
  longest prefix whose root matches a verified head; the first recomputed leaf hash that
  differs from it is then exactly the first divergent entry.

Sequence numbers are checked directly: the first gap, duplicate or out-of-order ``seq`` stops
hashing, and its position is the first divergent seq unless signed evidence shows an earlier
content divergence.  Entries after ``sth.tree_size`` are not read: later heads cover them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit.canonical import AuditEntry, encode_leaf
from services.audit.merkle import MerkleTree, root_from_leaf_hashes
from services.audit.tree_head import RejectedHead, SignedTreeHead, verify_tree_head

__all__ = [
    "BAD_SIGNATURE",
    "DUPLICATE_SEQ",
    "EARLIER_ROOT_MISMATCH",
    "GAP",
    "ROOT_MISMATCH",
    "SEQ_OUT_OF_ORDER",
    "SIZE_MISMATCH",
    "UNENCODABLE_ENTRY",
    "VerificationReport",
    "verify_log",
]

BAD_SIGNATURE: Final = "bad_signature"
"""The tree head is not validly signed by the given key (nothing else was checked)."""
GAP: Final = "gap"
"""An entry's seq is larger than expected and the missing seq never appears."""
SEQ_OUT_OF_ORDER: Final = "seq_out_of_order"
"""An entry's seq is larger than expected; the missing seq appears later in the stream."""
DUPLICATE_SEQ: Final = "duplicate_seq"
"""An entry repeats a seq that was already seen."""
SIZE_MISMATCH: Final = "size_mismatch"
"""Fewer entries than the tree head's size (truncated tail)."""
UNENCODABLE_ENTRY: Final = "unencodable_entry"
"""An entry cannot be encoded as a leaf, so it cannot be the entry that was logged."""
ROOT_MISMATCH: Final = "root_mismatch"
"""The recomputed root of the log (or of a prefix) differs from a signed root."""
EARLIER_ROOT_MISMATCH: Final = "earlier_root_mismatch"
"""The log matches the latest head but not an earlier one: history was rewritten and re-signed."""

_LEAF_PREFIX = b"\x00"


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Outcome of ``verify_log``.

    ``checked``: entries read, encoded and hashed.  ``intact_prefix``: entries
    ``0 .. intact_prefix - 1`` are proven identical to the logged ones (by a matching signed
    root).  ``divergent_before``: some entry below this seq is proven wrong (``None`` if
    ``ok``).  ``first_divergent_seq`` is the first wrong seq when known: exact when it equals
    ``intact_prefix``; for a sequence problem it is the break position, which is wrong for
    certain but earlier entries may be unproven.  ``problem`` is one of the module's codes.
    ``payloads_checked`` and ``erased`` are filled in by the payload checks of
    ``services.audit.verify_stored``: values found to hash to their digest, and values that
    cannot be checked because the person's data key was erased (their leaves still are).
    ``rejected_heads``: heads that were given but not used, and why (not signed by the key,
    dated out of order, ...): reported, never a reason to fail or to pass.
    """

    ok: bool
    problem: str | None
    checked: int
    tree_size: int
    first_divergent_seq: int | None
    intact_prefix: int
    divergent_before: int | None
    detail: str
    payloads_checked: int = 0
    erased: int = 0
    rejected_heads: tuple[RejectedHead, ...] = ()


Structural = tuple[str, int, str]
"""A sequence problem: its code, the position where hashing stopped, and what was seen."""


def _hash_entries(
    entries: Iterable[AuditEntry], size: int
) -> tuple[list[bytes], Structural | None]:
    """Leaf hashes of entries ``0 .. size - 1`` and the first sequence problem, if any."""
    hashes: list[bytes] = []
    append = hashes.append
    sha256 = hashlib.sha256
    encode = encode_leaf
    expected = 0
    it = iter(entries)
    if size == 0:
        return hashes, None
    for entry in it:
        seq = entry.seq
        if seq != expected:
            if seq < expected:
                return hashes, (DUPLICATE_SEQ, expected, f"seq {seq} appears more than once")
            if any(e.seq == expected for e in it):
                return hashes, (SEQ_OUT_OF_ORDER, expected, f"seq {expected} comes after {seq}")
            return hashes, (GAP, expected, f"seq {expected} is missing (the next is {seq})")
        try:
            append(sha256(_LEAF_PREFIX + encode(entry)).digest())
        except ValueError:
            return hashes, (UNENCODABLE_ENTRY, expected, f"seq {expected} cannot be encoded")
        expected += 1
        if expected == size:
            return hashes, None
    return hashes, (SIZE_MISMATCH, expected, f"the log ends at seq {expected}, the head at {size}")


def _trusted_prefix(leaf_hashes: Sequence[bytes], heads: Sequence[SignedTreeHead]) -> int:
    """Length of the longest prefix of ``leaf_hashes`` whose root a verified head signed."""
    try:
        reference = MerkleTree.from_leaf_hashes(leaf_hashes)
    except ValueError:  # malformed export: no evidence
        return 0
    for head in sorted(heads, key=lambda h: h.tree_size, reverse=True):
        if head.tree_size <= len(reference) and reference.root(head.tree_size) == head.root_hash:
            return head.tree_size
    return 0


def verify_log(
    entries: Iterable[AuditEntry],
    sth: SignedTreeHead,
    public_key: Ed25519PublicKey,
    *,
    earlier_sths: Iterable[SignedTreeHead] = (),
    leaf_hashes: Sequence[bytes] | None = None,
) -> VerificationReport:
    """Check that ``entries`` (in seq order, starting at 0) are the log ``sth`` commits to.

    Heads in ``earlier_sths`` that do not verify under ``public_key``, or are larger than the
    number of entries hashed (``sth.tree_size``, or the position of a sequence break), are
    ignored.  Costs one pass of encoding and hashing; a Merkle tree of the recomputed leaves is
    kept only when earlier heads need prefix roots, and ``leaf_hashes`` is only examined when
    something is wrong.  Never raises for bad input data; every failure is a report.
    """
    size = sth.tree_size

    def report(
        problem: str | None,
        checked: int,
        first: int | None,
        lo: int,
        hi: int | None,
        detail: str,
    ) -> VerificationReport:
        return VerificationReport(
            ok=problem is None,
            problem=problem,
            checked=checked,
            tree_size=size,
            first_divergent_seq=first,
            intact_prefix=lo,
            divergent_before=hi,
            detail=detail,
        )

    if not verify_tree_head(public_key, sth):
        return report(BAD_SIGNATURE, 0, None, 0, None, "tree head signature does not verify")

    hashes, structural = _hash_entries(entries, size)
    n = len(hashes)
    heads = {
        (h.tree_size, h.root_hash): h
        for h in earlier_sths
        if 0 < h.tree_size <= n and verify_tree_head(public_key, h)
    }
    ordered = sorted(heads.values(), key=lambda h: (h.tree_size, h.root_hash))

    # The tree (cached subtrees) is only worth building when earlier heads need prefix roots.
    tree = MerkleTree.from_leaf_hashes(hashes) if ordered else None
    lo = 0
    signed_hi: int | None = None  # some entry below this is wrong, proven by signed evidence
    main_ok = False
    if structural is None:
        root = tree.root() if tree is not None else root_from_leaf_hashes(hashes)
        main_ok = root == sth.root_hash
        if main_ok:
            lo = size
        else:
            signed_hi = size

    # Bisect the earlier heads for the first one the recomputed prefix no longer matches.
    a, b = 0, len(ordered)
    while a < b:
        mid = (a + b) // 2
        head = ordered[mid]
        assert tree is not None
        if tree.root(head.tree_size) == head.root_hash:
            lo = max(lo, head.tree_size)
            a = mid + 1
        else:
            signed_hi = head.tree_size if signed_hi is None else min(signed_hi, head.tree_size)
            b = mid

    if leaf_hashes is not None and (structural is not None or signed_hi is not None):
        trusted = _trusted_prefix(leaf_hashes, [sth, *ordered])
        limit = min(trusted, n)
        j = next((i for i in range(limit) if hashes[i] != leaf_hashes[i]), None)
        if j is None:
            lo = max(lo, limit)
        else:
            lo = j
            signed_hi = j + 1 if signed_hi is None else min(signed_hi, j + 1)

    if signed_hi is None and structural is None:
        return report(None, n, None, n, None, f"{n} entries match the signed root")

    if signed_hi is not None:
        # Content divergence proven by a signed root (before any sequence break).
        lo = min(lo, signed_hi - 1)
        exact = signed_hi - lo == 1
        first = lo if exact else None
        problem = EARLIER_ROOT_MISMATCH if main_ok else ROOT_MISMATCH
        detail = f"entries diverge from the signed log at seq {lo}"
        if not exact:
            detail = (
                f"entries diverge from the signed log somewhere in seq {lo}..{signed_hi - 1}; "
                "earlier tree heads or exported leaf hashes narrow this down"
            )
        if structural is not None:
            detail += f"; also {structural[0]} at seq {structural[1]} ({structural[2]})"
        if main_ok:
            detail += "; the latest head matches, so it was signed over rewritten history"
        return report(problem, n, first, lo, signed_hi, detail)

    assert structural is not None
    code, position, seen = structural
    lo = min(lo, position)
    where = "" if lo == position else f"; entries {lo}..{position - 1} not proven by a signed root"
    return report(code, n, position, lo, position + 1, f"{code} at seq {position}: {seen}{where}")
