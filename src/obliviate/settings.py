"""Process-wide settings from the environment (``OBLIVIATE_*``) with validated defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
        executor: where training tasks run: ``"process"`` (a local process pool, the
            default), ``"inline"`` (in the calling process) or ``"ray"``. It never changes
            results, only where the work happens.
        executor_workers: processes in the local pool; ``None`` means one per core.
        threads_per_worker: torch threads in each worker process or Ray task.
        ray_address: ``"auto"`` or ``"ray://host:port"`` for a cluster, ``"local"`` for a
            private instance; required with ``executor="ray"``.
    """

    model_config = SettingsConfigDict(env_prefix="OBLIVIATE_", extra="ignore")

    workspace: Path = Field(default=Path(".obliviate"))
    database_url: str | None = None
    storage_url: str | None = None
    data_dir: Path | None = None
    executor: Literal["inline", "process", "ray"] = "process"
    executor_workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    ray_address: str | None = None
