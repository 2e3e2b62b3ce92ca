"""RFC 6962 Merkle trees: known roots, proof shapes, and the errors callers rely on."""

import hashlib

import pytest

from warrantor.evidence.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

# The eight leaves of the RFC 6962 reference tests (certificate-transparency, merkle_tree_test)
# and the root at every size 1..8.
CT_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def ct_tree() -> MerkleTree:
    return MerkleTree(leaf_hash(bytes.fromhex(x)) for x in CT_LEAVES)


def entries(n: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(i.to_bytes(8, "big")).digest()) for i in range(n)]


def test_hashes_are_domain_separated_as_rfc6962_says() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"l" * 32, b"r" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


def test_roots_match_the_rfc6962_reference_tree_at_every_size() -> None:
    tree = ct_tree()
    for size, want in enumerate(CT_ROOTS, start=1):
        assert tree.root(size).hex() == want


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert MerkleTree().root() == EMPTY_ROOT
    assert root_from_leaves([]) == EMPTY_ROOT
    assert ct_tree().root(0) == EMPTY_ROOT


def test_known_consistency_proof_from_the_reference_tests() -> None:
    proof = ct_tree().consistency_proof(6, 8)
    assert [p.hex() for p in proof] == [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]


def test_incremental_tree_agrees_with_direct_computation() -> None:
    leaves = entries(37)
    tree = MerkleTree()
    for n, leaf in enumerate(leaves, start=1):
        assert tree.append(leaf) == n - 1
        assert tree.size == n
        assert tree.root() == root_from_leaves(leaves[:n])


def test_inclusion_proof_for_a_single_leaf_tree_is_empty() -> None:
    tree = MerkleTree(entries(1))
    assert tree.inclusion_proof(0, 1) == []
    assert verify_inclusion(tree.root(), 0, 1, [], tree.root())


def test_proofs_for_older_sizes_verify_against_older_roots() -> None:
    tree = MerkleTree(entries(100))
    proof = tree.inclusion_proof(10, 50)
    assert verify_inclusion(entries(100)[10], 10, 50, proof, tree.root(50))
    assert not verify_inclusion(entries(100)[10], 10, 50, proof, tree.root(100))


@pytest.mark.parametrize(("index", "size"), [(-1, 5), (5, 5), (0, 0), (0, 11)])
def test_inclusion_proof_rejects_bad_index_or_size(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="expected"):
        MerkleTree(entries(10)).inclusion_proof(index, size)


@pytest.mark.parametrize(("old", "new"), [(-1, 5), (6, 5), (3, 11)])
def test_consistency_proof_rejects_bad_sizes(old: int, new: int) -> None:
    with pytest.raises(ValueError, match="expected"):
        MerkleTree(entries(10)).consistency_proof(old, new)


def test_root_rejects_sizes_beyond_the_tree() -> None:
    with pytest.raises(ValueError, match="expected a tree size"):
        MerkleTree(entries(3)).root(4)


def test_append_rejects_non_hash_leaves() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        MerkleTree().append(b"short")


def test_verify_inclusion_rejects_impossible_indices() -> None:
    with pytest.raises(ValueError):
        verify_inclusion(b"\x00" * 32, 3, 3, [], b"\x00" * 32)


def test_verify_consistency_rejects_shrinking_trees() -> None:
    with pytest.raises(ValueError):
        verify_consistency(5, 4, [], b"\x00" * 32, b"\x00" * 32)


def test_verify_inclusion_fails_on_extra_or_missing_hashes() -> None:
    tree = MerkleTree(entries(13))
    proof = tree.inclusion_proof(6, 13)
    leaf = entries(13)[6]
    assert verify_inclusion(leaf, 6, 13, proof, tree.root())
    assert not verify_inclusion(leaf, 6, 13, proof[:-1], tree.root())
    assert not verify_inclusion(leaf, 6, 13, [*proof, proof[0]], tree.root())
    assert not verify_inclusion(leaf, 6, 13, [*proof[:-1], b"\x00" * 31], tree.root())


def test_consistency_edge_cases() -> None:
    tree = MerkleTree(entries(8))
    assert tree.consistency_proof(0, 8) == []
    assert tree.consistency_proof(8, 8) == []
    assert verify_consistency(0, 8, [], EMPTY_ROOT, tree.root())
    assert not verify_consistency(0, 8, [], tree.root(3), tree.root())
    assert verify_consistency(8, 8, [], tree.root(), tree.root())
    assert not verify_consistency(8, 8, [], tree.root(7), tree.root())
    assert not verify_consistency(3, 8, [], tree.root(3), tree.root())


def test_large_tree_keeps_one_contiguous_buffer_per_level() -> None:
    n = 100_000
    leaves = entries(n)
    tree = MerkleTree(leaves)
    levels = tree._levels
    assert all(isinstance(level, bytearray) for level in levels)
    assert sum(len(level) for level in levels) < 2 * n * 32
    for index in (0, 1, n // 2, n - 1):
        proof = tree.inclusion_proof(index, n)
        assert verify_inclusion(leaves[index], index, n, proof, tree.root())
