"""RFC 6962 Merkle tree: known answers, a naive reference, exhaustive proofs and bit flips."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# --- reference: the RFC 6962 section 2.1 recursion, written as literally as possible ---------


def ref_leaf(d: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + d).digest()


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Reference:
    """MTH, PATH and PROOF over ranges of one fixed leaf list (memoised MTH keeps it fast)."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves

        @cache
        def mth(lo: int, hi: int) -> bytes:
            n = hi - lo
            if n == 0:
                return hashlib.sha256(b"").digest()
            if n == 1:
                return leaves[lo]
            k = ref_k(n)
            return hashlib.sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi)).digest()

        self.mth = mth

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = ref_k(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = ref_k(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self.subproof(m, 0, n, True)


MAX_N = 300
LEAVES = [ref_leaf(i.to_bytes(4, "big")) for i in range(MAX_N)]
REF = Reference(LEAVES)


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    t = MerkleTree()
    t.extend(LEAVES)
    return t


def flips(value: bytes) -> list[bytes]:
    """Every single-bit flip of ``value``."""
    out = []
    for i in range(len(value) * 8):
        b = bytearray(value)
        b[i // 8] ^= 1 << (i % 8)
        out.append(bytes(b))
    return out


# --- known answers (certificate-transparency / trillian test vectors) ------------------------

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CT_CONSISTENCY = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
CT_HASHES = [leaf_hash(d) for d in CT_LEAVES]


def test_hash_primitives() -> None:
    assert leaf_hash(b"") == bytes.fromhex(CT_ROOTS[1])
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@pytest.mark.parametrize("n", range(len(CT_ROOTS)))
def test_known_roots(n: int) -> None:
    expected = bytes.fromhex(CT_ROOTS[n])
    assert root_from_leaf_hashes(CT_HASHES[:n]) == expected
    assert MerkleTree(CT_HASHES[:n]).root() == expected
    assert MerkleTree(CT_HASHES).root(n) == expected


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_known_inclusion_proofs(index: int, size: int) -> None:
    expected = [bytes.fromhex(h) for h in CT_INCLUSION[index, size]]
    assert inclusion_proof(index, CT_HASHES[:size]) == expected
    assert MerkleTree(CT_HASHES).inclusion_proof(index, size) == expected
    root = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(CT_HASHES[index], index, size, expected, root)


@pytest.mark.parametrize(("m", "n"), sorted(CT_CONSISTENCY))
def test_known_consistency_proofs(m: int, n: int) -> None:
    expected = [bytes.fromhex(h) for h in CT_CONSISTENCY[m, n]]
    assert consistency_proof(m, CT_HASHES[:n]) == expected
    assert MerkleTree(CT_HASHES).consistency_proof(m, n) == expected
    root_m, root_n = bytes.fromhex(CT_ROOTS[m]), bytes.fromhex(CT_ROOTS[n])
    assert verify_consistency(m, n, root_m, root_n, expected)


# --- fast implementation against the reference, exhaustively --------------------------------


def test_roots_match_reference_for_every_size(tree: MerkleTree) -> None:
    for n in range(MAX_N + 1):
        expected = REF.mth(0, n)
        assert root_from_leaf_hashes(LEAVES[:n]) == expected, n
        assert tree.root(n) == expected, n


def test_bulk_and_incremental_trees_agree(tree: MerkleTree) -> None:
    for n in (0, 1, 2, 3, 64, 255, 256, 257, MAX_N):
        bulk = MerkleTree.from_leaf_hashes(LEAVES[:n])
        assert len(bulk) == n
        assert bulk.root() == tree.root(n)
        if n:
            assert bulk.inclusion_proof(n - 1) == tree.inclusion_proof(n - 1, n)
            assert bulk.leaf_hash(n - 1) == LEAVES[n - 1]


def test_every_inclusion_proof_up_to_300(tree: MerkleTree) -> None:
    for n in range(1, MAX_N + 1):
        root = tree.root(n)
        for i in range(n):
            proof = tree.inclusion_proof(i, n)
            assert proof == REF.path(i, 0, n), (i, n)
            assert verify_inclusion(LEAVES[i], i, n, proof, root), (i, n)


def test_every_consistency_proof(tree: MerkleTree) -> None:
    roots = [tree.root(n) for n in range(MAX_N + 1)]
    for n in range(1, MAX_N + 1):
        ms = range(n + 1) if n <= 128 else sorted({0, 1, 2, n - 1, n, *range(3, n, 7)})
        for m in ms:
            proof = tree.consistency_proof(m, n)
            assert proof == ([] if m == 0 else REF.proof(m, n)), (m, n)
            assert verify_consistency(m, n, roots[m], roots[n], proof), (m, n)


def test_free_functions_match_tree(tree: MerkleTree) -> None:
    for n in (1, 2, 5, 8, 13, 100, MAX_N):
        hashes = LEAVES[:n]
        for i in {0, n // 3, n - 1}:
            assert inclusion_proof(i, hashes) == tree.inclusion_proof(i, n)
        for m in {0, 1, n // 2, n - 1, n}:
            assert consistency_proof(m, hashes) == tree.consistency_proof(m, n)


# --- rejection -----------------------------------------------------------------------------

FLIP_SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 100]


@pytest.mark.parametrize("n", FLIP_SIZES)
def test_inclusion_rejects_every_bit_flip(tree: MerkleTree, n: int) -> None:
    root = tree.root(n)
    for i in sorted({0, n // 2, n - 1}):
        leaf, proof = LEAVES[i], tree.inclusion_proof(i, n)
        assert verify_inclusion(leaf, i, n, proof, root)
        for bad in flips(leaf):
            assert not verify_inclusion(bad, i, n, proof, root)
        for bad in flips(root):
            assert not verify_inclusion(leaf, i, n, proof, bad)
        for pos in range(len(proof)):
            for bad in flips(proof[pos]):
                tampered = [*proof[:pos], bad, *proof[pos + 1 :]]
                assert not verify_inclusion(leaf, i, n, tampered, root)


@pytest.mark.parametrize("n", FLIP_SIZES)
def test_consistency_rejects_every_bit_flip(tree: MerkleTree, n: int) -> None:
    root_n = tree.root(n)
    for m in sorted({1, n // 2 or 1, n - 1 or 1, n}):
        root_m, proof = tree.root(m), tree.consistency_proof(m, n)
        assert verify_consistency(m, n, root_m, root_n, proof)
        for bad in flips(root_m):
            assert not verify_consistency(m, n, bad, root_n, proof)
        for bad in flips(root_n):
            assert not verify_consistency(m, n, root_m, bad, proof)
        for pos in range(len(proof)):
            for bad in flips(proof[pos]):
                tampered = [*proof[:pos], bad, *proof[pos + 1 :]]
                assert not verify_consistency(m, n, root_m, root_n, tampered)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 8, 13, 64, 100])
def test_inclusion_rejects_wrong_position_or_shape(tree: MerkleTree, n: int) -> None:
    root = tree.root(n)
    for i in range(n):
        proof = tree.inclusion_proof(i, n)
        for j in range(n):
            if j != i and LEAVES[j] != LEAVES[i]:
                assert not verify_inclusion(LEAVES[j], i, n, proof, root)
        # The same proof does not vouch for the leaf in the next or previous tree head.
        assert not verify_inclusion(LEAVES[i], i, n + 1, proof, tree.root(n + 1))
        if n > 1:
            assert not verify_inclusion(LEAVES[i], (i + 1) % n, n, proof, root)
        if i < n - 1:
            assert not verify_inclusion(LEAVES[i], i, n - 1, proof, tree.root(n - 1))
        assert not verify_inclusion(LEAVES[i], i, n, [*proof, proof[-1] if proof else root], root)
        if proof:
            assert not verify_inclusion(LEAVES[i], i, n, proof[:-1], root)
        # Claiming another tree size whose path has a different length is rejected even with
        # the right root (RFC 9162 requires sn == 0 once the proof is used up).
        for other in range(i + 1, 2 * n + 2):
            if len(REF.path(i, 0, other)) != len(proof):
                assert not verify_inclusion(LEAVES[i], i, other, proof, root), (i, n, other)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 9, 31, 64, 100])
def test_consistency_rejects_wrong_sizes_and_shapes(tree: MerkleTree, n: int) -> None:
    for m in range(1, n):
        root_m, root_n, proof = tree.root(m), tree.root(n), tree.consistency_proof(m, n)
        assert not verify_consistency(m, n, root_m, root_n, [])
        assert not verify_consistency(m, n, root_m, root_n, proof[:-1])
        assert not verify_consistency(m, n, root_m, root_n, [*proof, proof[-1]])
        assert not verify_consistency(m, n + 1, root_m, tree.root(n + 1), proof)
        assert not verify_consistency(m, n - 1, root_m, tree.root(n - 1), proof)
        for other in range(m + 1, 2 * n + 2):
            if len(REF.proof(m, other)) != len(proof):
                assert not verify_consistency(m, other, root_m, root_n, proof), (m, n, other)
        if m > 1:
            assert not verify_consistency(m - 1, n, root_m, root_n, proof)
        # A different prefix (a changed old leaf) must not be accepted.
        forged = MerkleTree([*LEAVES[: m - 1], ref_leaf(b"forged"), *LEAVES[m:n]])
        assert not verify_consistency(m, n, forged.root(m), root_n, proof)


def test_consistency_edge_cases(tree: MerkleTree) -> None:
    r5 = tree.root(5)
    assert verify_consistency(5, 5, r5, r5, [])
    assert not verify_consistency(5, 5, r5, tree.root(4), [])
    assert not verify_consistency(5, 5, r5, r5, [r5])
    assert verify_consistency(0, 5, EMPTY_ROOT, r5, [])
    assert not verify_consistency(0, 5, r5, r5, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, r5, [r5])
    assert not verify_consistency(6, 5, r5, r5, [])
    assert not verify_consistency(-1, 5, EMPTY_ROOT, r5, [])


def test_verifiers_reject_malformed_input_without_raising(tree: MerkleTree) -> None:
    root, proof = tree.root(8), tree.inclusion_proof(3, 8)
    assert not verify_inclusion(LEAVES[3][:31], 3, 8, proof, root)
    assert not verify_inclusion(LEAVES[3], 3, 8, [*proof[:-1], proof[-1] + b"\x00"], root)
    assert not verify_inclusion(LEAVES[3], -1, 8, proof, root)
    assert not verify_inclusion(LEAVES[3], 8, 8, proof, root)
    assert not verify_inclusion(LEAVES[3], 0, 0, [], root)
    c = tree.consistency_proof(3, 8)
    assert not verify_consistency(3, 8, tree.root(3), root, [*c[:-1], c[-1][:16]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.inclusion_proof(5, 5), "out of range"),
        (lambda t: t.inclusion_proof(-1), "out of range"),
        (lambda t: t.inclusion_proof(0, MAX_N + 1), "tree size 301 out of range"),
        (lambda t: t.consistency_proof(6, 5), "need 0 <= m <= n"),
        (lambda t: inclusion_proof(0, []), "out of range"),
        (lambda t: consistency_proof(2, LEAVES[:1]), "need 0 <= m <= n"),
        (lambda t: MerkleTree().append(b"short"), "32 bytes"),
        (lambda t: MerkleTree([b"short"]), "32 bytes"),
        (lambda t: root_from_leaf_hashes([LEAVES[0], b"short"]), "32 bytes"),
    ],
)
def test_proof_construction_rejects_bad_arguments(
    tree: MerkleTree, call: Callable[[MerkleTree], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(tree)


def test_leaf_hash_index_out_of_range(tree: MerkleTree) -> None:
    assert tree.leaf_hash(MAX_N - 1) == LEAVES[-1]
    with pytest.raises(IndexError):
        tree.leaf_hash(MAX_N)


# --- properties ------------------------------------------------------------------------------

leaf_lists = st.lists(st.binary(max_size=40).map(ref_leaf), min_size=1, max_size=200)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_property_proofs_verify_and_match_reference(
    hashes: list[bytes], data: st.DataObject
) -> None:
    n = len(hashes)
    ref = Reference(hashes)
    t = MerkleTree()
    t.extend(hashes)
    assert t.root() == root_from_leaf_hashes(hashes) == ref.mth(0, n)
    i = data.draw(st.integers(0, n - 1))
    proof = t.inclusion_proof(i)
    assert proof == ref.path(i, 0, n)
    assert verify_inclusion(hashes[i], i, n, proof, t.root())
    m = data.draw(st.integers(1, n))
    c = t.consistency_proof(m, n)
    assert c == ref.proof(m, n)
    assert verify_consistency(m, n, t.root(m), t.root(), c)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_property_any_corruption_is_rejected(hashes: list[bytes], data: st.DataObject) -> None:
    n = len(hashes)
    t = MerkleTree(hashes)
    i = data.draw(st.integers(0, n - 1))
    proof = t.inclusion_proof(i)
    bit = data.draw(st.integers(0, 255))

    def flip(h: bytes) -> bytes:
        b = bytearray(h)
        b[bit // 8] ^= 1 << (bit % 8)
        return bytes(b)

    targets: list[Callable[[], bool]] = [
        lambda: verify_inclusion(flip(hashes[i]), i, n, proof, t.root()),
        lambda: verify_inclusion(hashes[i], i, n, proof, flip(t.root())),
    ]
    if proof:
        pos = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:pos], flip(proof[pos]), *proof[pos + 1 :]]
        targets.append(lambda: verify_inclusion(hashes[i], i, n, bad, t.root()))
    m = data.draw(st.integers(1, n))
    c = t.consistency_proof(m, n)
    targets.append(lambda: verify_consistency(m, n, flip(t.root(m)), t.root(), c))
    if c:
        pos_c = data.draw(st.integers(0, len(c) - 1))
        bad_c = [*c[:pos_c], flip(c[pos_c]), *c[pos_c + 1 :]]
        targets.append(lambda: verify_consistency(m, n, t.root(m), t.root(), bad_c))
    for check in targets:
        assert not check()


@settings(max_examples=100, deadline=None)
@given(leaf_lists, st.data())
def test_property_appending_keeps_old_roots_and_proofs(
    hashes: list[bytes], data: st.DataObject
) -> None:
    m = data.draw(st.integers(1, len(hashes)))
    old = MerkleTree(hashes[:m])
    old_root, old_proof = old.root(), old.inclusion_proof(m - 1)
    old.extend(hashes[m:])
    assert old.root(m) == old_root
    assert old.inclusion_proof(m - 1, m) == old_proof
    assert verify_consistency(m, len(hashes), old_root, old.root(), old.consistency_proof(m))
