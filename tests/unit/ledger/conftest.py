"""A fresh ledger in a temporary SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from obliviate.ledger import Ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'registry.db'}", directory=tmp_path / "ledger")
    try:
        yield opened
    finally:
        opened.close()


def events(n: int, *, start: int = 0) -> list[dict[str, object]]:
    """``n`` small distinct audit events."""
    return [
        {"type": "plan", "v": 1, "request_id": f"r{i}", "model": "m", "time": "t", "n": i}
        for i in range(start, start + n)
    ]
