"""The shipped Prometheus alerting rules parse and use only metrics ``/metrics`` exports."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from obliviate import Workspace
from obliviate.service import ServiceSettings, Worker, create_app

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "obliviate-alerts.yml"
_METRIC = re.compile(r"\bobliviate_[a-z0-9_]+\b")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_rules_file_is_well_formed() -> None:
    data = yaml.safe_load(RULES.read_text())
    names = [group["name"] for group in data["groups"]]
    assert len(names) == len(set(names))
    alerts = [rule["alert"] for rule in _rules()]
    assert len(alerts) == len(set(alerts))
    for rule in _rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert _METRIC.search(rule["expr"]), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"])
    # The four alerts are there.
    for expected in (
        "ObliviateRequestPastSLA",
        "ObliviateRetrainSlow",
        "ObliviateDeadRequests",
        "ObliviateGoldStandardBreach",
    ):
        assert expected in alerts


def _exported(workspace: Workspace, settings: ServiceSettings) -> set[str]:
    audits = workspace.root / "audits" / "gold-standard"
    audits.mkdir(parents=True)
    record = {"kind": "gold_standard_audit", "model": "m", "ok": True, "recorded_at": "2026-01-01"}
    (audits / "a.json").write_text(json.dumps(record))
    app = create_app(settings, workspace=workspace)
    with TestClient(app) as client:
        state = app.state.obliviate
        secret = state.keys.create(name="t", scopes=["admin"]).secret
        client.post(
            "/v1/unlearn",
            json={"sample_ids": ["s1"], "reason": "gdpr-art17-1a"},
            headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": uuid.uuid4().hex},
        )
        Worker(state.workspace, state.queue).drain(timeout=60)
        text = client.get("/metrics").text
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_a_rule_uses_is_exported(
    workspace: Workspace, settings: ServiceSettings
) -> None:
    exported = _exported(workspace, settings.replace(metrics_cache_seconds=0.0))
    used = {name for rule in _rules() for name in _METRIC.findall(rule["expr"])}
    assert used  # the regex found the rules' metrics
    missing = sorted(name for name in used if name not in exported)
    assert not missing, f"rules use metrics /metrics does not export: {missing}"
    # Sanity: the suffix forms resolve to families that exist.
    for name in used:
        base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
        assert base in exported or name in exported
