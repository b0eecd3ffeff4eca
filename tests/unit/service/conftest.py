"""Fixtures for the service tests: queues on SQLite and PostgreSQL, tiny trained workspaces."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.provenance import create_engine, upgrade
from obliviate.service.queue import NewRequest, RequestQueue
from obliviate.service.settings import ServiceSettings
from obliviate.testing import make_blobs

CONFIG = SISAConfig(
    shards=3,
    slices=2,
    model_options={"hidden": (8,)},
    train=TrainConfig(epochs=2, batch_size=16, lr=0.05),
)


class FakeClock:
    """A settable clock, so lease expiry needs no sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _inline_training(monkeypatch: pytest.MonkeyPatch) -> None:
    # Training in-process: no worker pool to spawn (and nothing left behind by a kill).
    monkeypatch.setenv("OBLIVIATE_EXECUTOR", "inline")


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """A migrated engine (all revisions, the service tables included)."""
    eng = create_engine(db_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path) -> ServiceSettings:
    return ServiceSettings(
        workspace=tmp_path / "ws",
        batch_window_seconds=0.0,
        lease_seconds=10.0,
        max_attempts=3,
        retry_backoff_seconds=1.0,
        sla_seconds=3600.0,
        poll_seconds=0.01,
    )


@pytest.fixture
def queue(engine: sa.Engine, settings: ServiceSettings, clock: FakeClock) -> RequestQueue:
    return RequestQueue(engine, settings=settings, clock=clock)


def new_request(
    model: str = "m", *ids: str, key: str | None = None, subject: str | None = None
) -> NewRequest:
    """A request for ``ids`` (default one id) with a payload fingerprint of its content."""
    ids = ids or ("s1",)
    return NewRequest(
        model=model,
        mode="exact",
        sample_ids=tuple(ids),
        subject_ids=() if subject is None else (subject,),
        reason="gdpr-art17-1a",
        fingerprint=f"{model}:{','.join(ids)}:{subject}",
        api_key_id="k1",
        idempotency_key=key,
    )


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with dataset ``d`` (60 blobs, 6 subjects) and SISA model ``m``, trained once."""
    import os

    previous = os.environ.get("OBLIVIATE_EXECUTOR")
    os.environ["OBLIVIATE_EXECUTOR"] = "inline"
    root = tmp_path_factory.mktemp("template") / "ws"
    try:
        with Workspace.init(root) as ws:
            ws.register(make_blobs(n=60, subjects=6), dataset="d")
            ws.train(name="m", dataset="d", config=CONFIG)
    finally:
        if previous is None:
            os.environ.pop("OBLIVIATE_EXECUTOR", None)
        else:
            os.environ["OBLIVIATE_EXECUTOR"] = previous
    return root


@pytest.fixture
def ws_path(trained_template: Path, tmp_path: Path) -> Path:
    """A private copy of the trained workspace."""
    target = tmp_path / "ws"
    shutil.copytree(trained_template, target)
    return target


@pytest.fixture
def workspace(ws_path: Path) -> Iterator[Workspace]:
    with Workspace.open(ws_path) as ws:
        yield ws
