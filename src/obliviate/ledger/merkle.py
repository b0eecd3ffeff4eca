"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification: pure functions.

The audit log is a Merkle tree in the Certificate Transparency shape (RFC 6962 §2.1,
restated in RFC 9162 §2.1): leaves are ``SHA-256(0x00 || data)``, interior nodes
``SHA-256(0x01 || left || right)``, and a tree of ``n`` leaves splits at the largest power
of two below ``n`` (a left-balanced tree). The 0x00/0x01 prefixes separate leaves from
nodes, so no interior node can be passed off as a leaf.

Every range the RFC's recursions touch starts on a boundary aligned to its own largest
power of two, so its hash is a right fold of at most ``log2 n`` *perfect* aligned subtrees
(``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``). The
ledger stores those subtree hashes as they complete, which makes proofs O(log n) reads at
any size. The functions here only describe which subtrees are needed and fold them; they
never touch storage. The verifiers are the algorithms of RFC 9162 §2.1.3.2 (inclusion) and
§2.1.4.2 (consistency), tested against the Certificate Transparency reference vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from obliviate.ledger.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "consistency_proof",
    "consistency_ranges",
    "fold_pieces",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "range_pieces",
    "root_from_inclusion_proof",
    "split_point",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256

HashRange = Callable[[int, int], bytes]
"""``hash_range(start, end)``: MTH of leaves ``[start, end)``."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``): where MTH splits."""
    if n < 2:
        raise ValueError(f"a tree of {n} leaves does not split.")
    return 1 << ((n - 1).bit_length() - 1)


