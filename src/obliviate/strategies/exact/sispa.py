"""SISPA: Sharded, Isolated, Sliced, Pre-computed, Aggregated training.

SISA's shards (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021), with the label vote
replaced by a learned aggregator over the shards' cached embeddings, after the SISPA
project (alekshiidenhovi/SISPA, "Sharded, Isolated, Sliced, Pre-computed, Aggregated"; no
paper or results published). Each shard model's embedding (the input to its final Linear) is
pre-computed per (checkpoint, sample), and an aggregator (an MLP by default) is trained on
the concatenated embeddings.

Exactness. The aggregator is a function of every shard model *and* of its own training
samples, so it is retrained **from scratch** after every change, on embeddings recomputed
only for the shards that changed (the others hit the cache). Warm-starting it would carry
the deleted samples' influence over. With ``aggregator_data="heldout"`` it trains on a
non-deletable held-out dataset instead: a deletion then needs no aggregator training on
deletable data, but it is still refitted (on the held-out set, with the retrained shards'
embeddings), because its inputs come from shard models that saw the deleted samples;
keeping it would not be exact. What the held-out mode buys is a cheaper refit (held-out
size, not training-set size) and an aggregator whose own samples can never be deleted.

While the affected shards retrain, the rolled-back version excludes the aggregator and
serves the shards' own heads with ``fallback_aggregation`` (flagged ``degraded``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate._hashing import derive_seed, id_hash64, sha256_hex, sha256_of_ids
from obliviate.errors import ConfigError, DataError, TrainingError
from obliviate.models.embedding import EMBED_BATCH, embed
from obliviate.provenance import CheckpointRecord, SampleTable
from obliviate.storage import pack_training_state, unpack_training_state
from obliviate.strategies.base import (
    STRATEGIES,
    FitResult,
    ForgetResult,
    Guarantee,
    ModelContext,
    ModelFactory,
    Prediction,
)
from obliviate.strategies.exact.aggregator import ClosedFormAggregator, build_aggregator
from obliviate.strategies.exact.embeddings import EmbeddingCache
from obliviate.strategies.exact.plan import Plan
from obliviate.strategies.exact.sisa import SISA
from obliviate.strategies.exact.sispa_config import SISPAConfig
from obliviate.training import deterministic, make_optimizer, make_scheduler, train_epochs

__all__ = ["AGGREGATOR", "SISPA", "SISPATimings"]

AGGREGATOR = "aggregator"
_PREDICT_BATCH = 512


@dataclass(frozen=True)
class SISPATimings:
    """Where the last fit, add or retrain spent its time (seconds), for benchmarks.

    Attributes:
        shards: training the shards that needed it.
        embeddings: computing (or reading) the aggregator's input embeddings.
        aggregator: training the aggregator from scratch.
        embeddings_computed: (sample, shard) embeddings computed.
        embeddings_reused: (sample, shard) embeddings read from the cache.
    """

    shards: float
    embeddings: float
    aggregator: float
    embeddings_computed: int
    embeddings_reused: int


@dataclass(frozen=True)
class _AggregatorData:
    pks: npt.NDArray[np.int64]
    sample_ids: npt.NDArray[np.str_]
    labels: npt.NDArray[np.int64]
    dataset: str
    table: SampleTable
    rows: npt.NDArray[np.int64]
    order_keys: npt.NDArray[np.uint64]


def _shard_index(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


@STRATEGIES.register("sispa")
class SISPA(SISA):
    """Exact unlearning with SISA shards and a learned aggregator over cached embeddings."""

    name: ClassVar[str] = "sispa"
    guarantee: ClassVar[Guarantee] = Guarantee.EXACT
    config_class: ClassVar[type[Any]] = SISPAConfig

    def __init__(
        self,
        config: SISPAConfig,
        *,
        context: ModelContext,
        model_factory: ModelFactory | None = None,
    ) -> None:
        if not isinstance(config, SISPAConfig):
            raise ConfigError(f"SISPA needs a SISPAConfig; got {type(config).__name__}.")
        super().__init__(config.as_sisa(), context=context, model_factory=model_factory)
        self.sispa_config = config
        self.cache = EmbeddingCache(context.model_dir / "embeddings")
        self.last_timings: SISPATimings | None = None
        self._aggregators: dict[str, nn.Module] = {}
        self._phase_start = time.perf_counter()

    # ------------------------------------------------------------------------ hooks
    def fit(self, *, sample_ids: Sequence[str] | None = None) -> FitResult:
        """Trains the shards, then the aggregator on their embeddings."""
        self._check_heldout()
        self._phase_start = time.perf_counter()
        return super().fit(sample_ids=sample_ids)

    def _bring_up_to_date(self, *args: Any, **kwargs: Any) -> Any:
        self._phase_start = time.perf_counter()
        return super()._bring_up_to_date(*args, **kwargs)

    def _complete_components(
        self,
        components: dict[str, str | None],
        *,
        kind: str,
        active: SampleTable | None = None,
    ) -> dict[str, str | None]:
        shards = {k: v for k, v in components.items() if k != AGGREGATOR}
        if kind == "rolled_back":
            # The aggregator saw every sample: it cannot serve until refitted. Drop the
            # deleted samples' embeddings and every file of a checkpoint no longer served.
            deleted = self.context.provenance.samples(
                dataset=self.context.dataset, status="deleted"
            )
            self.cache.purge(deleted.pk)
            self.cache.prune(c for c in shards.values() if c is not None)
            return {**shards, AGGREGATOR: None}
        record = self._fit_aggregator(shards, active)
        self.cache.prune(c for c in shards.values() if c is not None)
        return {**shards, AGGREGATOR: record.checkpoint_id}

    # ------------------------------------------------------------------- aggregator
    @property
    def _logits(self) -> bool:
        return self.sispa_config.aggregator_input == "logits"

    def _check_heldout(self) -> None:
        name = self.sispa_config.heldout_dataset
        if self.sispa_config.aggregator_data != "heldout" or name is None:
            return
        record = self.context.provenance.dataset(name)
        own = self.context.provenance.dataset(self.context.dataset)
        if record.deletable:
            raise ConfigError(
                f"heldout_dataset {name!r} is deletable; register it with deletable=False so "
                "that no deletion can reach the aggregator's own training data."
            )
        if name == self.context.dataset:
            raise ConfigError("heldout_dataset must differ from the training dataset.")
        if (record.num_classes, tuple(record.feature_shape)) != (
            own.num_classes,
            tuple(own.feature_shape),
        ):
            raise ConfigError(
                f"heldout_dataset {name!r} has {record.num_classes} classes and features "
                f"{tuple(record.feature_shape)}; the training dataset has {own.num_classes} "
                f"and {tuple(own.feature_shape)}."
            )

    def _aggregator_data(
        self, plan: Plan, active: SampleTable | None = None
    ) -> tuple[_AggregatorData, npt.NDArray[np.int64]]:
        """The aggregator's samples, and every sample the shards trained on (its lineage)."""
        prov = self.context.provenance
        if active is None:
            active = prov.samples(dataset=self.context.dataset, status="active")
        in_plan = np.flatnonzero(plan.lookup(active.pk) >= 0)
        shard_pks = active.pk[in_plan]
        if self.sispa_config.aggregator_data == "heldout":
            dataset = str(self.sispa_config.heldout_dataset)
            table = prov.samples(dataset=dataset, status="active")
            rows = np.arange(len(table.pk))
        else:
            dataset, table, rows = self.context.dataset, active, in_plan
        if len(rows) == 0:
            raise DataError(f"the aggregator has no samples to train on in {dataset!r}.")
        keys = id_hash64(table.sample_ids[rows], f"{self.config.seed}:aggregator-order")
        order = np.argsort(keys, kind="stable")
        rows = rows[order]
        data = _AggregatorData(
            order_keys=keys[order],
            pks=table.pk[rows],
            sample_ids=table.sample_ids[rows],
            labels=table.labels[rows],
            dataset=dataset,
            table=table,
            rows=rows,
        )
        return data, shard_pks

    def _embeddings(
        self, shards: dict[str, str | None], data: _AggregatorData
    ) -> tuple[torch.Tensor, int, int]:
        """``(n, S * d)`` embeddings of ``data`` by every shard, joined on sample keys."""
        position = {int(pk): int(row) for pk, row in zip(data.pks, data.rows, strict=True)}
        columns = []
        computed = reused = 0
        for name in sorted(shards, key=_shard_index):
            checkpoint_id = shards[name]
            if checkpoint_id is None:
                raise TrainingError(f"cannot fit the aggregator: shard {name} has no model.")
            model = self._model_for(checkpoint_id, name)[0]

            def compute(pks: npt.NDArray[np.int64], model: nn.Module = model) -> Any:
                rows = np.asarray([position[int(pk)] for pk in pks], dtype=np.int64)
                x = self.context.features.read(
                    data.dataset, data.table.chunks[rows], data.table.rows[rows]
                )
                # A sample sits at the same batch position in every call (see embed).
                slots = id_hash64(data.table.sample_ids[rows], f"{self.config.seed}:slot")
                return embed(
                    model,
                    torch.from_numpy(np.ascontiguousarray(x)),
                    slots=(slots % np.uint64(EMBED_BATCH)).astype(np.int64),
                    logits=self._logits,
                ).numpy()

            matrix, fresh = self.cache.get(
                checkpoint_id=checkpoint_id, pks=data.pks, compute=compute
            )
            computed += fresh
            reused += len(data.pks) - fresh
            columns.append(torch.from_numpy(np.ascontiguousarray(matrix)))
        return torch.cat(columns, dim=1), computed, reused

    def _build_aggregator(self, shards: int, width: int) -> nn.Module:
        dataset = self.context.provenance.dataset(self.context.dataset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.config.seed, "init", AGGREGATOR))
            return build_aggregator(
                self.sispa_config.aggregator,
                shards=shards,
                embedding_dim=width,
                num_classes=dataset.num_classes,
                options=dict(self.sispa_config.aggregator_options),
            )

    def _fit_aggregator(
        self, shards: dict[str, str | None], active: SampleTable | None = None
    ) -> CheckpointRecord:
        """Trains the aggregator from scratch on the current shards' embeddings."""
        started = time.perf_counter()
        shard_seconds = started - self._phase_start
        data, shard_pks = self._aggregator_data(Plan.load(self.context.model_dir), active)
        features, computed, reused = self._embeddings(shards, data)
        embedded = time.perf_counter()
        train = self.sispa_config.aggregator_train
        model = self._build_aggregator(len(shards), features.shape[1] // len(shards))
        optimizer = make_optimizer(train, model)
        scheduler = make_scheduler(train, optimizer, total_epochs=train.epochs)
        with torch.random.fork_rng(devices=[]), deterministic():
            torch.manual_seed(derive_seed(self.config.seed, "train", AGGREGATOR))
            if isinstance(model, ClosedFormAggregator):
                model.fit_closed_form(features, torch.from_numpy(data.labels))
            else:
                train_epochs(
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    features=features,
                    labels=torch.from_numpy(data.labels),
                    order_keys=data.order_keys,
                    config=train,
                    seed=derive_seed(self.config.seed, "order", AGGREGATOR),
                    first_epoch=0,
                    epochs=train.epochs,
                )
            rng = torch.get_rng_state()
        model.eval()
        ordered = sorted(shards.items(), key=lambda item: _shard_index(item[0]))
        lineage = sha256_hex(
            AGGREGATOR,
            self.sispa_config.config_hash(),
            *[f"{name}={checkpoint}" for name, checkpoint in ordered],
            sha256_of_ids(data.sample_ids),
        )
        tensors, meta = pack_training_state(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            rng_state=rng,
            extra={
                "model": self.context.name,
                "component": AGGREGATOR,
                "lineage_hash": lineage,
                "shards": dict(ordered),
            },
        )
        ref = self.context.store.put(tensors=tensors, meta=meta)
        # Its influence is every shard's training data (through its inputs) plus its own:
        # the shard checkpoints are recorded as its inputs, whose lineage it inherits, and
        # only its own samples as its delta (not a row per training sample on every refit).
        seen = np.union1d(shard_pks, data.pks).astype(np.int64)
        record = self.context.provenance.record_checkpoint(
            model=self.context.name,
            component=AGGREGATOR,
            checkpoint_id=ref.checkpoint_id,
            storage_url=ref.url,
            parent_id=None,
            lineage_hash=lineage,
            new_sample_pks=np.unique(data.pks).astype(np.int64),
            inputs=[str(checkpoint) for _, checkpoint in ordered],
            num_samples_seen=len(seen),
            meta={"role": AGGREGATOR, "samples": len(data.pks), "data": data.dataset},
        )
        self._aggregators[record.checkpoint_id] = model
        self.last_timings = SISPATimings(
            shards=shard_seconds,
            embeddings=embedded - started,
            aggregator=time.perf_counter() - embedded,
            embeddings_computed=computed,
            embeddings_reused=reused,
        )
        return record

    def _load_aggregator(self, checkpoint_id: str, shards: int, width: int) -> nn.Module:
        cached = self._aggregators.get(checkpoint_id)
        if cached is None:
            cached = self._build_aggregator(shards, width)
            stored = self.context.store.get(checkpoint_id)
            unpack_training_state(stored.tensors, stored.meta, model=cached)
            cached.eval()
            self._aggregators[checkpoint_id] = cached
        return cached

    # ---------------------------------------------------------------------- predict
    def predict(self, features: npt.ArrayLike, *, version: int | None = None) -> Prediction:
        """Predicts with the aggregator; a rolled-back version falls back to the shards' heads.

        Raises:
            NotFittedError: nothing is fitted.
            DataError: features have the wrong shape.
        """
        record = self._version_record(version)
        aggregator = record.components.get(AGGREGATOR)
        if aggregator is None:
            return super().predict(features, version=record.number)
        dataset = self.context.provenance.dataset(self.context.dataset)
        x = self._checked_features(features, dataset)
        shards = {k: v for k, v in record.components.items() if k != AGGREGATOR}
        inputs = torch.from_numpy(np.ascontiguousarray(x))
        columns = []
        for name in sorted(shards, key=_shard_index):
            model = self._model_for(str(shards[name]), name)[0]
            columns.append(embed(model, inputs, logits=self._logits))
        head = self._load_aggregator(aggregator, len(shards), int(columns[0].shape[1]))
        joined = torch.cat(columns, dim=1)
        probs = np.empty((len(x), dataset.num_classes), dtype=np.float32)
        with torch.inference_mode():
            for lo in range(0, len(x), _PREDICT_BATCH):
                logits = head(joined[lo : lo + _PREDICT_BATCH])
                probs[lo : lo + _PREDICT_BATCH] = torch.softmax(logits, dim=1).numpy()
        return Prediction(
            labels=probs.argmax(axis=1).astype(np.int64),
            probabilities=probs,
            version=record.number,
            components_used=len(record.components),
            components_total=len(record.components),
            degraded=False,
        )

    def _forget_approximately(
        self,
        *,
        sample_ids: Sequence[str],
        subject_ids: Sequence[str],
        reason: str,
        method: str,
        method_config: Any,
    ) -> ForgetResult:
        """Refused: an approximate shard update would leave the aggregator fitted to old
        embeddings of the forgotten samples, and there is no evidence path for that yet."""
        raise ConfigError(
            f"SISPA does not support approximate forgetting (method {method!r}); forget "
            "without a method for its exact path (shard retrain + aggregator refit)."
        )

    def close(self) -> None:
        """Waits for background retraining and releases cached models."""
        super().close()
        self._aggregators.clear()
