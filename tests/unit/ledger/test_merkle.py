"""RFC 6962/9162 Merkle hashing and proofs against the Certificate Transparency vectors.

Vectors: transparency-dev/merkle ``testonly/constants.go`` (leaves, complete-subtree hashes,
roots for sizes 0-8) and ``proof/verify_test.go`` (inclusion and consistency proofs).
"""

from __future__ import annotations

import hashlib
import random

import pytest

from obliviate.ledger.errors import ProofError
from obliviate.ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
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
NODES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
# (leaf index, tree size, proof) — the vectors use 1-based leaf numbers; converted here.
INCLUSION = [
    (0, 1, []),
    (0, 8, [NODES[0][1], NODES[1][1], NODES[2][1]]),
    (5, 8, [NODES[0][4], NODES[1][3], NODES[2][0]]),
    (2, 3, [NODES[1][0]]),
    (1, 5, [NODES[0][0], NODES[1][1], NODES[0][4]]),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, [NODES[0][1], NODES[1][1], NODES[2][1]]),
    (6, 8, [NODES[1][2], NODES[1][3], NODES[2][0]]),
    (2, 5, [NODES[1][1], NODES[0][4]]),
    (6, 7, [NODES[1][2], NODES[0][6], NODES[2][0]]),
]


@pytest.fixture
def tree() -> MerkleTree:
    t = MerkleTree()
    for data in LEAVES:
        t.append(data)
    return t


def test_roots_and_subtrees_match_the_ct_vectors(tree: MerkleTree) -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    for size in range(9):
        assert tree.root(size).hex() == ROOTS[size]
    for level, hashes in enumerate(NODES):
        assert [tree.subtree(level, i).hex() for i in range(len(hashes))] == hashes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_and_verify(
    tree: MerkleTree, index: int, size: int, proof: list[str]
) -> None:
    assert [p.hex() for p in tree.inclusion_proof(index, size)] == proof
    path = [bytes.fromhex(p) for p in proof]
    root = bytes.fromhex(ROOTS[size])
    verify_inclusion(index=index, size=size, leaf=leaf_hash(LEAVES[index]), proof=path, root=root)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_and_verify(
    tree: MerkleTree, old: int, new: int, proof: list[str]
) -> None:
    assert [p.hex() for p in tree.consistency_proof(old, new)] == proof
    verify_consistency(
        old_size=old,
        new_size=new,
        old_root=bytes.fromhex(ROOTS[old]),
        new_root=bytes.fromhex(ROOTS[new]),
        proof=[bytes.fromhex(p) for p in proof],
    )


def test_every_proof_of_every_small_tree_verifies() -> None:
    tree = MerkleTree()
    for i in range(40):
        tree.append(i.to_bytes(4, "big"))
    for size in range(1, 41):
        root = tree.root(size)
        for index in range(size):
            verify_inclusion(
                index=index,
                size=size,
                leaf=tree.subtree(0, index),
                proof=tree.inclusion_proof(index, size),
                root=root,
            )
        for old in range(size + 1):
            verify_consistency(
                old_size=old,
                new_size=size,
                old_root=tree.root(old),
                new_root=root,
                proof=tree.consistency_proof(old, size),
            )


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """Corruptions of a valid proof, after the reference test suite's list."""
    probes = [
        ("index-1", index - 1, size, proof, root, leaf),
        ("index+1", index + 1, size, proof, root, leaf),
        ("index^2", index ^ 2, size, proof, root, leaf),
        ("size*2", index, size * 2, proof, root, leaf),
        ("size/2", index, size // 2, proof, root, leaf),
        ("wrong leaf", index, size, proof, root, leaf_hash(b"WrongLeaf")),
        ("empty root", index, size, proof, EMPTY_ROOT, leaf),
        ("trailing root", index, size, [*proof, root], root, leaf),
        ("preceding root", index, size, [root, *proof], root, leaf),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((f"bit flip {i}", index, size, flipped, root, leaf))
    if proof:
        probes.append(("removed", index, size, proof[:-1], root, leaf))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION[1:])
def test_corrupted_inclusion_proofs_are_rejected(
    tree: MerkleTree, index: int, size: int, proof: list[str]
) -> None:
    path = [bytes.fromhex(p) for p in proof]
    root, leaf = tree.root(size), leaf_hash(LEAVES[index])
    for desc, i, n, p, r, lf in _inclusion_probes(index, size, path, root, leaf):
        with pytest.raises(ProofError):
            verify_inclusion(index=i, size=n, leaf=lf, proof=p, root=r)
            pytest.fail(f"probe {desc!r} verified")


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_are_rejected(
    tree: MerkleTree, old: int, new: int, proof: list[str]
) -> None:
    path = [bytes.fromhex(p) for p in proof]
    r1, r2 = tree.root(old), tree.root(new)
    probes = [
        (old - 1, new, r1, r2, path),
        (old + 1, new, r1, r2, path),
        (old ^ 2, new, r1, r2, path),
        (old, new * 2, r1, r2, path),
        (old, new // 2, r1, r2, path),
        (old, new, leaf_hash(b"x"), r2, path),
        (old, new, r1, leaf_hash(b"x"), path),
        (old, new, r2, r1, path),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*path, r1]),
        (old, new, r1, r2, [r2, *path]),
        (old, new, r1, r2, path[:-1]),
    ]
    for i in range(len(path)):
        flipped = list(path)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((old, new, r1, r2, flipped))
    for s1, s2, a, b, p in probes:
        with pytest.raises(ProofError):
            verify_consistency(old_size=s1, new_size=s2, old_root=a, new_root=b, proof=p)


def test_edge_cases_of_consistency() -> None:
    some = leaf_hash(b"a")
    verify_consistency(old_size=0, new_size=0, old_root=some, new_root=some, proof=[])
    verify_consistency(old_size=0, new_size=5, old_root=some, new_root=EMPTY_ROOT, proof=[])
    with pytest.raises(ProofError, match="fork"):
        verify_consistency(old_size=3, new_size=3, old_root=some, new_root=EMPTY_ROOT, proof=[])
    with pytest.raises(ProofError, match="shrink"):
        verify_consistency(old_size=2, new_size=1, old_root=some, new_root=some, proof=[])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(old_size=1, new_size=1, old_root=some, new_root=some, proof=[some])


def test_root_from_proof_rejects_bad_shapes() -> None:
    leaf = leaf_hash(b"a")
    with pytest.raises(ProofError, match="outside"):
        root_from_inclusion_proof(index=3, size=3, leaf=leaf, proof=[])
    with pytest.raises(ProofError, match="32 bytes"):
        root_from_inclusion_proof(index=0, size=2, leaf=b"short", proof=[leaf])


def test_random_trees_agree_with_the_recursive_definition() -> None:
    def mth(items: list[bytes]) -> bytes:
        if not items:
            return EMPTY_ROOT
        if len(items) == 1:
            return leaf_hash(items[0])
        k = 1 << ((len(items) - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + mth(items[:k]) + mth(items[k:])).digest()

    rng = random.Random(7)
    data = [rng.randbytes(rng.randint(0, 9)) for _ in range(70)]
    tree = MerkleTree()
    for d in data:
        tree.append(d)
    for size in (0, 1, 13, 32, 33, 64, 70):
        assert tree.root(size) == mth(data[:size])
