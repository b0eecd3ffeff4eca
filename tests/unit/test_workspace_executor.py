"""A workspace hands its executor to every model; results never depend on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.testing import make_blobs
from obliviate.training.executors import InlineExecutor


class CountingExecutor(InlineExecutor):
    """Inline, but counts the batches of tasks it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def run(self, *, fn: Any, tasks: Any) -> Any:
        self.batches += 1
        return super().run(fn=fn, tasks=tasks)


def test_the_given_executor_trains_fit_and_forget(tmp_path: Path) -> None:
    executor = CountingExecutor()
    config = SISAConfig(shards=2, slices=2, train=TrainConfig(epochs=1, batch_size=8))
    with Workspace.init(tmp_path / "a", executor=executor) as ws:
        ws.register(make_blobs(n=40), dataset="d")
        ws.train(name="m", dataset="d", config=config)
        fitted = executor.batches
        assert fitted >= 1
        ws.forget(model="m", sample_ids=["s3"])
        assert executor.batches > fitted
    with Workspace.open(tmp_path / "a", executor=executor) as ws:
        assert ws.model("m").context.executor is executor
    with Workspace.init(tmp_path / "b") as plain:
        plain.register(make_blobs(n=40), dataset="d")
        plain.train(name="m", dataset="d", config=config)
        plain.forget(model="m", sample_ids=["s3"])
        with Workspace.open(tmp_path / "a") as ws:
            a = ws.provenance.active_version("m")
            b = plain.provenance.active_version("m")
            assert a is not None and b is not None
            assert dict(a.components) == dict(b.components)
