"""Fixtures for the data tests: no network, no user configuration, no writes to ~/.cache."""

from __future__ import annotations

from pathlib import Path

import pytest

import obliviate.data.download as download_module
from obliviate.data.catalog import DATA_DIR_ENV


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Makes every data test hermetic.

    The user's OBLIVIATE_DATA_DIR and home cache must not leak in, and a test that reaches
    for the network by mistake must fail loudly rather than hang or pass by luck.
    """
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"a data test tried to open {url}; tests must stay offline")

    monkeypatch.setattr(download_module, "urlopen", no_network)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """An empty data root for tests that build dataset folders."""
    root = tmp_path / "data"
    root.mkdir()
    return root
