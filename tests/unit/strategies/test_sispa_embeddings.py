"""The embedding helper and the per-checkpoint embedding cache (joined on keys, never rows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError, StorageError
from obliviate.models import build_model
from obliviate.models.embedding import embed, embedding_dim, final_linear
from obliviate.strategies.exact.embeddings import EmbeddingCache

CKPT_A = "a" * 64
CKPT_B = "b" * 64


def test_embedding_is_the_input_of_the_final_linear() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(6,), num_classes=3, hidden=(10, 7))
    x = torch.randn(20, 6)
    head = final_linear(model)
    got = embed(model, x)
    assert got.shape == (20, 7) and embedding_dim(model) == 7
    with torch.no_grad():
        np.testing.assert_allclose(head(got).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "shape", "options"),
    [("mlp", (6,), {"hidden": (8,)}), ("mlp", (1, 8, 8), {}), ("cnn", (1, 8, 8), {})],
)
def test_with_slots_a_row_does_not_depend_on_the_other_rows(
    name: str, shape: tuple[int, ...], options: dict[str, object]
) -> None:
    # A 6-8 MLP gives different last bits when rows move by one position (measured);
    # fixed slots remove that.
    torch.manual_seed(1)
    model = build_model(name, input_shape=shape, num_classes=4, **options)
    x = torch.randn(300, *shape)
    slots = np.random.default_rng(0).integers(0, 64, size=300)
    full = embed(model, x, batch_size=64, slots=slots)
    for rows in (slice(5, 6), slice(3, 200), slice(1, 300), slice(299, 300)):
        got = embed(model, x[rows], batch_size=64, slots=slots[rows])
        assert torch.equal(got, full[rows])
    kept = np.setdiff1d(np.arange(300), [0, 17, 18, 250])
    assert torch.equal(embed(model, x[kept], batch_size=64, slots=slots[kept]), full[kept])


def test_slots_must_be_positions_in_a_batch() -> None:
    model = build_model("mlp", input_shape=(3,), num_classes=2)
    with pytest.raises(ConfigError, match="slots"):
        embed(model, torch.ones(2, 3), batch_size=4, slots=np.array([0, 4]))


def test_a_model_may_declare_its_own_embedding() -> None:
    class Declared(nn.Module):
        embedding_dim = 2

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Identity()

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :2] * 2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    out = embed(Declared(), torch.ones(3, 5))
    assert torch.equal(out, torch.full((3, 2), 2.0))


def test_a_model_without_linear_head_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no nn.Linear head"):
        embed(nn.Sequential(nn.Flatten()), torch.ones(2, 3))


def _tagged(pks: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    # Each row encodes its own key, so misalignment would show.
    return np.stack([pks.astype(np.float32), -pks.astype(np.float32)], axis=1)


def test_cache_joins_on_keys_and_computes_only_missing(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    calls: list[list[int]] = []

    def compute(pks: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        calls.append(pks.tolist())
        return _tagged(pks)

    first, fresh = cache.get(
        checkpoint_id=CKPT_A, pks=np.array([5, 1, 9], np.int64), compute=compute
    )
    assert fresh == 3 and first[:, 0].tolist() == [5, 1, 9]
    wanted = np.array([9, 2, 5, 1, 7], np.int64)
    rows, fresh = cache.get(checkpoint_id=CKPT_A, pks=wanted, compute=compute)
    assert fresh == 2 and calls[-1] == [2, 7]
    np.testing.assert_array_equal(rows, _tagged(wanted))


def test_purging_one_sample_keeps_every_other_row_aligned(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    pks = np.arange(1, 40, dtype=np.int64)
    for ckpt in (CKPT_A, CKPT_B):
        cache.get(checkpoint_id=ckpt, pks=pks, compute=_tagged)
    assert cache.purge(np.array([7, 20], np.int64)) == 4
    survivors = np.setdiff1d(pks, [7, 20])[::-1].copy()

    def fail(_: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        raise AssertionError("nothing should be recomputed")

    for ckpt in (CKPT_A, CKPT_B):
        assert 7 not in cache.keys(ckpt) and 20 not in cache.keys(ckpt)
        rows, fresh = cache.get(checkpoint_id=ckpt, pks=survivors, compute=fail)
        assert fresh == 0
        np.testing.assert_array_equal(rows, _tagged(survivors))


def test_prune_keeps_only_the_named_checkpoints(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    for ckpt in (CKPT_A, CKPT_B):
        cache.get(checkpoint_id=ckpt, pks=np.array([1], np.int64), compute=_tagged)
    assert cache.prune([CKPT_B]) == 1
    assert [p.name for p in tmp_path.glob("*.npz")] == [f"{CKPT_B}.npz"]


def test_cache_rejects_keys_that_are_not_checkpoint_ids(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="checkpoint ids"):
        EmbeddingCache(tmp_path).keys("../etc")


def test_logits_mode_returns_the_models_own_outputs_with_stable_bits() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(6,), num_classes=4, hidden=(10,))
    x = torch.randn(30, 6)
    slots = np.arange(30, dtype=np.int64) * 7 % 256
    got = embed(model, x, slots=slots, logits=True)
    assert got.shape == (30, 4)
    with torch.no_grad():
        np.testing.assert_allclose(got.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    # With slots, a row's logits do not depend on which other rows are embedded with it.
    alone = embed(model, x[5:6], slots=slots[5:6], logits=True)
    assert torch.equal(alone[0], got[5])


def test_a_second_cache_sees_another_process_purge_and_never_writes_purged_rows_back(
    tmp_path: Path,
) -> None:
    pks = np.arange(1, 11, dtype=np.int64)
    ours, theirs = EmbeddingCache(tmp_path), EmbeddingCache(tmp_path)
    ours.get(checkpoint_id=CKPT_A, pks=pks, compute=_tagged)  # now memoised in ``ours``
    theirs.get(checkpoint_id=CKPT_A, pks=pks, compute=_tagged)
    assert theirs.purge(np.array([4], np.int64)) == 1
    # ``ours`` computes one more row and rewrites the file: the purged row must stay gone.
    ours.get(checkpoint_id=CKPT_A, pks=np.array([2, 12], np.int64), compute=_tagged)
    assert 4 not in EmbeddingCache(tmp_path).keys(CKPT_A)
    assert EmbeddingCache(tmp_path).keys(CKPT_A).tolist() == [1, 2, 3, 5, 6, 7, 8, 9, 10, 12]


def test_memoised_rows_are_served_without_reading_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = EmbeddingCache(tmp_path)
    pks = np.arange(1, 6, dtype=np.int64)
    cache.get(checkpoint_id=CKPT_A, pks=pks, compute=_tagged)
    path = tmp_path / f"{CKPT_A}.npz"
    stat = path.stat()

    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the memo should have answered")

    monkeypatch.setattr(np, "load", refuse)
    rows, fresh = cache.get(checkpoint_id=CKPT_A, pks=pks[::-1].copy(), compute=_tagged)
    assert fresh == 0 and path.stat().st_mtime_ns == stat.st_mtime_ns
    np.testing.assert_array_equal(rows, _tagged(pks[::-1].copy()))
