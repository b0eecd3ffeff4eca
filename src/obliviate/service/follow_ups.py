"""Follow-ups: after a deletion, every other model of the dataset must forget it too.

Deletion is recorded per dataset, so once a request's samples are deleted in the registry,
any other model trained on that dataset whose served version still holds some of them
serves deleted data until it forgets them. The worker asks :func:`follow_ups_for` which
follow-up requests to enqueue with each completion (see :mod:`obliviate.service.worker`).
"""

from __future__ import annotations

from collections.abc import Sequence

from obliviate.service.queue import NewRequest, RequestRecord
from obliviate.strategies.base import Strategy
from obliviate.workspace import Workspace

__all__ = ["follow_ups_for"]


def follow_ups_for(
    workspace: Workspace, strategy: Strategy, requests: Sequence[RequestRecord]
) -> dict[str, list[NewRequest]]:
    """Per request id, the follow-ups for other models still holding what it deleted.

    Called once the forget is done, so the requests' samples are deleted in the
    registry: a model needs a follow-up when its active version's lineage holds some of
    them (``Workspace.models_holding_deleted``). When that version is a rolled-back one, a
    forget of that model may be retraining right now on a sample table read before these
    samples were deleted, so what the version it was rolled back from held counts too; at
    worst the follow-up is a no-op. Follow-ups get none of their own.
    """
    parents = [r for r in requests if r.parent_id is None]
    if not parents:
        return {}
    prov = workspace.provenance
    dataset = strategy.context.dataset
    holding = workspace.models_holding_deleted(
        dataset=dataset, exclude=strategy.context.name, while_retraining=True
    )
    if not holding:
        return {}
    follow_ups: dict[str, list[NewRequest]] = {}
    for request in parents:
        deleted = set(
            prov.resolve(
                dataset=dataset,
                sample_ids=list(request.sample_ids),
                subject_ids=list(request.subject_ids),
            ).already_deleted_ids
        )
        follow_ups[request.id] = [
            NewRequest.follow_up(request, model=name, sample_ids=sorted(seen & deleted))
            for name, seen in sorted(holding.items())
            if seen & deleted
        ]
    return follow_ups
