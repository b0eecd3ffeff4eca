"""Gold-standard references in a workspace and the periodic audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.errors import ConfigError
from obliviate.evaluation import (
    EvalData,
    GoldStandardTolerances,
    audit_due,
    audit_records,
    ensure_reference,
    run_gold_standard_audit,
)
from obliviate.testing import make_blobs

CONFIG = SISAConfig(shards=2, train=TrainConfig(epochs=2, batch_size=16), seed=3)


def _workspace(tmp_path: Path) -> tuple[Workspace, EvalData]:
    data = make_blobs(n=160, classes=3, features=6, seed=0)
    ws = Workspace.init(tmp_path / "ws")
    ws.register(data.subset(np.arange(120)), dataset="d")
    ws.train(name="m", dataset="d", config=CONFIG)
    test = data.subset(np.arange(120, 160))
    return ws, EvalData(features=test.features, labels=test.labels)


def test_reference_is_trained_once_per_state_and_carries_the_config(tmp_path: Path) -> None:
    ws, _ = _workspace(tmp_path)
    with ws:
        first = ensure_reference(workspace=ws, model="m")
        again = ensure_reference(workspace=ws, model="m")
        assert first.created and not again.created and first.name == again.name
        assert first.name.startswith("gold-")
        config = ws.provenance.model(first.name).config
        assert config["seed"] == 3 and config["train"]["epochs"] == 2
        ws.forget(model="m", sample_ids=["s1", "s2"])
        after = ensure_reference(workspace=ws, model="m")
        assert after.created and after.name != first.name  # new deleted set, new key
        assert ws.verify(model=after.name).ok  # the reference never saw s1, s2


def test_audit_records_outcome_and_covers_forgets_since_last(tmp_path: Path) -> None:
    ws, test = _workspace(tmp_path)
    with ws:
        assert audit_due(workspace=ws, model="m", every_seconds=3600)
        ws.forget(model="m", sample_ids=["s5"])
        loose = GoldStandardTolerances(ra=100.0, ta=100.0, mia=100.0)
        first = run_gold_standard_audit(workspace=ws, model="m", test=test, tolerances=loose)
        assert first.ok and first.reference_created and len(first.deletion_ids) == 1
        assert [c.metric for c in first.checks] == ["RA", "TA", "MIA retain-vs-test"]
        record = json.loads(Path(first.path).read_text())
        assert record["ok"] and record["deletion_ids"] == list(first.deletion_ids)
        second = run_gold_standard_audit(workspace=ws, model="m", test=test, tolerances=loose)
        assert second.deletion_ids == () and not second.reference_created
        assert second.last_deletion_id == first.last_deletion_id
        assert not audit_due(workspace=ws, model="m", every_seconds=0)  # nothing new
        ws.forget(model="m", sample_ids=["s6", "s7"])
        assert audit_due(workspace=ws, model="m", every_seconds=0)
        third = run_gold_standard_audit(workspace=ws, model="m", test=test, tolerances=loose)
        assert len(third.deletion_ids) == 1 and third.deletion_ids[0] > first.deletion_ids[0]
        assert len(audit_records(workspace=ws, model="m")) == 3


def test_audit_breach_is_reported(tmp_path: Path) -> None:
    ws, test = _workspace(tmp_path)
    with ws:
        strict = GoldStandardTolerances(ra=0.0, ta=0.0, mia=0.0)
        outcome = run_gold_standard_audit(
            workspace=ws, model="m", test=test, tolerances=strict, reference_strategy="retrain"
        )
        # a 2-shard SISA vote and a single retrained model do not agree to the last sample
        assert not outcome.ok and outcome.breaches
        assert all(c.gap > c.tolerance for c in outcome.breaches)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ra": -1.0}, "ra"), ({"mia": "x"}, "mia"), ({"retain_limit": 1}, "retain_limit")],
)
def test_tolerances_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        GoldStandardTolerances(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown"):
        GoldStandardTolerances.from_dict({"rA": 1.0})
    default = GoldStandardTolerances()
    assert GoldStandardTolerances.from_dict(default.to_dict()) == default


def test_an_exactly_forgotten_model_matches_its_own_strategy_reference_exactly(
    tmp_path: Path,
) -> None:
    ws, test = _workspace(tmp_path)
    with ws:
        ws.forget(model="m", sample_ids=["s3", "s40", "s77"])
        strict = GoldStandardTolerances(ra=0.0, ta=0.0, mia=0.0)
        outcome = run_gold_standard_audit(workspace=ws, model="m", test=test, tolerances=strict)
        assert outcome.ok, outcome.breaches
        assert all(check.gap == 0.0 for check in outcome.checks)
        gold = ensure_reference(workspace=ws, model="m")
        assert ws.provenance.model(gold.name).strategy == "sisa"
        # Checkpoint ids name their model, so compare what is served, bit for bit.
        served = ws.model("m").predict(test.features).probabilities
        reference = gold.strategy.predict(test.features).probabilities
        assert np.array_equal(served, reference)
