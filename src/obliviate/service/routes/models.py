"""``/v1/models``: which models exist, which version each serves, and their history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from obliviate.provenance import VersionRecord
from obliviate.service._util import iso
from obliviate.service.auth import ApiKey
from obliviate.service.deps import authorize, get_state
from obliviate.service.schemas import NAME_PATTERN, ModelInfo, ModelList, VersionInfo
from obliviate.service.state import ServiceState

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["models"])
State = Annotated[ServiceState, Depends(get_state)]
AnyKey = Annotated[ApiKey, Depends(authorize(None))]
_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Missing, unknown or revoked API key."},
    404: {"description": "Unknown model or version."},
}


def _version(record: VersionRecord) -> VersionInfo:
    return VersionInfo(
        number=record.number,
        kind=record.kind,
        status=record.status,
        content_hash=record.content_hash,
        parent_version=record.parent_version,
        created_at=iso(record.created_at.timestamp()),
        activated_at=None if record.activated_at is None else iso(record.activated_at.timestamp()),
        components=dict(record.components),
    )


def _info(state: ServiceState, name: str, *, versions: bool) -> ModelInfo:
    prov = state.workspace.provenance
    record = prov.model(name)
    active = prov.active_version(name)
    return ModelInfo(
        name=record.name,
        strategy=record.strategy,
        dataset=record.dataset,
        active_version=None if active is None else active.number,
        versions=[_version(v) for v in prov.versions(name)] if versions else None,
    )


@router.get("", response_model=ModelList, responses=_ERRORS)
def list_models(state: State, _key: AnyKey) -> ModelList:
    """Every model with the version it serves."""
    names = [m.name for m in state.workspace.provenance.models()]
    return ModelList(models=[_info(state, n, versions=False) for n in names])


@router.get("/{name}", response_model=ModelInfo, responses=_ERRORS)
def get_model(
    name: Annotated[str, Path(pattern=NAME_PATTERN)], state: State, _key: AnyKey
) -> ModelInfo:
    """One model with all its versions."""
    return _info(state, name, versions=True)


@router.get("/{name}/versions/{number}", response_model=VersionInfo, responses=_ERRORS)
def get_version(
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    number: Annotated[int, Path(ge=1, le=2**31 - 1)],
    state: State,
    _key: AnyKey,
) -> VersionInfo:
    """One version: its kind, status, content hash and component checkpoints."""
    return _version(state.workspace.provenance.version(model=name, number=number))
