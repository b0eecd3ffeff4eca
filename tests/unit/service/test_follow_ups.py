"""Follow-ups: a request for one model makes every other model of its dataset forget too."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.errors import ConfigError
from obliviate.service import ApiKeyStore, create_app
from obliviate.service.queue import NewRequest, RequestQueue, RequestRecord
from obliviate.service.settings import ServiceSettings
from obliviate.service.worker import Worker
from obliviate.strategies.exact.plan import Plan
from tests.service_helpers import deletions_per_sample
from tests.unit.service.conftest import FakeClock, new_request

B_CONFIG = SISAConfig(
    shards=2,
    slices=2,
    model_options={"hidden": (8,)},
    train=TrainConfig(epochs=2, batch_size=16, lr=0.05),
)
#: Model ``c`` is trained on these samples only: it never saw s0 ... s29.
C_SAMPLES = [f"s{i}" for i in range(30, 60)]


@pytest.fixture(scope="session")
def shared_template(trained_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataset ``d`` with three models: ``m`` and ``b`` on every sample, ``c`` on s30-s59."""
    import os

    root = tmp_path_factory.mktemp("shared") / "ws"
    shutil.copytree(trained_template, root)
    previous = os.environ.get("OBLIVIATE_EXECUTOR")
    os.environ["OBLIVIATE_EXECUTOR"] = "inline"
    try:
        with Workspace.open(root) as ws:
            ws.train(name="b", dataset="d", config=B_CONFIG)
            ws.train(name="c", dataset="d", config=B_CONFIG, sample_ids=C_SAMPLES)
    finally:
        if previous is None:
            os.environ.pop("OBLIVIATE_EXECUTOR", None)
        else:
            os.environ["OBLIVIATE_EXECUTOR"] = previous
    return root


@pytest.fixture
def shared(shared_template: Path, tmp_path: Path) -> Iterator[Workspace]:
    target = tmp_path / "shared"
    shutil.copytree(shared_template, target)
    with Workspace.open(target) as ws:
        yield ws


def _active(ws: Workspace, model: str) -> int:
    version = ws.provenance.active_version(model)
    assert version is not None
    return version.number


def _children(queue: RequestQueue, parent: str) -> dict[str, RequestRecord]:
    return {r.model: r for r in queue.follow_ups(parent)}


def test_a_request_for_one_model_makes_every_model_that_holds_the_samples_forget(
    shared: Workspace, settings: ServiceSettings
) -> None:
    queue = RequestQueue(shared.provenance.engine, settings=settings)
    before = {name: _active(shared, name) for name in ("m", "b", "c")}
    parent_id = queue.submit(new_request("m", "s1", "s2")).request_id
    Worker(shared, queue).drain(timeout=60)

    parent = queue.get(parent_id)
    children = _children(queue, parent_id)
    assert parent.state == "completed" and set(children) == {"b"}  # c never saw s1, s2
    child = children["b"]
    assert parent.follow_up_ids == (child.id,)
    assert parent.result is not None
    assert parent.result["follow_ups"] == [{"model": "b", "request_id": child.id}]
    assert child.state == "completed" and child.parent_id == parent_id
    assert child.mode == "exact" and child.sample_ids == ("s1", "s2")
    assert child.reason == parent.reason and child.deadline_at == parent.deadline_at
    assert child.result is not None and not child.result["noop"]
    assert child.result["forgotten_requested_ids"] == 2 and child.follow_up_ids == ()
    assert queue.follow_ups(child.id) == []  # a follow-up has none of its own
    for name in ("m", "b"):
        assert _active(shared, name) > before[name]
        assert shared.verify(model=name).ok
        kept = shared.provenance.influence_sample_ids(model=name, number=_active(shared, name))
        assert not {"s1", "s2"} & set(kept)
    assert _active(shared, "c") == before["c"] and shared.verify(model="c").ok
    assert set(deletions_per_sample(shared).values()) == {1}  # one registry deletion each
    assert queue.counts()["completed"] == 2 and len(queue.recent()) == 2


def test_a_subject_request_follows_up_with_the_samples_each_model_saw(
    shared: Workspace, settings: ServiceSettings
) -> None:
    queue = RequestQueue(shared.provenance.engine, settings=settings)
    parent_id = queue.submit(new_request("m", "s1", subject="u1")).request_id
    subject = [f"s{i}" for i in range(1, 60, 6)]  # make_blobs: sample i belongs to u{i % 6}
    Worker(shared, queue).drain(timeout=60)

    children = _children(queue, parent_id)
    assert set(children) == {"b", "c"}
    assert set(children["b"].sample_ids) == set(subject)
    assert set(children["c"].sample_ids) == set(subject) & set(C_SAMPLES)
    assert all(c.subject_ids == () and c.state == "completed" for c in children.values())
    for name in ("m", "b", "c"):
        assert shared.verify(model=name).ok


