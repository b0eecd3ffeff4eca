"""An online random-subset ensemble: K models over data that arrives in chunks.

Each member trains on a seeded random subset of every chunk (a bagging-style ensemble, as
in random-subset / "subsample and aggregate" training; the system this follows trained five
ResNet-18s on CIFAR-10 chunks and beat one larger model). ``add_data`` continues every
member on the next chunk; a checkpoint after each chunk records the exact samples the
member saw.

Forgetting is exact. Every member that saw a deleted sample is marked invalid at once (the
served version excludes it, predictions say they are degraded), then replaced by a member
retrained over the chunk sequence without the deleted samples: it resumes from its last
checkpoint before the first chunk holding one of them, with optimiser and RNG state, so
the replacement equals a member that never saw them, bit for bit. Subset membership and
data order are keyed hashes of sample ids, so survivors keep their places.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate._hashing import derive_seed, id_hash64, sha256_hex, sha256_of_ids
from obliviate.data.sample_set import SampleSet
from obliviate.errors import (
    ConfigError,
    DataError,
    NotFittedError,
    UnknownSampleError,
)
from obliviate.models import build_model, resolve_factory
from obliviate.provenance import CheckpointRecord, SampleTable, VersionRecord
from obliviate.storage import pack_training_state, unpack_training_state
from obliviate.strategies._locks import model_lock
from obliviate.strategies.base import (
    STRATEGIES,
    FitResult,
    ForgetResult,
    Guarantee,
    ModelContext,
    ModelFactory,
    Prediction,
    Strategy,
)
from obliviate.strategies.exact.ensemble_config import EnsembleConfig
from obliviate.training import (
    deterministic,
    make_optimizer,
    make_scheduler,
    train_epochs,
)

__all__ = ["OnlineEnsemble", "TooFewModelsError", "member_name", "membership"]

_PREDICT_BATCH = 512


class TooFewModelsError(NotFittedError):
    """Fewer valid members than ``min_valid`` remain (the rest are retraining)."""


def member_name(k: int) -> str:
    """The provenance component name of member ``k``."""
    return f"member-{k}"


def membership(
    sample_ids: npt.NDArray[np.str_], *, member: int, fraction: float, seed: int
) -> npt.NDArray[np.bool_]:
    """Whether each sample is in ``member``'s subset: a keyed hash below ``fraction``."""
    if fraction >= 1:
        return np.ones(len(sample_ids), dtype=bool)
    threshold = np.uint64(int(fraction * 2.0**64))
    return id_hash64(sample_ids, f"{seed}:member:{member}") < threshold


