"""A workspace whose registry is PostgreSQL behaves exactly like the SQLite default."""

from __future__ import annotations

from pathlib import Path

import pytest

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.testing import make_blobs


@pytest.mark.postgres
@pytest.mark.integration
def test_postgres_forget_equals_sqlite_refit(tmp_path: Path, postgres_url: str) -> None:
    data = make_blobs(n=80, subjects=8)
    config = SISAConfig(
        shards=3, slices=2, sharding="by_subject", train=TrainConfig(epochs=2, batch_size=8)
    )
    with Workspace.init(tmp_path / "pg", database_url=postgres_url) as ws:
        assert ws.database_url.startswith("postgresql")
        ws.register(data, dataset="d")
        model = ws.train(name="m", dataset="d", config=config)
        result = model.forget(subject_ids=["u3"], reason="Art. 17")
        assert len(result.affected_components) == 1
        assert ws.verify(model="m").ok
        assert not ws.verify(model="m", version=1).ok
        served = ws.provenance.active_version("m")
        seen = ws.provenance.versions_that_saw(dataset="d", subject_id="u3")
        assert [v.number for v in seen] == [1]
    gone = [f"s{i}" for i in range(80) if i % 8 == 3]
    with Workspace.init(tmp_path / "lite") as ws:
        ws.register(data.without(gone), dataset="d")
        ws.train(name="m", dataset="d", config=config)
        fresh = ws.provenance.active_version("m")
    assert served is not None and fresh is not None
    assert served.components == fresh.components
