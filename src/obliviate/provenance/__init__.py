"""Provenance registry: which samples exist, and which checkpoints and versions saw them.

The registry is what makes deletions plannable and verifiable (invariant 2: lineage is
recorded, not inferred). :class:`Provenance` is the front door; everything it returns is a
frozen record from :mod:`obliviate.provenance.records`. The schema lives in
:mod:`obliviate.provenance.schema` and is created by the packaged Alembic migrations, which
:meth:`Provenance.connect` runs on open.

Example:
    >>> from obliviate.provenance import Provenance
    >>> with Provenance.connect("sqlite:///registry.db") as prov:  # doctest: +SKIP
    ...     prov.register_samples(dataset="digits", samples=samples, chunk="chunk-0")
"""

from obliviate.provenance.engine import create_engine
from obliviate.provenance.migrate import current_revision, head_revision, upgrade
from obliviate.provenance.records import (
    CheckpointRecord,
    DatasetRecord,
    DeletionRecord,
    ModelRecord,
    Resolution,
    SampleTable,
    VerifyReport,
    VersionRecord,
)
from obliviate.provenance.registry import Provenance
from obliviate.provenance.versions import version_content_hash

__all__ = [
    "CheckpointRecord",
    "DatasetRecord",
    "DeletionRecord",
    "ModelRecord",
    "Provenance",
    "Resolution",
    "SampleTable",
    "VerifyReport",
    "VersionRecord",
    "create_engine",
    "current_revision",
    "head_revision",
    "upgrade",
    "version_content_hash",
]
