"""Process-wide settings from the environment (``OBLIVIATE_*``) with validated defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Where obliviate keeps things, read from ``OBLIVIATE_*`` environment variables.

    Attributes:
        workspace: default workspace directory for the CLI.
        database_url: SQLAlchemy URL of the provenance registry; ``None`` means the SQLite
            file inside the workspace.
        storage_url: fsspec URL of the checkpoint store; ``None`` means ``<workspace>/checkpoints``.
        data_dir: where dataset files are looked up and downloaded to.
    """

    model_config = SettingsConfigDict(env_prefix="OBLIVIATE_", extra="ignore")

    workspace: Path = Field(default=Path(".obliviate"))
    database_url: str | None = None
    storage_url: str | None = None
    data_dir: Path | None = None
