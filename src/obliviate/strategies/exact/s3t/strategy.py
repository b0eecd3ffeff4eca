"""S3T: sequence-aware sharded sliced training (Chowdhury et al., ICLR 2025; arXiv 2406.16257).

"Towards Scalable Exact Machine Unlearning Using Parameter-Efficient Fine-Tuning": a frozen
pretrained backbone is fine-tuned with LoRA adapters in m shards of L slices. Per shard, B
orderings (sequences) of its slices are trained stage by stage, stage ``i`` adapting the
next block of layers (top-down) on the first ``i`` slices. A deletion in a slice at position
``p`` of a sequence cuts that sequence back to its first ``p`` slices: no training happens
when a request arrives, each shard serves its longest surviving prefix, and a shard is
retrained (in the background) only when its policy says so.

Departures from the reference code: prefixes shared by several sequences are trained once
(a prefix trie); placement and data order are keyed hashes of sample ids; the backbone's
pretraining data is a declared, non-deletable dataset recorded in every stage's lineage;
the served state of every shard lives in the (transactional) model version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate._hashing import derive_seed, sha256_hex, sha256_of_ids
from obliviate.errors import (
    ConfigError,
    DataError,
    NotFittedError,
    ProvenanceError,
    UnknownSampleError,
)
from obliviate.models import build_model, check_model, resolve_factory
from obliviate.provenance import CheckpointRecord, SampleTable, VersionRecord
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
from obliviate.strategies.exact.aggregation import aggregate
from obliviate.strategies.exact.plan import Plan
from obliviate.strategies.exact.s3t.budget import (
    DeletionBudget,
    ShardBudget,
    cut,
    served,
    shard_budget,
)
from obliviate.strategies.exact.s3t.config import S3TConfig
from obliviate.strategies.exact.s3t.sequences import SliceSequence, select
from obliviate.strategies.exact.s3t.stages import StageModel, State, stage_layout, train_stage
from obliviate.strategies.exact.s3t.trie import PrefixTrie, prefix_key
from obliviate.strategies.exact.sharding import place

__all__ = ["S3T", "NonDeletableError", "component_name"]

_PREDICT_BATCH = 512
BACKBONE = "backbone"


class NonDeletableError(ProvenanceError):
    """Samples of a declared non-deletable dataset (pretraining or validation data)."""


def component_name(shard: int) -> str:
    """The provenance name of shard ``shard``."""
    return f"shard-{shard}"


class _ShardData:
    """One shard's surviving samples (pk order) and the features of each."""

    def __init__(self, table: SampleTable, rows: npt.NDArray[np.int64], plan: Plan) -> None:
        pos = plan.lookup(table.pk[rows])
        self.pks = table.pk[rows]
        self.ids = table.sample_ids[rows]
        self.slices = plan.slice[pos]
        self.keys = plan.order_key[pos]
        self.labels = torch.from_numpy(table.labels[rows])
        self.features = torch.empty(0)

    def rows_of(self, prefix: SliceSequence) -> npt.NDArray[np.int64]:
        return np.flatnonzero(np.isin(self.slices, np.asarray(prefix, dtype=np.int64)))


