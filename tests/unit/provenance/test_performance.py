"""Registration is bulk work: 60,000 samples must register quickly on SQLite."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from obliviate.data.sample_set import SampleSet
from obliviate.provenance import Provenance
from tests.unit.provenance.helpers import hex64


def test_sixty_thousand_samples_register_and_link_quickly(tmp_path: Path) -> None:
    n = 60_000
    rng = np.random.default_rng(0)
    samples = SampleSet.from_arrays(
        features=rng.random((n, 28, 28), dtype=np.float32),
        labels=rng.integers(0, 10, n),
        subject_ids=[f"user-{i % 5000}" for i in range(n)],
        name="mnist",
    )
    prov = Provenance.connect(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        start = time.perf_counter()
        record = prov.register_samples(dataset="mnist", samples=samples, chunk="train-0")
        register_s = time.perf_counter() - start
        assert record.num_active == n
        assert register_s < 10.0, f"registering {n} samples took {register_s:.1f} s"

        start = time.perf_counter()
        pks = prov.samples(dataset="mnist").pk
        prov.create_model(name="m", strategy="retrain", config={}, dataset="mnist")
        prov.record_checkpoint(
            model="m",
            component="full",
            checkpoint_id=hex64(1),
            storage_url="file:///x",
            parent_id=None,
            lineage_hash=hex64(2),
            new_sample_pks=pks,
            num_samples_seen=n,
            meta={},
        )
        prov.create_version(model="m", components={"full": hex64(1)}, kind="trained")
        assert prov.influence_set(model="m", number=1).size == n
        assert time.perf_counter() - start < 10.0
    finally:
        prov.close()
