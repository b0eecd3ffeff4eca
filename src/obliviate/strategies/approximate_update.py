"""Approximate forgetting of a served SISA or Retrain model, component by component.

The strategy's exact path retrains; this path instead runs an approximate unlearning method
(``obliviate.strategies.approximate.METHODS``) on every served component that has seen a
requested sample, using that component's own remaining samples as the retain set. It is
fast and never exact, and the registry says so:

* the samples are marked deleted and their features purged, like an exact forget;
* each updated component gets a child checkpoint whose lineage still contains the forgotten
  samples (their influence was reduced, not removed), so ``verify`` keeps flagging the
  version until an exact forget or retrain replaces it;
* the new version has kind ``"approximate"`` and records the method and its evidence.

A later exact forget of the same model drops every deleted sample its served version still
holds, so it also turns approximately forgotten samples into exactly forgotten ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from obliviate.errors import DataError, NotFittedError, UnknownSampleError
from obliviate.storage import pack_training_state
from obliviate.strategies.base import ForgetResult, Guarantee
from obliviate.strategies.exact.plan import Plan

if TYPE_CHECKING:
    from obliviate.strategies.exact.sisa import SISA

__all__ = ["forget_approximately"]


def forget_approximately(
    strategy: SISA,
    *,
    sample_ids: Sequence[str],
    subject_ids: Sequence[str],
    reason: str,
    method: str,
    method_config: Any = None,
    seed: int = 0,
) -> ForgetResult:
    """Runs ``method`` on each served component that saw a requested sample.

    Raises:
        UnknownNameError: ``method`` is not a registered approximate method.
        UnknownSampleError: some ids or subjects were never registered; nothing changed.
        NotFittedError: the model has no active version.
    """
    from obliviate.strategies.approximate import METHODS, LabelledData

    start = time.perf_counter()
    runner = METHODS.get(method)(method_config)
    context = strategy.context
    prov = context.provenance
    if not sample_ids and not subject_ids:
        raise DataError("forget needs sample_ids or subject_ids; got neither.")
    with strategy.lock:
        current = prov.active_version(context.name)
        if current is None:
            raise NotFittedError(f"model {context.name!r} is not fitted; call fit first.")
        resolution = prov.resolve(
            dataset=context.dataset, sample_ids=list(sample_ids), subject_ids=list(subject_ids)
        )
        if resolution.unknown_ids:
            raise UnknownSampleError(
                f"unknown ids for dataset {context.dataset!r}: "
                f"{list(resolution.unknown_ids)[:5]}; nothing was deleted."
            )
        pks = np.asarray(resolution.active_pks, dtype=np.int64)
        active = prov.samples(dataset=context.dataset, status="active")
        plan = Plan.load(context.model_dir)
        targets = _components_to_update(strategy, plan, pks, current.components)
        if len(pks) == 0 or not targets:
            return _unchanged(strategy, current.number, resolution, pks, reason, start)
        # Read everything the method needs before the samples are marked deleted and purged.
        jobs = []
        for component, (checkpoint_id, shard) in sorted(targets.items()):
            data = strategy.shard_data(plan, shard, active)
            forgotten = np.isin(data.pks, pks)
            model = strategy.component_model(checkpoint_id, component)
            jobs.append((component, checkpoint_id, model, data, forgotten))
        deletion = prov.begin_deletion(
            dataset=context.dataset,
            sample_pks=pks,
            model=context.name,
            reason=reason,
            from_version=current.number,
            details={"guarantee": "approximate", "method": method},
        )
        components: dict[str, str | None] = dict(current.components)
        evidence: dict[str, float] = {}
        passes = 0
        try:
            for component, checkpoint_id, model, data, forgotten in jobs:
                features = torch.from_numpy(np.ascontiguousarray(data.features))
                labels = torch.from_numpy(np.ascontiguousarray(data.labels))
                keep = torch.from_numpy(~forgotten)
                result = runner.unlearn(
                    model=model,
                    forget=LabelledData(features[~keep], labels[~keep]),
                    retain=LabelledData(features[keep], labels[keep]),
                    num_classes=prov.dataset(context.dataset).num_classes,
                    seed=seed,
                )
                passes += result.sample_passes
                for key, value in result.evidence.items():
                    evidence[f"{component}.{key}"] = float(value)
                components[component] = _store_update(
                    strategy, component, checkpoint_id, result.model, method, result.evidence
                )
            version = prov.create_version(
                model=context.name,
                components=components,
                kind="approximate",
                details={
                    "aggregation": strategy.config.aggregation,
                    "method": method,
                    "evidence": evidence,
                },
                parent_version=current.number,
                activate=True,
            )
        except BaseException:
            prov.update_deletion(deletion.id, status="failed")
            raise
        prov.update_deletion(deletion.id, status="completed", to_version=version.number)
        strategy.purge_features(pks)
    seconds = time.perf_counter() - start
    return ForgetResult(
        model=context.name,
        guarantee=Guarantee.APPROXIMATE,
        deletion_id=deletion.id,
        forgotten_sample_ids=tuple(resolution.active_ids),
        already_deleted_ids=tuple(resolution.already_deleted_ids),
        noop=False,
        version_before=current.number,
        rolled_back_version=None,
        version=version.number,
        affected_components=tuple(sorted(targets)),
        earliest_slices={},
        samples_retrained=0,
        sample_passes=passes,
        rollback_seconds=seconds,
        seconds=seconds,
        evidence=evidence,
        method=method,
    )


def _components_to_update(
    strategy: SISA,
    plan: Plan,
    pks: np.ndarray[Any, np.dtype[np.int64]],
    served: Mapping[str, str | None],
) -> dict[str, tuple[str, int]]:
    """Served components (name -> (checkpoint id, shard)) that hold a requested sample.

    A shard's checkpoint at slice ``k`` has seen every sample of its slices ``0..k``.
    """
    from obliviate.strategies.exact.sisa import component_name

    pos = plan.lookup(pks)
    hit = pos[pos >= 0]
    first: dict[int, int] = {}
    for shard, slice_ in zip(plan.shard[hit].tolist(), plan.slice[hit].tolist(), strict=True):
        first[shard] = min(first.get(shard, slice_), slice_)
    found: dict[str, tuple[str, int]] = {}
    for shard, slice_ in sorted(first.items()):
        name = component_name(shard)
        checkpoint_id = served.get(name)
        if checkpoint_id is None:
            continue
        record = strategy.context.provenance.checkpoint(checkpoint_id)
        if int(record.meta["slice"]) >= slice_:
            found[name] = (checkpoint_id, shard)
    return found


def _store_update(
    strategy: SISA,
    component: str,
    parent_id: str,
    model: torch.nn.Module,
    method: str,
    evidence: Mapping[str, float],
) -> str:
    """Stores the updated module as a child of ``parent_id`` with the same lineage."""
    context = strategy.context
    parent = context.provenance.checkpoint(parent_id)
    extra = {
        "model": context.name,
        "component": component,
        "slice": int(parent.meta["slice"]),
        "lineage_hash": parent.lineage_hash,
        "approximate": method,
        "parent": parent_id,
    }
    tensors, meta = pack_training_state(
        model=model, optimizer=None, scheduler=None, rng_state=None, extra=extra
    )
    ref = context.store.put(tensors=tensors, meta=meta)
    record = context.provenance.record_checkpoint(
        model=context.name,
        component=component,
        checkpoint_id=ref.checkpoint_id,
        storage_url=ref.url,
        parent_id=parent_id,
        lineage_hash=parent.lineage_hash,
        new_sample_pks=np.empty(0, dtype=np.int64),
        num_samples_seen=parent.num_samples_seen,
        meta={
            **dict(parent.meta),
            "approximate": method,
            "evidence": {k: float(v) for k, v in evidence.items()},
        },
    )
    return record.checkpoint_id


def _unchanged(
    strategy: SISA,
    version: int,
    resolution: Any,
    pks: np.ndarray[Any, np.dtype[np.int64]],
    reason: str,
    start: float,
) -> ForgetResult:
    """No served component holds the samples: mark them deleted and leave the model."""
    context = strategy.context
    deletion_id = None
    if len(pks):
        deletion = context.provenance.begin_deletion(
            dataset=context.dataset,
            sample_pks=pks,
            model=context.name,
            reason=reason,
            from_version=version,
        )
        deletion_id = deletion.id
        context.provenance.update_deletion(deletion_id, status="noop")
        strategy.purge_features(pks)
    return ForgetResult.unchanged(
        model=context.name,
        guarantee=Guarantee.APPROXIMATE,
        deletion_id=deletion_id,
        already_deleted_ids=tuple(resolution.already_deleted_ids),
        version=version,
        seconds=time.perf_counter() - start,
    )
