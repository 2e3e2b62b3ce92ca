"""Merkle proofs for every tree size up to 300, and single-bit tampering of every kind.

The exhaustive loops pin the RFC 6962 proof construction against the RFC 9162
verification algorithm for all shapes of small trees; Hypothesis covers bit flips in
proof hashes, roots and entries.
"""

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from warrantor.evidence.merkle import (
    MerkleTree,
    leaf_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

MAX = 300
ENTRIES = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(MAX)]
LEAVES = [leaf_hash(e) for e in ENTRIES]
TREE = MerkleTree(LEAVES)
ROOTS = [TREE.root(n) for n in range(MAX + 1)]


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_roots_agree_with_the_recursive_definition() -> None:
    for n in range(MAX + 1):
        assert ROOTS[n] == root_from_leaves(LEAVES[:n])


def test_every_inclusion_proof_verifies_for_every_size_up_to_300() -> None:
    for n in range(1, MAX + 1):
        for i in range(n):
            assert verify_inclusion(LEAVES[i], i, n, TREE.inclusion_proof(i, n), ROOTS[n])


def test_every_consistency_proof_verifies_for_every_pair_up_to_300() -> None:
    for n in range(1, MAX + 1):
        for m in range(n + 1):
            proof = TREE.consistency_proof(m, n)
            assert verify_consistency(m, n, proof, ROOTS[m], ROOTS[n])


def test_inclusion_proof_does_not_verify_at_another_index() -> None:
    for n in range(2, 70):
        for i in range(n):
            proof = TREE.inclusion_proof(i, n)
            j = (i + 1) % n
            assert not verify_inclusion(LEAVES[i], j, n, proof, ROOTS[n])


sizes = st.integers(min_value=1, max_value=MAX)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_flipping_any_bit_breaks_inclusion(data: st.DataObject) -> None:
    n = data.draw(sizes)
    i = data.draw(st.integers(0, n - 1))
    proof = TREE.inclusion_proof(i, n)
    target = data.draw(st.sampled_from(["entry", "root", "proof"] if proof else ["entry", "root"]))
    bit = data.draw(st.integers(0, 255))
    leaf, root = LEAVES[i], ROOTS[n]
    if target == "entry":
        leaf = leaf_hash(flip(ENTRIES[i], bit))
    elif target == "root":
        root = flip(root, bit)
    else:
        k = data.draw(st.integers(0, len(proof) - 1))
        proof[k] = flip(proof[k], bit)
    assert not verify_inclusion(leaf, i, n, proof, root)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_flipping_any_bit_breaks_consistency(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, MAX))
    m = data.draw(st.integers(1, n - 1))
    proof = TREE.consistency_proof(m, n)
    target = data.draw(st.sampled_from(["old_root", "new_root", "proof"]))
    bit = data.draw(st.integers(0, 255))
    old, new = ROOTS[m], ROOTS[n]
    if target == "old_root":
        old = flip(old, bit)
    elif target == "new_root":
        new = flip(new, bit)
    else:
        k = data.draw(st.integers(0, len(proof) - 1))
        proof[k] = flip(proof[k], bit)
    assert not verify_consistency(m, n, proof, old, new)


def test_every_bit_of_every_proof_hash_matters_for_size_300() -> None:
    n = MAX
    for i in (0, 137, n - 1):
        proof = TREE.inclusion_proof(i, n)
        for k in range(len(proof)):
            for bit in range(256):
                bad = [*proof]
                bad[k] = flip(proof[k], bit)
                assert not verify_inclusion(LEAVES[i], i, n, bad, ROOTS[n])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=80))
def test_any_entries_give_verifiable_proofs(raw: list[bytes]) -> None:
    leaves = [leaf_hash(e) for e in raw]
    tree = MerkleTree(leaves)
    n = len(leaves)
    assert tree.root() == root_from_leaves(leaves)
    for i in range(n):
        assert verify_inclusion(leaves[i], i, n, tree.inclusion_proof(i, n), tree.root())
    for m in range(n + 1):
        assert verify_consistency(m, n, tree.consistency_proof(m, n), tree.root(m), tree.root())
