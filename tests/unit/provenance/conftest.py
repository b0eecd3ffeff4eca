"""Fixtures for the provenance tests: every registry test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from obliviate.provenance import Provenance


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def prov(db_url: str) -> Iterator[Provenance]:
    """A migrated registry, closed (engine disposed) after the test."""
    registry = Provenance.connect(db_url)
    try:
        yield registry
    finally:
        registry.close()
