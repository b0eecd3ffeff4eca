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
    them (the check ``Workspace.verify`` makes). When that version is a rolled-back one,
    a forget of that model may be retraining right now (or crashed doing so) on a sample
    table read before these samples were deleted, so what the version it was rolled back
    from held counts too; at worst the follow-up is a no-op. Follow-ups get none of
    their own.
    """
    parents = [r for r in requests if r.parent_id is None]
    if not parents:
        return {}
    prov = workspace.provenance
    dataset = strategy.context.dataset
    holding: dict[str, set[str]] = {}
    for record in prov.models():
        if record.dataset != dataset or record.name == strategy.context.name:
            continue
        active = prov.active_version(record.name)
        if active is None:
            continue
        numbers = [active.number]
        if active.kind == "rolled_back" and active.parent_version is not None:
            numbers.append(active.parent_version)
        seen = {
            sample
            for number in numbers
            for sample in prov.verify_version(model=record.name, number=number).deleted_seen
        }
        if seen:
            holding[record.name] = seen
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
