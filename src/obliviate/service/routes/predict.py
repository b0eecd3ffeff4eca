"""``/v1/predict``: predictions from the served (active, complete) version of a model."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends

from obliviate.errors import DataError
from obliviate.service.auth import ApiKey
from obliviate.service.deps import authorize, field_error, get_state
from obliviate.service.schemas import PredictRequest, PredictResponse
from obliviate.service.state import ServiceState

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["predict"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={
        400: {"description": "The body is not parseable JSON."},
        401: {"description": "Missing, unknown or revoked API key."},
        403: {"description": "The key lacks the 'predict' scope."},
        404: {"description": "Unknown model."},
        409: {"description": "The model has no servable version yet."},
        413: {"description": "Body larger than max_body_bytes."},
        422: {"description": "Invalid body: too many rows, wrong shape, not numbers."},
    },
)
def predict(
    body: PredictRequest,
    state: Annotated[ServiceState, Depends(get_state)],
    _key: Annotated[ApiKey, Depends(authorize("predict"))],
) -> PredictResponse:
    """Predicts with the version active when the request started, pinned for the call."""
    limit = state.settings.max_predict_rows
    if len(body.features) > limit:
        field_error(
            ("body", "features"),
            f"at most {limit} rows per request (max_predict_rows); got {len(body.features)}.",
        )
    try:
        # Numbers beyond float32 become inf here and are refused just below.
        with np.errstate(over="ignore", invalid="ignore"):
            features = np.asarray(body.features, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        field_error(
            ("body", "features"),
            "features must be a list of equally shaped (nested) lists of numbers.",
        )
    if features.ndim < 2 or not np.isfinite(features).all():
        field_error(
            ("body", "features"),
            "features must be a batch (one row per input) of finite numbers.",
        )
    model = state.resolve_model(body.model)
    try:
        prediction = state.models.predict(model, features)
    except DataError as exc:
        field_error(("body", "features"), str(exc))
    state.metrics.predictions.labels(model).inc()
    return PredictResponse(
        model=model,
        version=prediction.version,
        labels=[int(v) for v in prediction.labels],
        probabilities=prediction.probabilities.astype(float).tolist(),
        components_used=prediction.components_used,
        components_total=prediction.components_total,
        degraded=prediction.degraded,
    )
