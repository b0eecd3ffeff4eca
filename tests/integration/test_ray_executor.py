"""Training and forgetting with Ray tasks on a private local Ray instance.

The Ray executor must give the same checkpoints as in-process training: tasks carry only
references (feature-store rows, store URL, config, seeds) and write content-addressed
checkpoints, and the driver alone records them in the registry.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.testing import make_blobs
from obliviate.training.executors import Executor, InlineExecutor, RayExecutor

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _fit_and_forget(root: Path, executor: Executor) -> tuple[dict[str, str | None], bool]:
    ws = Workspace.init(root)
    ws.register(make_blobs(n=60), dataset="d")
    config = SISAConfig(
        shards=2,
        slices=2,
        model_options={"hidden": (8,)},
        train=TrainConfig(epochs=2, batch_size=8),
    )
    model = ws.create(name="m", dataset="d", config=config)
    model.context = replace(model.context, executor=executor)
    model.fit()
    result = model.forget(sample_ids=["s4", "s33"])
    assert result.version is not None
    version = ws.provenance.active_version("m")
    ok = ws.verify(model="m").ok
    ws.close()
    assert version is not None
    return dict(version.components), ok


def test_fit_and_forget_on_local_ray_equal_inline(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    executor = RayExecutor(
        address="local",
        num_cpus=2,
        init_options={"object_store_memory": 80 * 1024 * 1024},
    )
    try:
        on_ray, verified = _fit_and_forget(tmp_path / "ray", executor)
    finally:
        executor.close()
    assert verified
    inline, _ = _fit_and_forget(tmp_path / "inline", InlineExecutor())
    assert on_ray == inline