def test_an_approximate_request_gets_exact_follow_ups(
    shared: Workspace, settings: ServiceSettings
) -> None:
    queue = RequestQueue(shared.provenance.engine, settings=settings)
    parent_id = queue.submit(
        NewRequest(
            model="m",
            mode="approximate",
            method="finetune",
            sample_ids=("s40",),
            subject_ids=(),
            reason="gdpr-art17-1a",
            fingerprint="approximate",
        )
    ).request_id
    Worker(shared, queue).drain(timeout=60)

    assert queue.get(parent_id).result["guarantee"] == "approximate"  # type: ignore[index]
    children = _children(queue, parent_id)
    assert set(children) == {"b", "c"}
    for child in children.values():
        assert child.mode == "exact" and child.result is not None
        assert child.result["guarantee"] == "exact" and not child.result["noop"]
    assert shared.verify(model="b").ok and shared.verify(model="c").ok


def test_a_model_retraining_while_another_deletes_gets_a_follow_up(
    shared: Workspace, settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # b forgets x: shard k rolls back to nothing (x is in its first slice) and retrains on a
    # sample table read before m deletes y (also in shard k). b's rolled-back version does
    # not hold y, the retrained one will: the version it was rolled back from decides.
    b = shared.model("b")
    plan = Plan.load(b.context.model_dir)
    table = shared.provenance.samples(dataset="d", status=None)
    id_of = dict(zip(table.pk.tolist(), table.sample_ids.tolist(), strict=True))
    x = int(np.flatnonzero(plan.slice == 0)[0])
    y = int(next(i for i in np.flatnonzero(plan.shard == plan.shard[x]) if i != x))
    x_id, y_id = id_of[int(plan.pk[x])], id_of[int(plan.pk[y])]

    prov_type = type(shared.provenance)
    original = prov_type.samples
    read, go = threading.Event(), threading.Event()
    stale: dict[str, object] = {}

    def paused_read(self: object, *, dataset: str, status: str | None = "active") -> object:
        if threading.current_thread().name != "b-forget" or status != "active":
            return original(self, dataset=dataset, status=status)  # type: ignore[arg-type]
        if "table" not in stale:  # b's retrain reads what to train on, then stalls
            stale["table"] = original(self, dataset=dataset, status=status)  # type: ignore[arg-type]
            read.set()
            go.wait(60)
        return stale["table"]

    monkeypatch.setattr(prov_type, "samples", paused_read)
    forgetting = threading.Thread(
        target=lambda: b.forget(sample_ids=[x_id]), name="b-forget", daemon=True
    )
    forgetting.start()
    assert read.wait(60)
    rolled = shared.provenance.active_version("b")
    assert rolled is not None and rolled.kind == "rolled_back"
    assert y_id not in shared.verify(model="b", version=rolled.number).deleted_seen

    queue = RequestQueue(shared.provenance.engine, settings=settings)
    parent_id = queue.submit(new_request("m", y_id)).request_id
    outcome = Worker(shared, queue).run_once()
    assert outcome is not None and outcome.completed == (parent_id,)
    assert "b" in _children(queue, parent_id)  # enqueued while b's active version is clean
    go.set()
    forgetting.join(60)
    assert not shared.verify(model="b").ok  # b's retrain brought y back, as feared
    Worker(shared, queue).drain(timeout=60)
    assert shared.verify(model="b").ok and shared.verify(model="m").ok


def test_a_redelivered_request_enqueues_its_follow_ups_once(
    shared: Workspace, settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    queue = RequestQueue(shared.provenance.engine, settings=settings, clock=clock)
    parent_id = queue.submit(new_request("m", "s3")).request_id
    stale = queue.claim(owner="stalled")
    assert stale is not None
    clock.advance(settings.lease_seconds + 1)  # the first worker stalls past its lease

    # The next worker forgets, then dies before its completion commits: no follow-up yet.
    original = RequestQueue.complete
    calls = {"n": 0}

    def die_once(self: RequestQueue, *args: object, **kwargs: object) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("killed between the forget and its completion")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RequestQueue, "complete", die_once)
    with pytest.raises(KeyboardInterrupt):
        Worker(shared, queue, owner="doomed").run_once()
    assert queue.follow_ups(parent_id) == [] and not shared.verify(model="b").ok
    clock.advance(settings.lease_seconds + 1)

    rescued = Worker(shared, queue, owner="rescuer").run_once()  # the forget is a no-op now
    assert rescued is not None and rescued.completed == (parent_id,)
    late = Worker(shared, queue, owner="stalled").process(stale)  # the stalled one wakes up
    assert late.fenced == (parent_id,) and not late.completed
    Worker(shared, queue, owner="rescuer").drain(timeout=60)

    parent = queue.get(parent_id)
    assert parent.state == "completed" and parent.attempts == 3
    [child] = queue.follow_ups(parent_id)
    assert parent.follow_up_ids == (child.id,) and child.model == "b"
    assert child.state == "completed" and child.attempts == 1
    assert shared.verify(model="m").ok and shared.verify(model="b").ok
    assert set(deletions_per_sample(shared).values()) == {1}
    assert queue.counts() == {"queued": 0, "running": 0, "completed": 2, "denied": 0, "dead": 0}


def test_status_shows_the_follow_ups_and_the_parent(
    shared: Workspace, settings: ServiceSettings
) -> None:
    app = create_app(settings, workspace=shared)
    with TestClient(app) as client:
        store: ApiKeyStore = app.state.obliviate.keys
        secret = store.create(name="t", scopes=("unlearn:write", "unlearn:read")).secret
        headers = {"Authorization": f"Bearer {secret}"}
        body = {"model": "m", "sample_ids": ["s4"], "reason": "gdpr-art17-1a"}
        posted = client.post(
            "/v1/unlearn", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
        )
        assert posted.status_code == 202
        state = app.state.obliviate
        Worker(state.workspace, state.queue).drain(timeout=60)
        parent = client.get(posted.headers["Location"], headers=headers).json()
        assert parent["status"] == "completed" and parent["parent_id"] is None
        [child_id] = parent["follow_ups"]
        assert parent["result"]["follow_ups"] == [{"model": "b", "request_id": child_id}]
        child = client.get(f"/v1/unlearn/{child_id}", headers=headers).json()
        assert child["model"] == "b" and child["parent_id"] == parent["id"]
        assert child["status"] == "completed" and child["follow_ups"] == []
        listed = client.get("/v1/unlearn", headers=headers).json()["requests"]
        assert {r["id"]: r["parent_id"] for r in listed} == {
            parent["id"]: None,
            child_id: parent["id"],
        }


# --------------------------------------------------------------------- queue level (both DBs)
def test_follow_ups_commit_only_with_their_parents_completion(
    queue: RequestQueue, clock: FakeClock, settings: ServiceSettings
) -> None:
    parent_id = queue.submit(new_request("m", "s1")).request_id
    stale = queue.claim(owner="slow")
    assert stale is not None
    clock.advance(settings.lease_seconds + 1)
    fresh = queue.claim(owner="fast")
    assert fresh is not None
    parent = fresh.requests[0]
    follow = NewRequest.follow_up(parent, model="b", sample_ids=["s1"])
    # The fence refuses the stale completion, and its follow-ups with it.
    assert not queue.complete(stale, parent_id, result={}, follow_ups=[follow])
    assert queue.follow_ups(parent_id) == []
    assert queue.complete(fresh, parent_id, result={"by": "fast"}, follow_ups=[follow])
    [child] = queue.follow_ups(parent_id)
    assert child.state == "queued" and child.model == "b" and child.sample_ids == ("s1",)
    assert child.parent_id == parent_id and child.deadline_at == parent.deadline_at
    assert queue.get(parent_id).result == {
        "by": "fast",
        "follow_ups": [{"model": "b", "request_id": child.id}],
    }
    # The same follow-up enqueued again (any path) replays the existing request.
    again = queue.submit(follow)
    assert not again.created and again.request_id == child.id
    assert queue.counts()["queued"] == 1


def test_a_client_key_cannot_take_a_follow_ups_idempotency_key(
    queue: RequestQueue, clock: FakeClock
) -> None:
    parent_id = queue.submit(new_request("m", "s1")).request_id
    clock.advance(1)  # the parent's deadline comes first, so its model is claimed first
    squatter = queue.submit(new_request("b", "s9", key=f"{parent_id}:follow:b"))
    lease = queue.claim(owner="w")
    assert lease is not None and lease.model == "m"
    follow = NewRequest.follow_up(lease.requests[0], model="b", sample_ids=["s1"])
    assert queue.complete(lease, parent_id, result={}, follow_ups=[follow])
    [child] = queue.follow_ups(parent_id)
    assert child.id != squatter.request_id and child.sample_ids == ("s1",)


def test_follow_ups_must_name_their_parent(queue: RequestQueue) -> None:
    parent_id = queue.submit(new_request("m", "s1")).request_id
    other = queue.submit(new_request("m", "s2")).request_id
    lease = queue.claim(owner="w")
    assert lease is not None
    parent = next(r for r in lease.requests if r.id == other)
    with pytest.raises(ConfigError, match="must name it as their parent"):
        queue.complete(
            lease,
            parent_id,
            result={},
            follow_ups=[NewRequest.follow_up(parent, model="b", sample_ids=["s2"])],
        )
    assert queue.get(parent_id).state == "running"  # nothing was recorded
