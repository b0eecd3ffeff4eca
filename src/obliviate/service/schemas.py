"""The HTTP API's request and response bodies (pydantic v2; they make the OpenAPI document).

Inputs reject unknown fields, so a typo is a 422 naming the field instead of being ignored.
Status URLs carry only random request ids, never sample or subject ids.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ComponentProgress",
    "ErrorBody",
    "GoldStandardInfo",
    "Health",
    "ModelInfo",
    "ModelList",
    "PredictRequest",
    "PredictResponse",
    "QueueSummaryBody",
    "RetrainInfo",
    "UnlearnAccepted",
    "UnlearnList",
    "UnlearnRequest",
    "UnlearnStatus",
    "VersionInfo",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
REASON_PATTERN = r"^[a-z0-9][a-z0-9:._()-]{0,63}$"
#: A hard ceiling for the schema; the configured ``max_ids_per_request`` is usually lower.
SCHEMA_MAX_IDS = 100_000

Identifier = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnlearnRequest(_Strict):
    """``POST /v1/unlearn``: forget samples, or everything of one data subject."""

    model: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="Model to forget from; may be left out when the workspace has one model.",
    )
    sample_ids: list[Identifier] = Field(
        default_factory=list, max_length=SCHEMA_MAX_IDS, description="Sample ids to forget."
    )
    subject_id: Identifier | None = Field(
        default=None, description="A data subject whose samples are all forgotten."
    )
    reason: str = Field(
        pattern=REASON_PATTERN,
        description=(
            "The legal ground as a short code, e.g. 'gdpr-art17-1a' or 'ccpa-1798.105'. "
            "Free text belongs in 'note'."
        ),
    )
    mode: Literal["exact", "approximate"] = Field(
        default="exact",
        description="'exact' retrains (bit-for-bit guarantee); 'approximate' runs 'method'.",
    )
    method: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]{1,64}$",
        description="Approximate unlearning method (required with mode 'approximate').",
    )
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> UnlearnRequest:
        if not self.sample_ids and self.subject_id is None:
            raise ValueError("give sample_ids or subject_id (or both); got neither.")
        if self.mode == "approximate" and self.method is None:
            raise ValueError("method is required when mode is 'approximate'.")
        if self.mode == "exact" and self.method is not None:
            raise ValueError("method is only allowed with mode 'approximate'.")
        return self


class UnlearnAccepted(BaseModel):
    """The 202 body: the request is durably queued."""

    id: str
    status: str
    model: str
    created_at: str
    deadline: str
    location: str
    replayed: bool = Field(description="True when an Idempotency-Key replayed an earlier 202.")


class ComponentProgress(BaseModel):
    """How far one component (e.g. a shard) is."""

    component: str
    state: str


class UnlearnStatus(BaseModel):
    """``GET /v1/unlearn/{id}``."""

    id: str
    model: str
    status: Literal["queued", "running", "completed", "denied", "dead"]
    mode: str
    method: str | None
    reason: str
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    deadline: str
    sla_met: bool | None = Field(description="Finished by the deadline (null while open).")
    stage: str | None
    progress: list[ComponentProgress]
    result: dict[str, Any] | None
    error: str | None
    receipt: str | None = Field(description="The receipt's URL, once the request completed.")
    parent_id: str | None = Field(
        default=None,
        description=(
            "For a follow-up: the request whose completion enqueued it (another model of "
            "the same dataset still held samples that request deleted). Null otherwise."
        ),
    )
    follow_ups: list[str] = Field(
        default_factory=list,
        description=(
            "Follow-up requests this request's completion enqueued, one per other model of "
            "the dataset that still held some of its samples (the result names the models)."
        ),
    )


class PredictRequest(_Strict):
    """``POST /v1/predict``: class predictions from the served version of a model."""

    model: str | None = Field(default=None, pattern=NAME_PATTERN)
    features: list[Any] = Field(
        min_length=1,
        description="A batch of inputs: one (nested) list of numbers per row.",
    )


class PredictResponse(BaseModel):
    """The answer and the exact model version that gave it."""

    model: str
    version: int
    labels: list[int]
    probabilities: list[list[float]]
    components_used: int
    components_total: int
    degraded: bool


class VersionInfo(BaseModel):
    """One model version."""

    number: int
    kind: str
    status: str
    content_hash: str
    parent_version: int | None
    created_at: str | None
    activated_at: str | None
    components: dict[str, str | None]


class ModelInfo(BaseModel):
    """One model and its served version."""

    name: str
    strategy: str
    dataset: str
    active_version: int | None
    versions: list[VersionInfo] | None = None


class ModelList(BaseModel):
    """``GET /v1/models``."""

    models: list[ModelInfo]


class Health(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok", "unavailable"]
    database: str
    queue: dict[str, int]


class ErrorBody(BaseModel):
    """Every non-validation error: what went wrong and what to do."""

    detail: str


class UnlearnList(BaseModel):
    """``GET /v1/unlearn``: recent requests, newest first."""

    requests: list[UnlearnStatus]


class RetrainInfo(BaseModel):
    """One finished retrain (a coalesced batch), for latency charts."""

    request_id: str = Field(description="The batch's lead request (its receipt's id).")
    model: str
    finished_at: str
    batch_size: int
    retrain_seconds: float
    shards_retrained: int
    completion_seconds: float = Field(description="Acceptance to completion of the lead.")


class GoldStandardInfo(BaseModel):
    """The latest gold-standard audit of one model."""

    ok: bool
    recorded_at: str
    served_version: int | None


class QueueSummaryBody(BaseModel):
    """``GET /v1/queue/summary``: the queue now, recent retrains, audit outcomes."""

    generated_at: str
    counts: dict[str, int] = Field(description="Requests by state.")
    by_model: dict[str, dict[str, int]]
    oldest_unfinished_age_seconds: float | None
    oldest_unfinished_deadline: str | None
    past_deadline: int
    max_sla_fraction: float = Field(description="Largest SLA share used by an open request.")
    retrying: int
    leases_held: int
    recent_retrains: list[RetrainInfo]
    gold_standard: dict[str, GoldStandardInfo]
