"""Merkle hash trees for the transparency log (RFC 6962 section 2.1, RFC 9162 section 2.1).

SHA-256 throughout: ``leaf_hash(d) = SHA-256(0x00 || d)``,
``node_hash(l, r) = SHA-256(0x01 || l || r)`` and the root of the empty tree is
``SHA-256("")``. ``MerkleTree`` builds roots and proofs (RFC 6962 sections 2.1.1 and 2.1.2);
``verify_inclusion`` and ``verify_consistency`` are the pure verification algorithms of
RFC 9162 sections 2.1.3.2 and 2.1.4.2.

This module holds hashes only. It does not persist anything, sequence entries, or decide
what an entry is (see ``proofs.entry_for``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes, computed directly (RFC 6962 section 2.1)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = _split(len(leaf_hashes))
    return node_hash(root_from_leaves(leaf_hashes[:k]), root_from_leaves(leaf_hashes[k:]))


class MerkleTree:
    """An append-only tree of leaf hashes that caches every complete subtree.

    ``self._levels[h]`` is one contiguous ``bytearray`` holding, in order, the hashes of
    the complete subtrees of ``2**h`` leaves (level 0 holds the leaf hashes). One million
    leaves therefore take about 64 MB, and any root or proof costs O(log n) hashes, because
    every range that RFC 6962's recursion visits is either such a cached subtree or lies on
    the right edge of the tree.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def append(self, leaf: bytes) -> int:
        """Add one leaf hash; returns its index."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"expected a {HASH_SIZE}-byte leaf hash, got {len(leaf)} bytes")
        index = self.size
        self._levels[0] += leaf
        self._merge_complete_subtrees(index + 1)
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for leaf in leaf_hashes:
            self.append(leaf)

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < self.size:
            raise ValueError(f"expected a leaf index in [0, {self.size}), got {index}")
        return self._cached(0, index)

    def _merge_complete_subtrees(self, count: int) -> None:
        level = 0
        while count % 2 == 0:
            hashes = self._levels[level]
            parent = node_hash(
                bytes(hashes[-2 * HASH_SIZE : -HASH_SIZE]), bytes(hashes[-HASH_SIZE:])
            )
            if level + 1 == len(self._levels):
                self._levels.append(bytearray())
            self._levels[level + 1] += parent
            level += 1
            count //= 2

    def _cached(self, level: int, index: int) -> bytes:
        start = index * HASH_SIZE
        return bytes(self._levels[level][start : start + HASH_SIZE])

    def _hash(self, start: int, n: int) -> bytes:
        """MTH of leaves ``[start, start + n)``; ``start`` is a multiple of a power >= n."""
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            return self._cached(level, start >> level)
        k = _split(n)
        return node_hash(self._hash(start, k), self._hash(start + k, n - k))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"expected a tree size in [0, {self.size}], got {size}")

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the first ``size`` leaves (default: all of them)."""
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 6962 section 2.1.1, leaf's sibling first."""
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"expected a leaf index in [0, {size}), got {index}")
        proof: list[bytes] = []
        start, n = 0, size
        while n > 1:
            k = _split(n)
            if index - start < k:
                proof.append(self._hash(start + k, n - k))
                n = k
            else:
                proof.append(self._hash(start, k))
                start, n = start + k, n - k
        proof.reverse()
        return proof

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) of RFC 6962 section 2.1.2.

        Empty when ``old_size`` is 0 or equals ``new_size``: every tree extends the empty
        tree and itself.
        """
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"expected an old size in [0, {new_size}], got {old_size}")
        if old_size in (0, new_size):
            return []
        return self._subproof(old_size, 0, new_size, complete=True)

    def _subproof(self, m: int, start: int, n: int, *, complete: bool) -> list[bytes]:
        """SUBPROOF(m, D[start:start+n], complete), iteratively from the top down."""
        suffix: list[bytes] = []
        while m != n:
            k = _split(n)
            if m <= k:
                suffix.append(self._hash(start + k, n - k))
                n = k
            else:
                suffix.append(self._hash(start, k))
                start, m, n = start + k, m - k, n - k
                complete = False
        head = [] if complete else [self._hash(start, n)]
        return head + suffix[::-1]


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ValueError(f"expected a {HASH_SIZE}-byte {what}, got {len(value)} bytes")


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: does ``leaf`` sit at ``index`` of the tree with ``root``?

    Raises ``ValueError`` when ``index`` is not in ``[0, size)``; a proof of the wrong
    length or with a wrong hash returns ``False``.
    """
    _check_hash(leaf, "leaf hash")
    if not 0 <= index < size:
        raise ValueError(f"expected a leaf index in [0, {size}), got {index}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0 or len(p) != HASH_SIZE:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree ``new_root`` an extension of ``old_root``?

    Sizes must satisfy ``0 <= old_size <= new_size`` (else ``ValueError``). Equal sizes
    need an empty proof and equal roots; an old size of 0 needs an empty proof and the
    empty-tree root.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"expected 0 <= old_size <= new_size, got {old_size} and {new_size}")
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return False
    return _verify_consistency_path(old_size, new_size, proof, old_root, new_root)


def _verify_consistency_path(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
