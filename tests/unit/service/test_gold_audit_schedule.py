"""The worker's periodic gold-standard audit: runs when due, records, feeds the breach gauge."""

from __future__ import annotations

import pytest

from obliviate import Workspace
from obliviate.errors import ConfigError
from obliviate.evaluation import audit_records
from obliviate.service.queue import RequestQueue
from obliviate.service.settings import ServiceSettings
from obliviate.service.worker import Worker
from obliviate.testing import make_blobs


def test_settings_need_a_test_dataset_with_an_audit_interval(
    settings: ServiceSettings,
) -> None:
    with pytest.raises(ConfigError, match="gold_audit_test"):
        settings.replace(gold_audit_seconds=60.0)
    with pytest.raises(ConfigError, match="gold_audit_seconds"):
        settings.replace(gold_audit_seconds=0.0, gold_audit_test="heldout")


def test_worker_audits_each_model_once_deletions_arrived(
    workspace: Workspace, settings: ServiceSettings
) -> None:
    workspace.register(make_blobs(n=30, seed=1, id_prefix="h"), dataset="heldout", deletable=False)
    off = Worker(workspace, RequestQueue(workspace.provenance.engine, settings=settings))
    assert off.maybe_audit() == []  # turned off by default
    on = settings.replace(gold_audit_seconds=3600.0, gold_audit_test="heldout")
    worker = Worker(workspace, RequestQueue(workspace.provenance.engine, settings=on))
    workspace.forget(model="m", sample_ids=["s1", "s2"])
    outcomes = worker.maybe_audit()
    assert [o.model for o in outcomes] == ["m"]
    assert outcomes[0].ok and all(check.gap == 0.0 for check in outcomes[0].checks)
    assert len(audit_records(workspace=workspace, model="m")) == 1
    # Not due again within the interval, and the gold reference itself is never audited.
    assert worker.maybe_audit() == []
    assert {o.model for o in outcomes} == {"m"}
