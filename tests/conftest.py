"""Shared fixtures: deterministic torch, the shared datasets folder, and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic_torch() -> Iterator[None]:
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _inline_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    # The project default is a process pool; tests train in-process unless they choose an
    # executor (or OBLIVIATE_EXECUTOR is set), which keeps the suite fast on small machines.
    if "OBLIVIATE_EXECUTOR" not in os.environ:
        monkeypatch.setenv("OBLIVIATE_EXECUTOR", "inline")


@pytest.fixture
def shared_data() -> Path:
    """The real datasets folder (../shared/data); skips with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL with a fresh schema, dropped afterwards.

    Runs only when OBLIVIATE_TEST_POSTGRES_URL is set (CI sets it); otherwise the test is
    skipped with that reason shown in the summary.
    """
    base = os.environ.get("OBLIVIATE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("OBLIVIATE_TEST_POSTGRES_URL is not set; PostgreSQL tests skipped")
    import sqlalchemy as sa

    schema = f"obliviate_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
