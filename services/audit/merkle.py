"""RFC 6962 (Certificate Transparency) Merkle tree hash, proofs and proof verification.

The tree is exactly RFC 6962 section 2.1 (restated in RFC 9162 section 2.1) so that any
CT-compatible verifier can check our proofs:

* ``leaf_hash(d) = SHA-256(0x00 || d)`` and ``node = SHA-256(0x01 || left || right)``: the
  distinct prefixes stop a leaf from being passed off as an interior node (second preimage).
* ``MTH([]) = SHA-256("")``; for ``n > 1`` the list splits at ``k``, the largest power of two
  strictly smaller than ``n``.  Every left subtree is therefore *perfect* and aligned
  (``[j * 2**h, (j + 1) * 2**h)``), so those hashes never change once the log has grown past
  them: that is what makes the log append-only verifiable and what ``MerkleTree`` caches.

All hashes are 32-byte ``bytes``.  Proof lists are ordered leaf-to-root, as RFC 9162 sends them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_sha256 = hashlib.sha256
_LEAF = b"\x00"
_NODE = b"\x01"

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""MTH of the empty list (RFC 6962: the hash of the empty string, not of a leaf)."""


def leaf_hash(entry: bytes) -> bytes:
    """Hash one log entry as a leaf: ``SHA-256(0x00 || entry)``."""
    return _sha256(_LEAF + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node: ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    """Hash adjacent pairs; an odd last node is promoted unchanged.

    Promoting the unpaired right-most node level by level yields exactly RFC 6962's tree: the
    right-most subtree at each split is the only one that is not perfect, and its root is formed
    by the same carries.  Pairing in a comprehension keeps the hot loop in C.
    """
    it = iter(level)
    nxt = [_sha256(_NODE + a + b).digest() for a, b in zip(it, it, strict=False)]
    if len(level) & 1:
        nxt.append(level[-1])
    return nxt


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash (MTH) of a list of leaf hashes.

    Iterative, level by level (n - 1 node hashes, no recursion), so a million leaves take well
    under a second.  Raises ``ValueError`` if any hash is not 32 bytes.
    """
    if not hashes:
        return EMPTY_ROOT
    if set(map(len, hashes)) != {HASH_SIZE}:
        raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")
    level: Sequence[bytes] = hashes
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


# --- proof construction (shared by the free functions and MerkleTree) -----------------------

_SubtreeHash = Callable[[int, int], bytes]


def _inclusion_path(index: int, size: int, mth: _SubtreeHash) -> list[bytes]:
    """RFC 6962 2.1.1 ``PATH(m, D[n])``, unrolled: walk from the root towards the leaf taking
    the sibling subtree hash at each split, then reverse to the leaf-to-root order."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} out of range for tree size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            path.append(mth(mid, hi))
            hi = mid
        else:
            path.append(mth(lo, mid))
            lo = mid
    path.reverse()
    return path


def _consistency_path(m: int, n: int, mth: _SubtreeHash) -> list[bytes]:
    """RFC 6962 2.1.2 ``PROOF(m, D[n]) = SUBPROOF(m, D[n], true)``, unrolled.

    The walk descends towards the boundary ``m``.  Once it has stepped into a right subtree the
    old root is no longer a node of the new tree (``b`` becomes false), so the subtree where the
    walk ends must be included; if it only went left, that subtree *is* the old tree and the
    verifier already holds its hash.  ``m == 0`` and ``m == n`` give the empty proof.
    """
    if not 0 <= m <= n:
        raise ValueError(f"need 0 <= m <= n, got m={m}, n={n}")
    if m in (0, n):
        return []
    path: list[bytes] = []
    lo, hi = 0, n
    old_tree_is_subtree = True
    while m != hi:
        mid = lo + _split(hi - lo)
        if m <= mid:
            path.append(mth(mid, hi))
            hi = mid
        else:
            path.append(mth(lo, mid))
            lo = mid
            old_tree_is_subtree = False
    if not old_tree_is_subtree:
        path.append(mth(lo, hi))
    path.reverse()
    return path


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree of all ``leaf_hashes`` (O(n) hashing).

    Use ``MerkleTree.inclusion_proof`` for repeated queries; this is the stateless form.
    """

    def mth(lo: int, hi: int) -> bytes:
        return root_from_leaf_hashes(leaf_hashes[lo:hi])

    return _inclusion_path(index, len(leaf_hashes), mth)


def consistency_proof(m: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Proof that the first ``m`` leaves form a prefix of the tree of all ``leaf_hashes``."""

    def mth(lo: int, hi: int) -> bytes:
        return root_from_leaf_hashes(leaf_hashes[lo:hi])

    return _consistency_path(m, len(leaf_hashes), mth)


# --- verification (RFC 9162) --------------------------------------------------------------


def _all_hashes(values: Iterable[bytes]) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` show ``leaf_hash`` at ``index`` under ``root``?

    ``fn``/``sn`` track the node's index and the last index on the current level; a node that
    is a right child, or the last node with no sibling, consumes the proof hash on the left,
    and levels on which the node has no sibling are skipped.  Requiring ``sn == 0`` at the end
    rejects proofs that are too long or too short for ``tree_size``.  Never raises.
    """
    if not (0 <= index < tree_size) or not _all_hashes((leaf_hash, root, *proof)):
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _sha256(_NODE + p + r).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(_NODE + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree of size ``m`` with ``root_m`` a prefix of the tree of size
    ``n`` with ``root_n``?

    The proof lets the verifier rebuild *both* roots from the same hashes (``fr`` uses only
    nodes left of the old boundary, ``sr`` all of them), so both must match.  When ``m`` is a
    power of two the old root is itself a node of the new tree and the proof omits it, hence the
    prepend.  Edge cases (not in the RFC's algorithm): ``m == n`` needs an empty proof and equal
    roots; ``m == 0`` needs an empty proof and ``root_m`` equal to the empty-tree hash.
    """
    if not 0 <= m <= n or not _all_hashes((root_m, root_n, *proof)):
        return False
    if m == n:
        return not proof and root_m == root_n
    if m == 0:
        return not proof and root_m == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if m & (m - 1) == 0:
        path.insert(0, root_m)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha256(_NODE + c + fr).digest()
            sr = _sha256(_NODE + c + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _sha256(_NODE + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root_m and sr == root_n


# --- incremental tree with cached perfect subtrees ----------------------------------------


class MerkleTree:
    """Append-only RFC 6962 tree that keeps every perfect, aligned subtree hash.

    ``_levels[h]`` is a ``bytearray`` of the 32-byte hashes of the subtrees covering leaves
    ``[j * 2**h, (j + 1) * 2**h)`` for every ``j`` that is complete (level 0 is the leaf hashes).
    Because each split in RFC 6962 yields a perfect aligned left subtree, any subtree hash a
    root or proof needs is either one lookup or, on the right-hand edge of a tree of size
    ``n``, the fold of at most ``log2(n)`` lookups; proofs cost O(log^2 n) lookups and hashes
    with no dependence on ``n`` otherwise.  Appending costs amortised O(1) hashes.  Storage is
    about 64 bytes per leaf in flat byte arrays (no per-hash Python objects).
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        hashes = list(leaf_hashes)
        if hashes:
            self._bulk_load(hashes)

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> MerkleTree:
        """Build a tree in one pass (level by level, faster than repeated ``append``)."""
        return cls(leaf_hashes)

    def _bulk_load(self, hashes: list[bytes]) -> None:
        if set(map(len, hashes)) != {HASH_SIZE}:
            raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")
        self._levels = [bytearray(b"".join(hashes))]
        level = hashes
        while len(level) > 1:
            it = iter(level)
            # Only complete pairs: an unpaired node is not a perfect subtree at the next level.
            level = [_sha256(_NODE + a + b).digest() for a, b in zip(it, it, strict=False)]
            self._levels.append(bytearray(b"".join(level)))

    def __len__(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self)

    def append(self, leaf_hash: bytes) -> int:
        """Append a leaf hash; returns its index.  Completes any perfect subtrees it closes."""
        _check_hash(leaf_hash, "leaf hash")
        levels = self._levels
        index = len(levels[0]) // HASH_SIZE
        levels[0] += leaf_hash
        h, j, node = 0, index, leaf_hash
        while j & 1:
            left = bytes(levels[h][(j - 1) * HASH_SIZE : j * HASH_SIZE])
            node = _sha256(_NODE + left + node).digest()
            h += 1
            j >>= 1
            if len(levels) == h:
                levels.append(bytearray())
            levels[h] += node
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes in order."""
        for h in leaf_hashes:
            self.append(h)

    def leaf_hash(self, index: int) -> bytes:
        """The stored hash of leaf ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        return bytes(self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def _perfect(self, height: int, j: int) -> bytes:
        return bytes(self._levels[height][j * HASH_SIZE : (j + 1) * HASH_SIZE])

    def _subtree_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range that occurs in the RFC 6962 recursion of some tree size.

        Such a range is either perfect and aligned (one lookup) or ends at the tree size; then
        it splits into perfect pieces by the binary expansion of its length, folded right to
        left, which is exactly the shape of RFC 6962's right spine.
        """
        if lo == hi:
            return EMPTY_ROOT
        pieces: list[bytes] = []
        while lo < hi:
            # Largest power-of-two block that fits; aligned because lo is a multiple of a power
            # of two at least as large as hi - lo (true of every range in the recursion).
            h = (hi - lo).bit_length() - 1
            pieces.append(self._perfect(h, lo >> h))
            lo += 1 << h
        r = pieces.pop()
        while pieces:
            r = _sha256(_NODE + pieces.pop() + r).digest()
        return r

    def _check_size(self, size: int | None) -> int:
        n = len(self)
        if size is None:
            return n
        if not 0 <= size <= n:
            raise ValueError(f"tree size {size} out of range 0..{n}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """Root of the first ``size`` leaves (default: all), i.e. any historical tree head."""
        return self._subtree_hash(0, self._check_size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
        return _inclusion_path(index, self._check_size(size), self._subtree_hash)

    def consistency_proof(self, m: int, n: int | None = None) -> list[bytes]:
        """Proof that the tree of size ``m`` is a prefix of the tree of size ``n``."""
        return _consistency_path(m, self._check_size(n), self._subtree_hash)