def range_pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect aligned subtrees ``(level, index)`` that make up leaves ``[start, end)``.

    Left to right, largest first; ``fold_pieces`` of their hashes is the range's MTH.

    Raises:
        ValueError: the range is empty or not aligned the way RFC 9162 ranges are.
    """
    if not 0 <= start < end:
        raise ValueError(f"leaf range [{start}, {end}) is empty or negative.")
    pieces: list[tuple[int, int]] = []
    pos, size = start, end - start
    for level in range(size.bit_length() - 1, -1, -1):
        width = 1 << level
        if size & width:
            if pos % width:
                raise ValueError(f"leaf range [{start}, {end}) is not aligned at {pos}.")
            pieces.append((level, pos >> level))
            pos += width
    return pieces


def fold_pieces(hashes: Sequence[bytes]) -> bytes:
    """The MTH of consecutive perfect subtrees (largest first): a right fold."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for piece in reversed(hashes[:-1]):
        acc = node_hash(piece, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PATH(index, D[size]) (RFC 9162 §2.1.3.1), in order.

    Raises:
        ProofError: ``index`` is not a leaf of a tree of ``size`` leaves.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves.")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()  # the sibling nearest the leaf comes first
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PROOF(old, D[new]) (RFC 9162 §2.1.4.1), in order.

    Raises:
        ProofError: ``old_size`` is larger than ``new_size`` or negative.
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(
            f"no consistency proof from size {old_size} to size {new_size}: the old tree "
            "must not be larger than the new one."
        )
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                ranges.append((lo, hi))
            break
        k = split_point(n)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            complete = False
    ranges.reverse()
    return ranges


def inclusion_proof(index: int, size: int, hash_range: HashRange) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves."""
    return [hash_range(s, e) for s, e in inclusion_ranges(index, size)]


def consistency_proof(old_size: int, new_size: int, hash_range: HashRange) -> list[bytes]:
    """The proof that the tree of ``old_size`` leaves is a prefix of the one of ``new_size``."""
    return [hash_range(s, e) for s, e in consistency_ranges(old_size, new_size)]


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes; got {len(value)}.")


def root_from_inclusion_proof(
    *, index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` (RFC 9162 §2.1.3.2, steps 1-4).

    Raises:
        ProofError: the index is outside the tree or the proof has the wrong length.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves.")
    _check_hash(leaf, "the leaf hash")
    fn, sn, r = index, size - 1, leaf
    for i, p in enumerate(proof):
        _check_hash(p, f"inclusion proof element {i}")
        if sn == 0:
            raise ProofError(
                f"the inclusion proof for leaf {index} of {size} is too long ({len(proof)} hashes)."
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(
            f"the inclusion proof for leaf {index} of {size} is too short ({len(proof)} hashes)."
        )
    return r


def verify_inclusion(
    *, index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Checks that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Raises:
        ProofError: naming the leaf and tree size when the proof fails.
    """
    _check_hash(root, "the root hash")
    computed = root_from_inclusion_proof(index=index, size=size, leaf=leaf, proof=proof)
    if computed != root:
        raise ProofError(
            f"the inclusion proof for leaf {index} does not lead to the root of the tree of "
            f"size {size} (got {computed.hex()[:16]}..., expected {root.hex()[:16]}...)."
        )


def verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Checks that the tree ``(old_size, old_root)`` is a prefix of ``(new_size, new_root)``.

    RFC 9162 §2.1.4.2, with the edge cases made explicit: equal sizes need equal roots and
    an empty proof; an empty old tree is a prefix of anything (with an empty proof).

    Raises:
        ProofError: naming both sizes when the proof fails (a fork or a bad proof).
    """
    where = f"from size {old_size} to size {new_size}"
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency {where}: a log cannot shrink.")
    if old_size == new_size or old_size == 0:
        if proof:
            raise ProofError(f"the consistency proof {where} must be empty.")
        if old_size == new_size and old_root != new_root:
            raise ProofError(f"two different roots for the same size {old_size}: a fork.")
        return
    if not proof:
        raise ProofError(f"the consistency proof {where} is empty.")
    _check_hash(old_root, "the old root")
    _check_hash(new_root, "the new root")
    for i, c in enumerate(proof):
        _check_hash(c, f"consistency proof element {i}")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"the consistency proof {where} is too long.")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the consistency proof {where} is too short.")
    if fr != old_root:
        raise ProofError(f"the consistency proof {where} does not reproduce the old root.")
    if sr != new_root:
        raise ProofError(f"the consistency proof {where} does not reproduce the new root.")


class MerkleTree:
    """An in-memory RFC 6962 tree that keeps every complete subtree: the reference model.

    The ledger stores the same subtrees in its database; this class is what tests and
    offline tools use to check it.
    """

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append_hash(h)

    def __len__(self) -> int:
        return len(self.levels[0])

    def append_hash(self, leaf: bytes) -> int:
        """Adds a leaf hash; returns its index."""
        index = len(self.levels[0])
        self.levels[0].append(leaf)
        level, i = 0, index
        while i & 1:
            parent = node_hash(self.levels[level][i - 1], self.levels[level][i])
            level += 1
            if len(self.levels) == level:
                self.levels.append([])
            self.levels[level].append(parent)
            i >>= 1
        return index

    def append(self, data: bytes) -> int:
        """Adds a leaf with content ``data``; returns its index."""
        return self.append_hash(leaf_hash(data))

    def subtree(self, level: int, index: int) -> bytes:
        """The hash of a complete subtree."""
        return self.levels[level][index]

    def hash_range(self, start: int, end: int) -> bytes:
        """MTH of leaves ``[start, end)`` (an RFC-aligned range)."""
        return fold_pieces([self.subtree(lv, i) for lv, i in range_pieces(start, end)])

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        size = len(self) if size is None else size
        if not 0 <= size <= len(self):
            raise ProofError(f"no tree of size {size}; the log has {len(self)} leaves.")
        return EMPTY_ROOT if size == 0 else self.hash_range(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of ``size`` leaves."""
        return inclusion_proof(index, len(self) if size is None else size, self.hash_range)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The consistency proof from ``old_size`` to ``new_size`` leaves."""
        new = len(self) if new_size is None else new_size
        return consistency_proof(old_size, new, self.hash_range)
