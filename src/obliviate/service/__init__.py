"""The unlearning service: an HTTP API and a worker over one workspace.

``create_app(settings)`` builds the FastAPI app (``obliviate serve``); :class:`Worker`
processes the durable request queue (``obliviate worker``). Both share the workspace
database, which holds the queue, the idempotency keys and the hashed API keys.
See ``docs/service.md``.

Monitoring: ``/metrics`` (Prometheus, computed from the database at scrape time),
``deploy/prometheus/obliviate-alerts.yml`` (alerting rules) and ``/dashboard`` (a static page
over the JSON API).

Importing this package needs the ``server`` extra (FastAPI, uvicorn, prometheus-client).
"""

from obliviate.service.app import create_app
from obliviate.service.auth import SCOPES, ApiKey, ApiKeyStore, CreatedKey
from obliviate.service.errors import (
    AuthError,
    IdempotencyConflictError,
    ServiceError,
    UnknownRequestError,
)
from obliviate.service.queue import Lease, NewRequest, RequestQueue, RequestRecord, Submitted
from obliviate.service.served import ModelServer, ServedVersion
from obliviate.service.settings import ServiceSettings
from obliviate.service.stats import QueueStats, QueueSummary
from obliviate.service.worker import BatchOutcome, ResumedRetrain, Worker

__all__ = [
    "SCOPES",
    "ApiKey",
    "ApiKeyStore",
    "AuthError",
    "BatchOutcome",
    "CreatedKey",
    "IdempotencyConflictError",
    "Lease",
    "ModelServer",
    "NewRequest",
    "QueueStats",
    "QueueSummary",
    "RequestQueue",
    "RequestRecord",
    "ResumedRetrain",
    "ServedVersion",
    "ServiceError",
    "ServiceSettings",
    "Submitted",
    "UnknownRequestError",
    "Worker",
    "create_app",
]
