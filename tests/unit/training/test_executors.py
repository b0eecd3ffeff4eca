"""Executors: order, isolation of worker threads, errors, settings, and identical results."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.errors import ConfigError, TrainingError
from obliviate.settings import Settings
from obliviate.testing import make_blobs
from obliviate.training.executors import (
    EXECUTORS,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    RayExecutor,
    make_executor,
)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessExecutor]:
    """One pool for the module: spawning workers (each imports torch) costs seconds."""
    executor = ProcessExecutor(workers=2, threads_per_worker=1)
    yield executor
    executor.close()


def _square(x: int) -> int:
    return x * x


def _where(_: int) -> tuple[int, int]:
    return os.getpid(), torch.get_num_threads()


def _fail(x: int) -> int:
    raise TrainingError(f"task {x} failed")


def test_inline_runs_in_order_in_this_process_with_pinned_threads() -> None:
    executor = InlineExecutor(threads=1)
    assert isinstance(executor, Executor)
    assert executor.run(fn=_square, tasks=[3, 1, 2]) == [9, 1, 4]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert executor.run(fn=_where, tasks=[0]) == [(os.getpid(), 1)]
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads"):
        InlineExecutor(threads=0)


@pytest.mark.slow
def test_process_pool_runs_in_spawned_workers_with_pinned_threads(
    pool: ProcessExecutor,
) -> None:
    assert pool.run(fn=_square, tasks=list(range(6))) == [0, 1, 4, 9, 16, 25]
    where = pool.run(fn=_where, tasks=[0, 1])
    assert all(pid != os.getpid() and threads == 1 for pid, threads in where)
    with pytest.raises(TrainingError, match="task 1 failed"):
        pool.run(fn=_fail, tasks=[1])
    assert pool.run(fn=_square, tasks=[]) == []


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="workers"):
        ProcessExecutor(workers=0)
    with pytest.raises(ConfigError, match="threads_per_worker"):
        ProcessExecutor(threads_per_worker=0)
    with pytest.raises(ConfigError, match="explicit address"):
        RayExecutor(address="")
    with pytest.raises(ConfigError, match="OBLIVIATE_RAY_ADDRESS"):
        make_executor(Settings(executor="ray"))


def test_settings_choose_the_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sorted(EXECUTORS.names()) == ["inline", "process", "ray"]
    monkeypatch.setenv("OBLIVIATE_EXECUTOR", "process")
    monkeypatch.setenv("OBLIVIATE_EXECUTOR_WORKERS", "3")
    executor = make_executor()
    assert isinstance(executor, ProcessExecutor) and executor.workers == 3
    monkeypatch.setenv("OBLIVIATE_EXECUTOR", "ray")
    monkeypatch.setenv("OBLIVIATE_RAY_ADDRESS", "auto")
    ray_executor = make_executor()
    assert isinstance(ray_executor, RayExecutor) and ray_executor.address == "auto"
    assert Settings().executor == "ray"
    monkeypatch.delenv("OBLIVIATE_EXECUTOR")
    assert Settings().executor == "process"  # the project default


def _fit_and_forget(root: Path, executor: Executor, trainer: str) -> dict[str, str | None]:
    ws = Workspace.init(root)
    # Wide enough that torch's CPU matrix products would split work across threads.
    ws.register(make_blobs(n=90, features=64), dataset="d")
    config = SISAConfig(
        shards=3,
        slices=2,
        model_options={"hidden": (128,)},
        train=TrainConfig(epochs=2, batch_size=8),
        trainer=trainer,
    )
    model = ws.create(name="m", dataset="d", config=config)
    model.context = replace(model.context, executor=executor)
    model.fit()
    model.forget(sample_ids=["s3", "s40"])
    version = ws.provenance.active_version("m")
    ws.close()
    assert version is not None
    return dict(version.components)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["sequential", "batched"])
def test_inline_and_process_pool_give_bitwise_identical_checkpoints(
    tmp_path: Path, trainer: str, pool: ProcessExecutor
) -> None:
    by_pool = _fit_and_forget(tmp_path / "pool", pool, trainer)
    inline = _fit_and_forget(tmp_path / "inline", InlineExecutor(), trainer)
    # Checkpoint ids hash every tensor (weights, optimiser, RNG) and the lineage metadata.
    assert by_pool == inline


def test_an_unpicklable_model_factory_trains_in_process(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path)
    ws.register(make_blobs(n=40), dataset="d")
    config = SISAConfig(shards=2, train=TrainConfig(epochs=1, batch_size=8))
    model = ws.create(
        name="m", dataset="d", config=config, model_factory=lambda: torch.nn.Linear(6, 3)
    )
    unstarted = ProcessExecutor(workers=1)
    model.context = replace(model.context, executor=unstarted)
    model.fit()  # would fail to pickle the lambda; falls back to in-process training
    assert unstarted._pool is None  # the pool was never started
    ws.close()