@STRATEGIES.register("s3t")
class S3T(Strategy):
    """Exact unlearning by LoRA stages over slice sequences; deletion cuts to a prefix."""

    name: ClassVar[str] = "s3t"
    guarantee: ClassVar[Guarantee] = Guarantee.EXACT
    config_class: ClassVar[type[Any]] = S3TConfig
    config: S3TConfig

    def __init__(
        self,
        config: S3TConfig,
        *,
        context: ModelContext,
        model_factory: ModelFactory | None = None,
    ) -> None:
        if not isinstance(config, S3TConfig):
            raise ConfigError(f"S3T needs an S3TConfig; got {type(config).__name__}.")
        super().__init__(config, context=context, model_factory=model_factory)
        self.sequences: tuple[SliceSequence, ...] = tuple(
            select(
                config.selection,
                slices=config.slices,
                budget=config.sequences,
                priors=config.deletion_priors,
            )
        )
        self.trie = PrefixTrie(self.sequences)
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="obliviate-s3t")
        self._lock = model_lock(context.provenance.engine.url, context.name)
        self._serve_lock = threading.Lock()
        self._plan: Plan | None = None
        self._serving: dict[str, StageModel] = {}
        self._states: dict[str, tuple[State, int]] = {}
        self._accuracy: dict[str, float] = {}
        self._deletable: bool | None = None

    # ----------------------------------------------------------------------------- building
    def _fresh_backbone(self) -> nn.Module:
        dataset = self.context.provenance.dataset(self.context.dataset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.config.seed, "backbone-init"))
            if self.model_factory is not None:
                module = self.model_factory()
            elif ":" in self.config.model:
                module = resolve_factory(self.config.model)()
            else:
                if self.config.model == "backbone_mlp":
                    import obliviate.models.backbone  # noqa: F401  (registers the builder)
                module = build_model(
                    self.config.model,
                    input_shape=tuple(dataset.feature_shape),
                    num_classes=dataset.num_classes,
                    **dict(self.config.model_options),
                )
        check_model(module)
        return module

    def _layout_of(self, module: nn.Module) -> Any:
        return stage_layout(
            module,
            slices=self.config.slices,
            layers=self.config.layers,
            target_modules=self.config.target_modules,
            head=self.config.head,
            layers_per_stage=self.config.layers_per_stage,
        )

    def _initial_weights(self) -> dict[str, torch.Tensor]:
        """The frozen backbone's weights: pretrained (or the factory's), head reset if asked."""
        module = self._fresh_backbone()
        layout = self._layout_of(module)
        head_keys = {k for k in module.state_dict() if k.startswith(layout.head + ".")}
        if self.config.backbone_checkpoint is not None:
            stored = self.context.store.get(self.config.backbone_checkpoint)
            tensors = dict(stored.tensors)
            if self.config.reset_head:
                tensors = {k: v for k, v in tensors.items() if k not in head_keys}
            result = module.load_state_dict(tensors, strict=False)
            missing = set(result.missing_keys) - (head_keys if self.config.reset_head else set())
            if missing or result.unexpected_keys:
                raise ConfigError(
                    f"backbone checkpoint {self.config.backbone_checkpoint} does not fit the "
                    f"backbone {self.config.model!r}: missing {sorted(missing)[:5]}, unexpected "
                    f"{sorted(result.unexpected_keys)[:5]}. Check model and model_options (set "
                    "reset_head=True when only the head differs)."
                )
        if self.config.reset_head:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(derive_seed(self.config.seed, "head-init"))
                for sub in module.get_submodule(layout.head).modules():
                    reset = getattr(sub, "reset_parameters", None)
                    if callable(reset):
                        reset()
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    def _stage_model(self, backbone_id: str) -> StageModel:
        module = self._fresh_backbone()
        module.load_state_dict(self.context.store.get(backbone_id).tensors)
        model = StageModel(
            module,
            self._layout_of(module),
            rank=self.config.rank,
            alpha=float(self.config.lora_alpha),
            dropout=float(self.config.lora_dropout),
            rslora=self.config.use_rslora,
        )
        model.freeze()
        return model

    # ------------------------------------------------------------------------------ checks
    def _check_datasets(self) -> None:
        prov = self.context.provenance
        problems = []
        target = prov.dataset(self.context.dataset)
        for role in ("pretraining_dataset", "validation_dataset"):
            name = getattr(self.config, role)
            if name is None:
                continue
            if name == self.context.dataset:
                problems.append(f"{role} {name!r} is the fine-tuning dataset itself")
                continue
            if name not in {d.name for d in prov.datasets()}:
                problems.append(f"{role} {name!r} is not registered")
                continue
            record = prov.dataset(name)
            if record.deletable:
                problems.append(
                    f"{role} {name!r} is deletable; register it with deletable=False (data "
                    "outside the scope of deletion must be declared)"
                )
            if role == "validation_dataset" and (
                record.feature_shape != target.feature_shape
                or record.num_classes != target.num_classes
            ):
                problems.append(f"{role} {name!r} has other features or classes than the model")
        if problems:
            raise ConfigError("cannot fit S3T: " + "; ".join(problems) + ".")

    # ------------------------------------------------------------------------------- data
    def _plan_cached(self) -> Plan:
        if self._plan is None:
            self._plan = Plan.load(self.context.model_dir)
        return self._plan

    def _shard_data(self, plan: Plan, shard: int, active: SampleTable) -> _ShardData:
        pos = plan.lookup(active.pk)
        member = pos >= 0
        in_shard = np.zeros(len(active.pk), dtype=bool)
        in_shard[member] = plan.shard[pos[member]] == shard
        rows = np.flatnonzero(in_shard)
        data = _ShardData(active, rows, plan)
        if len(rows):
            feats = self.context.features.read(
                self.context.dataset, active.chunks[rows], active.rows[rows]
            )
            data.features = torch.from_numpy(np.ascontiguousarray(feats))
        return data

    def _deleted_by_shard(self, plan: Plan) -> tuple[SampleTable, dict[int, set[int]]]:
        deleted = self.context.provenance.samples(dataset=self.context.dataset, status="deleted")
        pos = plan.lookup(deleted.pk)
        out: dict[int, set[int]] = {s: set() for s in range(self.config.shards)}
        for pk, p in zip(deleted.pk.tolist(), pos.tolist(), strict=True):
            if p >= 0:
                out[int(plan.shard[p])].add(int(pk))
        return deleted, out

    # ------------------------------------------------------------------------------ train
    def _record_backbone(self, weights: dict[str, torch.Tensor]) -> CheckpointRecord:
        prov = self.context.provenance
        pre = self.config.pretraining_dataset
        source_lineage = ""
        if self.config.backbone_checkpoint is not None:
            source = self.context.store.get(self.config.backbone_checkpoint).meta
            source_lineage = str(source.get("lineage_hash", ""))
        if pre is not None:
            table = prov.samples(dataset=pre, status="active")
            pks, ids = table.pk, table.sample_ids
        else:
            pks, ids = np.empty(0, dtype=np.int64), np.empty(0, dtype=str)
        lineage = sha256_hex(
            "s3t-backbone", self.config.config_hash(), source_lineage, sha256_of_ids(ids)
        )
        meta = {
            "kind": "s3t_backbone",
            "model": self.context.name,
            "source": self.config.backbone_checkpoint,
            "pretraining_dataset": pre,
            "lineage_hash": lineage,
        }
        ref = self.context.store.put(tensors=weights, meta=meta)
        return prov.record_checkpoint(
            model=self.context.name,
            component=BACKBONE,
            checkpoint_id=ref.checkpoint_id,
            storage_url=ref.url,
            parent_id=None,
            lineage_hash=lineage,
            new_sample_pks=pks,
            num_samples_seen=len(pks),
            meta={"role": "backbone", "pretraining_dataset": pre},
        )

    def _train_shard(
        self, model: StageModel, backbone: CheckpointRecord, shard: int, data: _ShardData
    ) -> tuple[dict[str, str], int]:
        """Trains every distinct prefix of the shard's trie once; returns key -> checkpoint."""
        component = component_name(shard)
        seed = self.config.seed
        nodes: dict[str, str] = {}
        states: dict[str, State] = {}
        lineages: dict[str, str] = {"": sha256_hex(backbone.lineage_hash, component)}
        passes = 0
        for prefix in self.trie.nodes():
            key, parent_key = prefix_key(prefix), prefix_key(prefix[:-1])
            rows = data.rows_of(prefix)
            new = np.flatnonzero(data.slices == prefix[-1])
            state, stats = train_stage(
                model,
                stage=len(prefix) - 1,
                parent=states.get(parent_key),
                features=data.features[rows] if len(rows) else torch.empty(0),
                labels=data.labels[rows],
                order_keys=data.keys[rows],
                train=self.config.train,
                init_seed=derive_seed(seed, "lora", component, key),
                rng_seed=derive_seed(seed, "train", component, key),
                order_seed=derive_seed(seed, "order", component, key),
            )
            passes += stats.sample_passes
            states[key] = state
            lineage = sha256_hex(
                lineages[parent_key],
                f"slice:{prefix[-1]}:epochs:{self.config.train.epochs}",
                sha256_of_ids(data.ids[new]),
            )
            lineages[key] = lineage
            meta = {
                "kind": "s3t_stage",
                "model": self.context.name,
                "component": component,
                "prefix": key,
                "lineage_hash": lineage,
                "config_hash": self.config.config_hash(),
            }
            ref = self.context.store.put(tensors=state, meta=meta)
            self.context.provenance.record_checkpoint(
                model=self.context.name,
                component=component,
                checkpoint_id=ref.checkpoint_id,
                storage_url=ref.url,
                parent_id=nodes.get(parent_key, backbone.checkpoint_id),
                lineage_hash=lineage,
                new_sample_pks=data.pks[new],
                num_samples_seen=backbone.num_samples_seen + len(rows),
                meta={"prefix": key, "stage": len(prefix) - 1, "finetune_samples": len(rows)},
            )
            nodes[key] = ref.checkpoint_id
        return nodes, passes

    def _shard_state(
        self, nodes: dict[str, str], lengths: list[int], accounted: set[int], generation: int
    ) -> dict[str, Any]:
        return {
            "nodes": nodes,
            "lengths": lengths,
            "accounted": sorted(accounted),
            "generation": generation,
        }

    def _components(self, shards: Mapping[str, Any]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name, state in shards.items():
            best, length = served(state["lengths"])
            key = prefix_key(self.sequences[best][:length])
            out[name] = state["nodes"][key] if length > 0 else None
        return out

    def _new_version(
        self, shards: dict[str, Any], backbone: str, *, kind: str, parent: int | None
    ) -> VersionRecord:
        return self.context.provenance.create_version(
            model=self.context.name,
            components=self._components(shards),
            kind=kind,
            details={
                "aggregation": self.config.aggregation,
                "backbone": backbone,
                "sequences": [list(s) for s in self.sequences],
                "shards": shards,
            },
            parent_version=parent,
            activate=True,
        )

    def fit(self, *, sample_ids: Sequence[str] | None = None) -> FitResult:
        """Trains every shard's prefix trie on the active samples (or a subset)."""
        start = time.perf_counter()
        prov = self.context.provenance
        with self._lock:
            fitted = bool(prov.versions(self.context.name))
            if fitted or any(self.context.model_dir.glob("plan-*")):
                raise ConfigError(
                    f"model {self.context.name!r} is already fitted; choose a new name."
                )
            self._check_datasets()
            plan = self._place(sample_ids)
            if len(plan) == 0:
                raise DataError(f"dataset {self.context.dataset!r} has no active samples to fit.")
            weights = self._initial_weights()
            plan.save_part(self.context.model_dir)
            self._plan = plan
            backbone = self._record_backbone(weights)
            model = self._stage_model(backbone.checkpoint_id)
            active = prov.samples(dataset=self.context.dataset, status="active")
            shards: dict[str, Any] = {}
            passes = 0
            for shard in range(self.config.shards):
                data = self._shard_data(plan, shard, active)
                nodes, done = self._train_shard(model, backbone, shard, data)
                passes += done
                full = [self.config.slices] * len(self.sequences)
                shards[component_name(shard)] = self._shard_state(nodes, full, set(), 0)
                self.report("train", shard + 1, self.config.shards, component_name(shard))
            version = self._new_version(shards, backbone.checkpoint_id, kind="trained", parent=None)
        return FitResult(
            model=self.context.name,
            version=version.number,
            components=tuple(shards),
            samples=len(plan),
            sample_passes=passes,
            seconds=time.perf_counter() - start,
        )

    def _place(self, sample_ids: Sequence[str] | None) -> Plan:
        prov = self.context.provenance
        table = prov.samples(dataset=self.context.dataset, status=None)
        chosen = table.status == "active"
        if sample_ids is not None:
            resolution = prov.resolve(dataset=self.context.dataset, sample_ids=list(sample_ids))
            bad = list(resolution.unknown_ids) + list(resolution.already_deleted_ids)
            if bad:
                raise UnknownSampleError(
                    f"cannot train on ids that are unknown or deleted: {bad[:5]}"
                    f"{' ...' if len(bad) > 5 else ''}."
                )
            chosen = np.isin(table.pk, np.asarray(resolution.active_pks, dtype=np.int64))
        placement = place(
            self.config.sharding,
            sample_ids=table.sample_ids,
            subject_ids=table.subject_ids,
            labels=table.labels,
            shards=self.config.shards,
            slices=self.config.slices,
            seed=self.config.seed,
        )
        rows = np.flatnonzero(chosen)
        return Plan(
            pk=table.pk[rows],
            shard=placement.shard[rows],
            slice=placement.slice[rows],
            order_key=placement.order_key[rows],
        )

    # ---------------------------------------------------------------------------- forget
    def _refuse_non_deletable(self, unknown: Sequence[str]) -> None:
        prov = self.context.provenance
        if self._deletable is None:  # fixed at registration, so read once
            self._deletable = prov.dataset(self.context.dataset).deletable
        if not self._deletable:
            own = prov.dataset(self.context.dataset)
            raise NonDeletableError(
                f"dataset {own.name!r} is declared non-deletable; its samples cannot be "
                "forgotten. Nothing was deleted."
            )
        for role in ("pretraining_dataset", "validation_dataset"):
            name = getattr(self.config, role)
            if name is None or not unknown:
                continue
            found = prov.resolve(dataset=name, sample_ids=list(unknown))
            hit = [i for i in unknown if i not in set(found.unknown_ids)]
            if hit:
                raise NonDeletableError(
                    f"ids {hit[:5]} belong to {name!r}, this model's non-deletable "
                    f"{role.replace('_', ' ')}; it is outside the scope of deletion. Nothing "
                    "was deleted."
                )

    def _forget(
        self,
        *,
        sample_ids: Sequence[str],
        subject_ids: Sequence[str],
        reason: str,
        background: bool,
    ) -> ForgetResult:
        """Cuts every sequence holding a deleted sample back to the prefix before it.

        The request path trains nothing: it records the deletion, computes the new prefix
        lengths and activates a version serving each shard's longest surviving prefix. A
        shard the policy marks for retraining is retrained afterwards (in the background
        with ``background=True``).

        Raises:
            NonDeletableError: ids of the pretraining or validation dataset, or the
                fine-tuning dataset is declared non-deletable.
            UnknownSampleError: ids or subjects that were never registered.
        """
        start = time.perf_counter()
        prov = self.context.provenance
        if not sample_ids and not subject_ids:
            raise DataError("forget needs sample_ids or subject_ids; got neither.")
        with self._lock:
            current = prov.active_version(self.context.name)
            if current is None:
                raise NotFittedError(f"model {self.context.name!r} is not fitted; call fit first.")
            resolution = prov.resolve(
                dataset=self.context.dataset,
                sample_ids=list(sample_ids),
                subject_ids=list(subject_ids),
            )
            self._refuse_non_deletable(list(resolution.unknown_ids))
            self._require_known(resolution)
            already = tuple(resolution.already_deleted_ids)
            new_pks = np.asarray(resolution.active_pks, dtype=np.int64)
            deletion_id: int | None = None
            if len(new_pks):
                deletion_id = prov.begin_deletion(
                    dataset=self.context.dataset,
                    sample_pks=new_pks,
                    model=self.context.name,
                    reason=reason,
                    from_version=current.number,
                ).id
            plan = self._plan_cached()
            deleted, by_shard = self._deleted_by_shard(plan)
            shards = {k: dict(v) for k, v in current.details["shards"].items()}
            forgotten: list[int] = []
            affected: dict[str, int] = {}
            for shard in range(self.config.shards):
                name = component_name(shard)
                state = shards[name]
                fresh = sorted(by_shard[shard] - set(state["accounted"]))
                if not fresh:
                    continue
                forgotten.extend(fresh)
                dirty = {int(plan.slice[p]) for p in plan.lookup(np.asarray(fresh)).tolist()}
                lengths = cut(state["lengths"], self.sequences, dirty)
                shards[name] = self._shard_state(
                    state["nodes"],
                    lengths,
                    set(state["accounted"]) | set(fresh),
                    state["generation"],
                )
                affected[name] = served(lengths)[1]
            if not forgotten:
                if len(new_pks):
                    self._purge_features(new_pks, deleted=deleted)
                if deletion_id is not None:
                    prov.update_deletion(deletion_id, status="noop")
                return ForgetResult.unchanged(
                    model=self.context.name,
                    guarantee=Guarantee.EXACT,
                    deletion_id=deletion_id,
                    already_deleted_ids=already,
                    version=current.number,
                    seconds=time.perf_counter() - start,
                )
            rolled = self._new_version(
                shards, current.details["backbone"], kind="rolled_back", parent=current.number
            )
            rollback_seconds = time.perf_counter() - start
            done_now = self.config.retrain_when == "never" or (
                self.config.retrain_when == "exhausted"
                and all(served(s["lengths"])[1] > 0 for s in shards.values())
            )
            if deletion_id is not None:
                prov.update_deletion(
                    deletion_id,
                    status="completed" if done_now else "rolled_back",
                    rolled_back_version=rolled.number,
                    to_version=rolled.number if done_now else None,
                )
            if len(new_pks):
                self._purge_features(new_pks, deleted=deleted)
            forgotten_ids = deleted.sample_ids[np.isin(deleted.pk, forgotten)]
            partial = ForgetResult(
                model=self.context.name,
                guarantee=Guarantee.EXACT,
                deletion_id=deletion_id,
                forgotten_sample_ids=tuple(str(i) for i in forgotten_ids),
                already_deleted_ids=already,
                noop=False,
                version_before=current.number,
                rolled_back_version=rolled.number,
                version=None,
                affected_components=tuple(sorted(affected)),
                earliest_slices=dict(sorted(affected.items())),
                samples_retrained=0,
                sample_passes=0,
                rollback_seconds=rollback_seconds,
                seconds=rollback_seconds,
                evidence=self._evidence(self._budget_of(shards)),
            )
        if done_now:
            return replace(partial, version=rolled.number)

        def finish() -> ForgetResult:
            try:
                result = self._apply_policy(partial, start)
            except BaseException:
                if deletion_id is not None:
                    prov.update_deletion(deletion_id, status="failed")
                raise
            if deletion_id is not None:
                prov.update_deletion(deletion_id, status="completed", to_version=result.version)
            return result

        if background:
            future: Future[ForgetResult] = self._background.submit(finish)
            return replace(partial, pending=future)
        return finish()

    @staticmethod
    def _evidence(budget: DeletionBudget) -> dict[str, float]:
        return {
            "budget_worst_case_remaining": float(budget.worst_case_remaining),
            "shards_exhausted": float(budget.shards_exhausted),
            "served_fraction": budget.served_fraction,
        }

    # -------------------------------------------------------------------------- retrain
    def _due(self, version: VersionRecord) -> list[int]:
        """Shards the retrain policy says to retrain now."""
        policy = self.config.retrain_when
        due = []
        for shard in range(self.config.shards):
            checkpoint = version.components.get(component_name(shard))
            if checkpoint is None:
                if policy != "never":
                    due.append(shard)
            elif policy == "below_floor":
                floor = float(self.config.accuracy_floor or 0.0)
                if self._shard_accuracy(checkpoint, version.details["backbone"]) < floor:
                    due.append(shard)
        return due

    def _apply_policy(self, partial: ForgetResult, start: float) -> ForgetResult:
        prov = self.context.provenance
        current = prov.active_version(self.context.name)
        if current is None:  # pragma: no cover - a fitted model always has one
            raise NotFittedError(f"model {self.context.name!r} has no active version.")
        due = self._due(current)
        if not due:
            return replace(partial, version=current.number, seconds=time.perf_counter() - start)
        version, samples, passes = self.retrain(shards=due)
        return replace(
            partial,
            version=version.number,
            samples_retrained=samples,
            sample_passes=passes,
            seconds=time.perf_counter() - start,
            evidence=self._evidence(self.budget(version=version.number)),
        )

    def retrain(self, *, shards: Sequence[int]) -> tuple[VersionRecord, int, int]:
        """Retrains shards from scratch on their surviving samples, restoring full budgets.

        Training runs without the model lock, so deletions keep being honoured meanwhile;
        samples deleted during training are cut from the new trie when it is installed.

        Returns:
            The activated version, samples trained on and sample-passes.
        """
        prov = self.context.provenance
        current = prov.active_version(self.context.name)
        if current is None:
            raise NotFittedError(f"model {self.context.name!r} is not fitted; call fit first.")
        plan = self._plan_cached()
        backbone = prov.checkpoint(current.details["backbone"])
        model = self._stage_model(backbone.checkpoint_id)
        _, excluded = self._deleted_by_shard(plan)
        active = prov.samples(dataset=self.context.dataset, status="active")
        trained: dict[int, dict[str, str]] = {}
        samples = passes = 0
        for done, shard in enumerate(sorted(set(shards))):
            data = self._shard_data(plan, shard, active)
            trained[shard], work = self._train_shard(model, backbone, shard, data)
            samples += len(data.pks)
            passes += work
            self.report("retrain", done + 1, len(shards), component_name(shard))
        with self._lock:
            current = prov.active_version(self.context.name)
            if current is None:  # pragma: no cover
                raise NotFittedError(f"model {self.context.name!r} has no active version.")
            _, now = self._deleted_by_shard(plan)
            states = {k: dict(v) for k, v in current.details["shards"].items()}
            for shard, nodes in trained.items():
                name = component_name(shard)
                arrived = now[shard] - excluded[shard]
                dirty = {
                    int(plan.slice[p])
                    for p in plan.lookup(np.asarray(sorted(arrived), dtype=np.int64)).tolist()
                }
                lengths = cut([self.config.slices] * len(self.sequences), self.sequences, dirty)
                states[name] = self._shard_state(
                    nodes, lengths, now[shard], int(states[name]["generation"]) + 1
                )
            version = self._new_version(
                states, backbone.checkpoint_id, kind="retrained", parent=current.number
            )
        return version, samples, passes

    # ---------------------------------------------------------------------------- budget
    def budget(self, *, version: int | None = None) -> DeletionBudget:
        """The remaining deletion budget of the active version (or ``version``)."""
        return self._budget_of(self._version_record(version).details["shards"])

    def _budget_of(self, states: Mapping[str, Any]) -> DeletionBudget:
        shards: dict[str, ShardBudget] = {}
        for name, state in sorted(states.items()):
            shards[name] = shard_budget(state["lengths"], self.sequences)
        total = self.config.slices * len(shards)
        return DeletionBudget(
            shards=shards,
            shards_exhausted=sum(1 for b in shards.values() if b.served_slices == 0),
            worst_case_remaining=sum(b.worst_case_remaining for b in shards.values()),
            served_fraction=sum(b.served_slices for b in shards.values()) / max(total, 1),
        )

    # --------------------------------------------------------------------------- predict
    def _node(self, checkpoint_id: str) -> tuple[State, int]:
        cached = self._states.get(checkpoint_id)
        if cached is None:
            stored = self.context.store.get(checkpoint_id)
            seen = self.context.provenance.checkpoint(checkpoint_id).meta
            cached = self._states[checkpoint_id] = (
                dict(stored.tensors),
                int(seen.get("finetune_samples", 0)),
            )
        return cached

    def _server(self, backbone_id: str) -> StageModel:
        model = self._serving.get(backbone_id)
        if model is None:
            model = self._serving[backbone_id] = self._stage_model(backbone_id)
        return model

    def _probabilities(
        self, checkpoints: Sequence[str], backbone_id: str, x: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
        dataset = self.context.provenance.dataset(self.context.dataset)
        inputs = torch.from_numpy(np.ascontiguousarray(x))
        probs = np.empty((len(checkpoints), len(x), dataset.num_classes), dtype=np.float32)
        weights = np.empty(len(checkpoints), dtype=np.float64)
        with self._serve_lock, torch.inference_mode():
            model = self._server(backbone_id)
            for i, checkpoint_id in enumerate(checkpoints):
                state, weights[i] = self._node(checkpoint_id)
                model.load(state)
                for lo in range(0, len(x), _PREDICT_BATCH):
                    logits = model.logits(inputs[lo : lo + _PREDICT_BATCH])
                    probs[i, lo : lo + _PREDICT_BATCH] = torch.softmax(logits, dim=1).numpy()
        return probs, weights

    def _shard_accuracy(self, checkpoint_id: str, backbone_id: str) -> float:
        """Accuracy of one served prefix on the non-deletable validation dataset (cached)."""
        if checkpoint_id not in self._accuracy:
            name = str(self.config.validation_dataset)
            table = self.context.provenance.samples(dataset=name, status="active")
            x = self.context.features.read(name, table.chunks, table.rows)
            probs, _ = self._probabilities([checkpoint_id], backbone_id, x)
            self._accuracy[checkpoint_id] = float((probs[0].argmax(1) == table.labels).mean())
        return self._accuracy[checkpoint_id]

    def predict(self, features: npt.ArrayLike, *, version: int | None = None) -> Prediction:
        """Aggregates each shard's longest surviving prefix (active version or ``version``).

        Raises:
            NotFittedError: nothing is fitted, or every shard is exhausted.
            DataError: features have the wrong shape.
        """
        record = self._version_record(version)
        x = self._checked_features(features)
        present = [k for _, k in sorted(record.components.items()) if k is not None]
        if not present:
            raise NotFittedError(
                f"version {record.number} of {self.context.name!r} has no servable shard (every "
                "shard is exhausted); wait for the background retrain or call retrain()."
            )
        probs, weights = self._probabilities(present, record.details["backbone"], x)
        scores = aggregate(self.config.aggregation, probs, weights)
        return Prediction(
            labels=scores.argmax(axis=1).astype(np.int64),
            probabilities=scores,
            version=record.number,
            components_used=len(present),
            components_total=len(record.components),
            degraded=len(present) < len(record.components)
            or any(
                served(s["lengths"])[1] < self.config.slices
                for s in record.details["shards"].values()
            ),
        )

    def close(self) -> None:
        """Waits for background retraining and releases cached models."""
        self._background.shutdown(wait=True)
        self._serving.clear()
        self._states.clear()