@dataclass(frozen=True)
class _Chunks:
    """The samples of each chunk (primary keys), in arrival order."""

    pks: list[npt.NDArray[np.int64]]

    def chunk_of(self, pks: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        out = np.full(len(pks), -1, dtype=np.int64)
        for index, members in enumerate(self.pks):
            out[np.isin(pks, members)] = index
        return out


@STRATEGIES.register("ensemble")
class OnlineEnsemble(Strategy):
    """Exact unlearning for an ensemble trained online on random subsets of data chunks."""

    name: ClassVar[str] = "ensemble"
    guarantee: ClassVar[Guarantee] = Guarantee.EXACT
    config_class: ClassVar[type[Any]] = EnsembleConfig
    config: EnsembleConfig

    def __init__(
        self,
        config: EnsembleConfig,
        *,
        context: ModelContext,
        model_factory: ModelFactory | None = None,
    ) -> None:
        if not isinstance(config, EnsembleConfig):
            raise ConfigError(f"OnlineEnsemble needs an EnsembleConfig; got {type(config)}.")
        super().__init__(config, context=context, model_factory=model_factory)
        self._models: dict[str, nn.Module] = {}
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="obliviate-ens")
        self._lock = model_lock(context.provenance.engine.url, context.name)

    # ------------------------------------------------------------------------ chunks
    def _chunks(self) -> _Chunks:
        files = sorted(self.context.model_dir.glob("chunk-*.npy"))
        return _Chunks(pks=[np.load(f).astype(np.int64) for f in files])

    def _save_chunk(self, index: int, pks: npt.NDArray[np.int64]) -> None:
        directory = self.context.model_dir
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".tmp-chunk-{index:04d}.npy"
        np.save(tmp, np.sort(pks).astype(np.int64))
        tmp.replace(directory / f"chunk-{index:04d}.npy")

    # ---------------------------------------------------------------------- training
    def _build(self, component: str) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.config.seed, "init", component))
            if self.model_factory is not None:
                return self.model_factory()
            if ":" in self.config.model:
                return resolve_factory(self.config.model)()
            dataset = self.context.provenance.dataset(self.context.dataset)
            return build_model(
                self.config.model,
                input_shape=tuple(dataset.feature_shape),
                num_classes=dataset.num_classes,
                **dict(self.config.model_options),
            )

    def _stage_rows(
        self, table: SampleTable, chunks: _Chunks, member: int, stage: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Rows of ``table`` the member trains on at ``stage``, and the chunk-``stage`` pks."""
        first = 0 if self.config.replay else stage
        wanted = np.concatenate(chunks.pks[first : stage + 1])
        rows = np.flatnonzero(np.isin(table.pk, wanted))
        keep = membership(
            table.sample_ids[rows],
            member=member,
            fraction=self.config.subset_fraction,
            seed=self.config.seed,
        )
        rows = rows[keep]
        new = table.pk[rows[np.isin(table.pk[rows], chunks.pks[stage])]]
        return rows, new

    def _train_member(
        self,
        member: int,
        *,
        base: CheckpointRecord | None,
        chunks: _Chunks,
        table: SampleTable,
    ) -> tuple[CheckpointRecord, int, int]:
        """Trains ``member`` from ``base`` (or scratch) through the last chunk."""
        component = member_name(member)
        train = self.config.train
        model = self._build(component)
        optimizer = make_optimizer(train, model)
        if base is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.config.seed, "train", component))
                rng = torch.get_rng_state()
            lineage = sha256_hex("root", self.config.config_hash(), component)
            start, seen = 0, 0
        else:
            stored = self.context.store.get(base.checkpoint_id)
            restored = unpack_training_state(
                stored.tensors, stored.meta, model=model, optimizer=optimizer
            )
            rng = restored if restored is not None else torch.get_rng_state()
            lineage, start, seen = (
                base.lineage_hash,
                int(base.meta["chunk"]) + 1,
                base.num_samples_seen,
            )
        parent, passes, samples = base, 0, set()
        order_seed = derive_seed(self.config.seed, "order", component)
        for stage in range(start, len(chunks.pks)):
            rows, new = self._stage_rows(table, chunks, member, stage)
            keys = id_hash64(table.sample_ids[rows], f"{self.config.seed}:order")
            rows = rows[np.argsort(keys, kind="stable")]
            keys = np.sort(keys, kind="stable")
            features = (
                self.context.features.read(
                    self.context.dataset, table.chunks[rows], table.rows[rows]
                )
                if len(rows)
                else np.empty(
                    (0, *self.context.provenance.dataset(self.context.dataset).feature_shape),
                    np.float32,
                )
            )
            # A cosine schedule restarts at each chunk: data-independent, and the same on resume.
            scheduler = make_scheduler(train, optimizer, total_epochs=train.epochs)
            with torch.random.fork_rng(devices=[]), deterministic():
                torch.set_rng_state(rng)
                stats = train_epochs(
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    features=torch.from_numpy(np.ascontiguousarray(features)),
                    labels=torch.from_numpy(table.labels[rows]),
                    order_keys=keys,
                    config=train,
                    seed=order_seed,
                    first_epoch=stage * train.epochs,
                    epochs=train.epochs,
                )
                rng = torch.get_rng_state()
            passes += stats.sample_passes
            samples.update(table.pk[rows].tolist())
            seen += len(new)
            lineage = sha256_hex(
                lineage,
                f"chunk:{stage}:epochs:{train.epochs}",
                sha256_of_ids(table.sample_ids[rows]),
            )
            tensors, meta = pack_training_state(
                model=model,
                optimizer=optimizer,
                scheduler=None,
                rng_state=rng,
                extra={
                    "model": self.context.name,
                    "component": component,
                    "chunk": stage,
                    "lineage_hash": lineage,
                },
            )
            ref = self.context.store.put(tensors=tensors, meta=meta)
            parent = self.context.provenance.record_checkpoint(
                model=self.context.name,
                component=component,
                checkpoint_id=ref.checkpoint_id,
                storage_url=ref.url,
                parent_id=None if parent is None else parent.checkpoint_id,
                lineage_hash=lineage,
                new_sample_pks=np.sort(new),
                num_samples_seen=seen,
                meta={"chunk": stage},
            )
        if parent is None:
            raise NotFittedError(f"{component} has no chunk to train on.")
        self._models[parent.checkpoint_id] = model.eval()
        return parent, passes, len(samples)

    def _train_members(
        self, bases: dict[int, CheckpointRecord | None], *, kind: str, parent: int | None
    ) -> tuple[VersionRecord, int, int]:
        """Brings every member in ``bases`` up to the last chunk and activates a version."""
        prov = self.context.provenance
        chunks = self._chunks()
        table = prov.samples(dataset=self.context.dataset, status="active")
        current = None if parent is None else prov.version(model=self.context.name, number=parent)
        components: dict[str, str | None] = (
            {member_name(k): None for k in range(self.config.members)}
            if current is None
            else dict(current.components)
        )
        passes = samples = 0
        for done, (member, base) in enumerate(sorted(bases.items(), key=lambda kv: kv[0])):
            record, p, s = self._train_member(member, base=base, chunks=chunks, table=table)
            components[member_name(member)] = record.checkpoint_id
            passes += p
            samples += s
            self.report(kind, done + 1, len(bases), member_name(member))
        version = prov.create_version(
            model=self.context.name,
            components=components,
            kind=kind,
            details={"aggregation": "mean_prob", "chunks": len(chunks.pks)},
            parent_version=parent,
            activate=True,
        )
        return version, passes, samples

    # --------------------------------------------------------------------- fit / add
    def fit(self, *, sample_ids: Sequence[str] | None = None) -> FitResult:
        """Trains every member on the first chunk: the active samples (or ``sample_ids``)."""
        start = time.perf_counter()
        with self._lock:
            if self._chunks().pks:
                raise ConfigError(
                    f"model {self.context.name!r} is already fitted; use add_data for new chunks."
                )
            pks = self._resolve_new(sample_ids, exclude=np.empty(0, np.int64))
            self._save_chunk(0, pks)
            version, passes, _ = self._train_members(
                {k: None for k in range(self.config.members)}, kind="trained", parent=None
            )
        return FitResult(
            model=self.context.name,
            version=version.number,
            components=tuple(version.components),
            samples=len(pks),
            sample_passes=passes,
            seconds=time.perf_counter() - start,
        )

    def add_data(
        self, *, samples: SampleSet | None = None, sample_ids: Sequence[str] | None = None
    ) -> FitResult:
        """Continues every member on a new chunk.

        Args:
            samples: a new chunk to register in the model's dataset and train on.
            sample_ids: already registered samples forming the chunk; by default every
                active sample no chunk holds yet.
        """
        start = time.perf_counter()
        with self._lock:
            chunks = self._chunks()
            if not chunks.pks:
                raise NotFittedError(f"model {self.context.name!r} is not fitted; call fit first.")
            if samples is not None:
                if sample_ids is not None:
                    raise ConfigError("pass samples or sample_ids to add_data, not both.")
                self._register(samples)
                sample_ids = list(samples.sample_ids)
            pks = self._resolve_new(sample_ids, exclude=np.concatenate(chunks.pks))
            current = self.context.provenance.active_version(self.context.name)
            if current is None:
                raise NotFittedError(f"model {self.context.name!r} has no active version.")
            bases = self._heads(current)
            self._save_chunk(len(chunks.pks), pks)
            version, passes, _ = self._train_members(bases, kind="extended", parent=current.number)
        return FitResult(
            model=self.context.name,
            version=version.number,
            components=tuple(version.components),
            samples=len(pks),
            sample_passes=passes,
            seconds=time.perf_counter() - start,
        )

    add = add_data

    def _register(self, samples: SampleSet) -> None:
        features = self.context.features
        chunk = features.write_chunk(self.context.dataset, samples.features)
        try:
            self.context.provenance.register_samples(
                dataset=self.context.dataset, samples=samples, chunk=chunk
            )
        except BaseException:
            features.remove_chunk(self.context.dataset, chunk)
            raise

    def _resolve_new(
        self, sample_ids: Sequence[str] | None, *, exclude: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        prov = self.context.provenance
        if sample_ids is None:
            active = prov.samples(dataset=self.context.dataset, status="active")
            pks = active.pk[~np.isin(active.pk, exclude)]
        else:
            resolution = prov.resolve(dataset=self.context.dataset, sample_ids=list(sample_ids))
            bad = list(resolution.unknown_ids) + list(resolution.already_deleted_ids)
            if bad:
                raise UnknownSampleError(f"cannot train on unknown or deleted ids: {bad[:5]}.")
            pks = np.asarray(resolution.active_pks, dtype=np.int64)
            if np.isin(pks, exclude).any():
                raise DataError("some samples already belong to an earlier chunk.")
        if len(pks) == 0:
            raise DataError(
                f"no new samples for model {self.context.name!r}; register a chunk first."
            )
        return np.sort(pks)

    def _heads(self, version: VersionRecord) -> dict[int, CheckpointRecord | None]:
        prov = self.context.provenance
        return {
            k: None if (c := version.components.get(member_name(k))) is None else prov.checkpoint(c)
            for k in range(self.config.members)
        }

    # ------------------------------------------------------------------------ forget
    def _forget(
        self,
        *,
        sample_ids: Sequence[str],
        subject_ids: Sequence[str],
        reason: str,
        background: bool,
    ) -> ForgetResult:
        """Invalidates every member that saw the samples, then retrains replacements."""
        start = time.perf_counter()
        prov = self.context.provenance
        if not sample_ids and not subject_ids:
            raise DataError("forget needs sample_ids or subject_ids; got neither.")
        self._lock.acquire()
        handed_off = False
        try:
            current = prov.active_version(self.context.name)
            if current is None:
                raise NotFittedError(f"model {self.context.name!r} is not fitted; call fit first.")
            resolution = prov.resolve(
                dataset=self.context.dataset,
                sample_ids=list(sample_ids),
                subject_ids=list(subject_ids),
            )
            self._require_known(resolution)
            new_pks = np.asarray(resolution.active_pks, dtype=np.int64)
            deletion_id = None
            if len(new_pks):
                deletion_id = prov.begin_deletion(
                    dataset=self.context.dataset,
                    sample_pks=new_pks,
                    model=self.context.name,
                    reason=reason,
                    from_version=current.number,
                ).id
                self._purge_features(new_pks)
            report = prov.verify_version(model=self.context.name, number=current.number)
            bases = self._clean_bases(current, report.components_with_deleted)
            outcome = ForgetResult(
                model=self.context.name,
                guarantee=Guarantee.EXACT,
                deletion_id=deletion_id,
                forgotten_sample_ids=tuple(report.deleted_seen),
                already_deleted_ids=tuple(resolution.already_deleted_ids),
                noop=not bases,
                version_before=current.number,
                rolled_back_version=None,
                version=current.number if not bases else None,
                affected_components=tuple(sorted(member_name(k) for k in bases)),
                earliest_slices={
                    member_name(k): 0 if b is None else int(b.meta["chunk"]) + 1
                    for k, b in sorted(bases.items())
                },
                samples_retrained=0,
                sample_passes=0,
                rollback_seconds=0.0,
                seconds=0.0,
            )
            if not bases:
                if deletion_id is not None:
                    prov.update_deletion(deletion_id, status="noop")
                elapsed = time.perf_counter() - start
                return replace(outcome, rollback_seconds=elapsed, seconds=elapsed)
            components = dict(current.components)
            for k in bases:
                components[member_name(k)] = None
            rolled = prov.create_version(
                model=self.context.name,
                components=components,
                kind="rolled_back",
                details={"aggregation": "mean_prob", "chunks": len(self._chunks().pks)},
                parent_version=current.number,
                activate=True,
            )
            if deletion_id is not None:
                prov.update_deletion(
                    deletion_id, status="rolled_back", rolled_back_version=rolled.number
                )
            elapsed = time.perf_counter() - start
            outcome = replace(
                outcome,
                rolled_back_version=rolled.number,
                rollback_seconds=elapsed,
                seconds=elapsed,
            )

            def finish() -> ForgetResult:
                try:
                    version, passes, samples = self._train_members(
                        bases, kind="retrained", parent=rolled.number
                    )
                    if deletion_id is not None:
                        prov.update_deletion(
                            deletion_id, status="completed", to_version=version.number
                        )
                except BaseException:
                    if deletion_id is not None:
                        prov.update_deletion(deletion_id, status="failed")
                    raise
                finally:
                    self._lock.release()
                return replace(
                    outcome,
                    version=version.number,
                    samples_retrained=samples,
                    sample_passes=passes,
                    seconds=time.perf_counter() - start,
                )

            handed_off = True
            if background or self.config.retrain == "background":
                future: Future[ForgetResult] = self._background.submit(finish)
                return replace(outcome, pending=future)
        finally:
            if not handed_off:
                self._lock.release()
        return finish()

    def _clean_bases(
        self, version: VersionRecord, tainted: dict[str, list[str]]
    ) -> dict[int, CheckpointRecord | None]:
        """Per invalid member: its deepest checkpoint before the first chunk it must redo.

        A member with no head (a retrain that failed) is retrained from scratch.
        """
        prov = self.context.provenance
        chunks = self._chunks()
        table = prov.samples(dataset=self.context.dataset, status=None)
        bases: dict[int, CheckpointRecord | None] = {}
        for k in range(self.config.members):
            name = member_name(k)
            head = version.components.get(name)
            if head is None:
                bases[k] = None
                continue
            if name not in tainted:
                continue
            pks = table.pk[np.isin(table.sample_ids, np.asarray(tainted[name], dtype=str))]
            first = int(chunks.chunk_of(pks).min())
            record: CheckpointRecord | None = prov.checkpoint(head)
            while record is not None and int(record.meta["chunk"]) >= first:
                parent = record.parent_id
                record = None if parent is None else prov.checkpoint(parent)
            bases[k] = record
        return bases

    # ----------------------------------------------------------------------- predict
    def _model_for(self, checkpoint_id: str, component: str) -> nn.Module:
        cached = self._models.get(checkpoint_id)
        if cached is None:
            cached = self._build(component)
            stored = self.context.store.get(checkpoint_id)
            unpack_training_state(stored.tensors, stored.meta, model=cached)
            cached.eval()
            self._models[checkpoint_id] = cached
        return cached

    def predict(self, features: npt.ArrayLike, *, version: int | None = None) -> Prediction:
        """Mean class probabilities of the valid members of the active (or given) version.

        Raises:
            NotFittedError: nothing is fitted.
            TooFewModelsError: fewer than ``min_valid`` members are valid (retraining).
            DataError: features have the wrong shape.
        """
        record = self._version_record(version)
        dataset = self.context.provenance.dataset(self.context.dataset)
        x = self._checked_features(features, dataset)
        valid = [(c, k) for c, k in sorted(record.components.items()) if k is not None]
        if len(valid) < self.config.min_valid:
            raise TooFewModelsError(
                f"version {record.number} of {self.context.name!r} has {len(valid)} valid "
                f"member(s); min_valid is {self.config.min_valid}. Invalidated members are "
                "retraining: wait for the forget to finish, or lower min_valid."
            )
        inputs = torch.from_numpy(np.ascontiguousarray(x))
        total = np.zeros((len(x), dataset.num_classes), dtype=np.float32)
        with torch.inference_mode():
            for component, checkpoint_id in valid:
                model = self._model_for(checkpoint_id, component)
                for lo in range(0, len(x), _PREDICT_BATCH):
                    logits = model(inputs[lo : lo + _PREDICT_BATCH])
                    total[lo : lo + _PREDICT_BATCH] += torch.softmax(logits, dim=1).numpy()
        probs = np.asarray(total / len(valid), dtype=np.float32)
        return Prediction(
            labels=probs.argmax(axis=1).astype(np.int64),
            probabilities=probs,
            version=record.number,
            components_used=len(valid),
            components_total=len(record.components),
            degraded=len(valid) < len(record.components),
        )

    def close(self) -> None:
        """Waits for background retraining and releases cached models."""
        self._background.shutdown(wait=True)
        self._models.clear()
