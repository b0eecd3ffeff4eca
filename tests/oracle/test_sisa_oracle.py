"""Oracle: SISA forget(ids) is bitwise equal to fitting from scratch without ids.

Equality is checked on checkpoint ids: an id is the SHA-256 of every tensor (weights,
optimiser and RNG state) and of the metadata (lineage hash of the exact ordered sample ids),
so equal ids mean equal everything, not just equal weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from obliviate import SampleSet, SISAConfig, TrainConfig, Workspace
from obliviate.strategies.exact.sisa import SISA
from obliviate.testing import make_blobs
from obliviate.training import epoch_permutation

FAST = TrainConfig(epochs=4, batch_size=8, lr=0.05, momentum=0.9)


def _fit(
    root: Path, samples: SampleSet, config: SISAConfig, *, fit_ids: Sequence[str] | None = None
) -> tuple[Workspace, SISA]:
    ws = Workspace.init(root)
    ws.register(samples, dataset="d")
    model = ws.train(name="m", dataset="d", config=config, sample_ids=fit_ids)
    assert isinstance(model, SISA)
    return ws, model


def _active_components(ws: Workspace) -> dict[str, str | None]:
    version = ws.provenance.active_version("m")
    assert version is not None
    return dict(version.components)


def _config(**kw: object) -> SISAConfig:
    base: dict[str, object] = {
        "shards": 3,
        "slices": 4,
        "model": "mlp",
        "model_options": {"hidden": (16,)},
        "train": FAST,
    }
    base.update(kw)
    return SISAConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shards", "slices", "forget"),
    [
        (1, 1, ["s7"]),
        (3, 4, ["s7"]),
        (3, 4, ["s1", "s2", "s50", "s77", "s119"]),
        (5, 3, ["s0", "s11", "s22", "s33", "s44", "s55", "s66", "s99"]),
        (2, 5, [f"s{i}" for i in range(0, 120, 3)]),
    ],
)
def test_forget_equals_retraining_without_the_samples(
    tmp_path: Path, shards: int, slices: int, forget: list[str]
) -> None:
    data = make_blobs(n=120)
    config = _config(shards=shards, slices=slices)
    ws_a, model = _fit(tmp_path / "a", data, config)
    result = model.forget(sample_ids=forget)
    assert result.version is not None and not result.noop
    ws_b, _ = _fit(tmp_path / "b", data.without(forget), config)
    assert _active_components(ws_a) == _active_components(ws_b)
    probe = data.features[:40]
    np.testing.assert_array_equal(
        model.predict(probe).probabilities, ws_b.model("m").predict(probe).probabilities
    )
    assert ws_a.verify(model="m").ok
    ws_a.close()
    ws_b.close()


def test_trailing_sample_of_the_last_slice_is_forgotten_exactly(tmp_path: Path) -> None:
    # The SISA reference code keyed slice checkpoints without the shard's trailing samples,
    # so deleting one silently reused a model trained on it. Here: the last sample in the
    # training order of a shard's last slice.
    data = make_blobs(n=97)
    config = _config(shards=2, slices=3)
    ws_a, model = _fit(tmp_path / "a", data, config)
    from obliviate.strategies.exact.plan import Plan

    plan = Plan.load(ws_a.root / "models" / "m")
    table = ws_a.provenance.samples(dataset="d", status="active")
    pos = plan.lookup(table.pk)
    last = (plan.shard[pos] == 0) & (plan.slice[pos] == 2)
    rows = np.flatnonzero(last)
    tail = table.sample_ids[rows[np.argmax(plan.order_key[pos[rows]])]]
    result = model.forget(sample_ids=[str(tail)])
    assert result.earliest_slices == {"shard-0": 2}
    ws_b, _ = _fit(tmp_path / "b", data.without([str(tail)]), config)
    assert _active_components(ws_a) == _active_components(ws_b)


def test_forgetting_a_subject_touches_one_shard_and_equals_retraining(tmp_path: Path) -> None:
    data = make_blobs(n=120, subjects=12)
    config = _config(shards=4, slices=3, sharding="by_subject")
    ws_a, model = _fit(tmp_path / "a", data, config)
    result = model.forget(subject_ids=["u5"])
    assert len(result.affected_components) == 1
    assert len(result.forgotten_sample_ids) == 10
    gone = [f"s{i}" for i in range(120) if i % 12 == 5]
    assert sorted(result.forgotten_sample_ids) == sorted(gone)
    ws_b, _ = _fit(tmp_path / "b", data.without(gone), config)
    assert _active_components(ws_a) == _active_components(ws_b)


def test_successive_batches_equal_one_retraining_without_all(tmp_path: Path) -> None:
    data = make_blobs(n=120)
    config = _config(shards=3, slices=4)
    ws_a, model = _fit(tmp_path / "a", data, config)
    batches = [["s3", "s4"], ["s40"], ["s90", "s91", "s92"]]
    for batch in batches:
        model.forget(sample_ids=batch)
    all_gone = [i for batch in batches for i in batch]
    ws_b, _ = _fit(tmp_path / "b", data.without(all_gone), config)
    assert _active_components(ws_a) == _active_components(ws_b)


def test_adam_cosine_and_dropout_resume_exactly(tmp_path: Path) -> None:
    # Adam keeps moments, cosine keeps an epoch counter, dropout consumes the RNG: a resume
    # that dropped any of them would diverge.
    train = TrainConfig(epochs=6, batch_size=8, lr=0.01, optimizer="adam", scheduler="cosine")
    config = _config(
        shards=2, slices=3, train=train, model_options={"hidden": (16,), "dropout": 0.3}
    )
    data = make_blobs(n=90)
    ws_a, model = _fit(tmp_path / "a", data, config)
    model.forget(sample_ids=["s10", "s60"])
    ws_b, _ = _fit(tmp_path / "b", data.without(["s10", "s60"]), config)
    assert _active_components(ws_a) == _active_components(ws_b)


def test_class_balanced_forget_equals_refit_over_the_same_registry(tmp_path: Path) -> None:
    # Class-balanced placement deals over every registered sample (deleted ones stay as
    # tombstones), so the oracle is a fit that excludes the samples from training.
    data = make_blobs(n=120)
    config = _config(shards=3, slices=2, sharding="class_balanced")
    ws_a, model = _fit(tmp_path / "a", data, config)
    model.forget(sample_ids=["s8", "s9"])
    keep = [f"s{i}" for i in range(120) if i not in (8, 9)]
    ws_b, _ = _fit(tmp_path / "b", data, config, fit_ids=keep)
    assert _active_components(ws_a) == _active_components(ws_b)


def test_added_data_then_forget_equals_fit_and_add_without_it(tmp_path: Path) -> None:
    first = make_blobs(n=90, seed=1)
    second = make_blobs(n=30, seed=2, id_prefix="t")
    config = _config(shards=2, slices=3)

    ws_a = Workspace.init(tmp_path / "a")
    ws_a.register(first, dataset="d")
    model = ws_a.train(name="m", dataset="d", config=config)
    assert isinstance(model, SISA)
    ws_a.register(second, dataset="d")
    model.add()
    model.forget(sample_ids=["s5", "t3"])

    ws_b = Workspace.init(tmp_path / "b")
    ws_b.register(first.without(["s5"]), dataset="d")
    other = ws_b.train(name="m", dataset="d", config=config)
    assert isinstance(other, SISA)
    ws_b.register(second.without(["t3"]), dataset="d")
    other.add()
    assert _active_components(ws_a) == _active_components(ws_b)


def test_background_forget_matches_foreground(tmp_path: Path) -> None:
    data = make_blobs(n=120)
    config = _config()
    ws_a, model = _fit(tmp_path / "a", data, config)
    pending = model.forget(sample_ids=["s12"], background=True)
    assert pending.rolled_back_version is not None
    done = pending.wait(timeout=60)
    assert done.version is not None and done.pending is None
    ws_b, _ = _fit(tmp_path / "b", data.without(["s12"]), config)
    assert _active_components(ws_a) == _active_components(ws_b)


def test_one_shard_one_slice_equals_a_plain_pytorch_loop(tmp_path: Path) -> None:
    """S=1, R=1 adds nothing: same init, same per-epoch order, same steps, same weights."""
    data = make_blobs(n=100)
    train = TrainConfig(epochs=3, batch_size=16, lr=0.05, momentum=0.9)

    def factory() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))

    config = SISAConfig(shards=1, slices=1, train=train, seed=5)
    ws = Workspace.init(tmp_path / "ws")
    ws.register(data, dataset="d")
    model = ws.train(name="m", dataset="d", config=config, model_factory=factory)
    assert isinstance(model, SISA)

    # The plain loop: documented seeds, documented order, nothing else.
    from obliviate._hashing import derive_seed, id_hash64

    keys = id_hash64(data.sample_ids, "5:order")
    order = np.argsort(keys, kind="stable")
    x = torch.from_numpy(data.features[order])
    y = torch.from_numpy(data.labels[order])
    keys = keys[order]
    torch.manual_seed(derive_seed(5, "init", "shard-0"))
    plain = factory()
    torch.manual_seed(derive_seed(5, "train", "shard-0"))
    opt = torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(3):
        perm = torch.from_numpy(
            epoch_permutation(keys, seed=derive_seed(5, "order", "shard-0"), epoch=epoch)
        )
        for start in range(0, len(perm), 16):
            idx = perm[start : start + 16]
            opt.zero_grad()
            nn.functional.cross_entropy(plain(x[idx]), y[idx]).backward()
            opt.step()

    version = ws.provenance.active_version("m")
    assert version is not None
    served = model._model_for(str(version.components["shard-0"]), "shard-0")[0]
    for (name, a), (_, b) in zip(
        served.state_dict().items(), plain.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
