"""A small CPU backbone with named linear blocks, and pretraining on non-deletable data.

S3T (and any adapter method) fine-tunes a frozen, pretrained backbone. Its pretraining data
is outside the scope of deletion, so it must be *declared*: :func:`pretrain_backbone` only
trains on a dataset registered with ``deletable=False`` and stores the weights in the
checkpoint store with a lineage hash of the exact ordered ids they were trained on.

The ``backbone_mlp`` model is a pre-norm residual MLP (a transformer's feed-forward half)::

    Flatten -> stem: Linear(in, width) -> blocks[k]: x + fc2(GELU(fc1(LayerNorm(x))))
            -> norm: LayerNorm -> head: Linear(width, classes)

Every block is one "layer" for S3T's top-down stages; LayerNorm normalises each sample on
its own, so no statistics of the data are kept in buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from obliviate._hashing import derive_seed, sha256_hex, sha256_of_ids
from obliviate.errors import ConfigError
from obliviate.models.checks import check_model
from obliviate.models.options import (
    ModelOptions,
    check_positive_int,
    parse_options,
    validate_io,
)
from obliviate.models.zoo import MODELS
from obliviate.training import TrainConfig, deterministic, make_optimizer, make_scheduler
from obliviate.training import train_epochs as _train_epochs

if TYPE_CHECKING:
    from obliviate.data.feature_store import FeatureStore
    from obliviate.provenance import Provenance
    from obliviate.storage import CheckpointStore

__all__ = [
    "BackboneMLP",
    "BackboneOptions",
    "PretrainedBackbone",
    "build_backbone_mlp",
    "pretrain_backbone",
]


@dataclass(frozen=True)
class BackboneOptions(ModelOptions):
    """Options of the ``backbone_mlp`` model.

    Attributes:
        width: the residual stream's width.
        depth: number of residual blocks (the layers S3T stages adapt, top-down).
        expansion: hidden width of each block's MLP, as a multiple of ``width``.
    """

    width: int = 64
    depth: int = 4
    expansion: int = 2

    def problems(self) -> list[str]:
        """Describes every invalid field."""
        return [
            problem
            for name in ("width", "depth", "expansion")
            for problem in check_positive_int(name, getattr(self, name))
        ]


class _Block(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.fc2(self.act(self.fc1(self.norm(x))))
        return out


class BackboneMLP(nn.Module):
    """Residual MLP with blocks at ``blocks.0`` .. ``blocks.{depth-1}`` and a ``head``."""

    def __init__(self, *, in_features: int, num_classes: int, options: BackboneOptions) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.stem = nn.Linear(in_features, options.width)
        hidden = options.width * options.expansion
        self.blocks = nn.ModuleList(_Block(options.width, hidden) for _ in range(options.depth))
        self.norm = nn.LayerNorm(options.width)
        self.head = nn.Linear(options.width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(self.flatten(x))
        for block in self.blocks:
            h = block(h)
        out: torch.Tensor = self.head(self.norm(h))
        return out


@MODELS.register("backbone_mlp")
def build_backbone_mlp(
    *, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> nn.Module:
    """Builds a :class:`BackboneMLP`; options are those of :class:`BackboneOptions`.

    Raises:
        ConfigError: an option is unknown or invalid, or the shape or class count is.
    """
    shape = validate_io("backbone_mlp", input_shape, num_classes, image=False)
    config = parse_options("backbone_mlp", BackboneOptions, options)
    return BackboneMLP(in_features=math.prod(shape), num_classes=num_classes, options=config)


@dataclass(frozen=True)
class PretrainedBackbone:
    """Backbone weights stored for S3T: pass ``checkpoint_id`` and ``dataset`` to S3TConfig.

    Attributes:
        checkpoint_id: the weights' id in the checkpoint store.
        dataset: the non-deletable dataset they were pretrained on.
        lineage_hash: SHA-256 of the exact ordered sample ids they were trained on.
        samples: how many samples that was.
        last_loss: mean training loss of the last epoch.
    """

    checkpoint_id: str
    dataset: str
    lineage_hash: str
    samples: int
    last_loss: float


def pretrain_backbone(
    *,
    provenance: Provenance,
    store: CheckpointStore,
    features: FeatureStore,
    dataset: str,
    model: nn.Module,
    train: TrainConfig,
    seed: int = 0,
) -> PretrainedBackbone:
    """Trains ``model`` in full on the non-deletable ``dataset`` and stores its weights.

    Pass the handles of a workspace (``ws.provenance``, ``ws.store``, ``ws.features``).
    The run is deterministic (seeded order and dropout), so the same inputs give the same
    checkpoint id.

    Raises:
        ConfigError: ``dataset`` is deletable: pretraining data cannot be forgotten, so it
            must be declared with ``Workspace.register(..., deletable=False)``.
        NotFittedError/DataError: the dataset has no active samples.
    """
    record = provenance.dataset(dataset)
    if record.deletable:
        raise ConfigError(
            f"dataset {dataset!r} is deletable; a backbone's pretraining data is outside the "
            "scope of deletion and must be registered with deletable=False."
        )
    check_model(model)
    table = provenance.samples(dataset=dataset, status="active")
    if len(table.pk) == 0:
        raise ConfigError(f"dataset {dataset!r} has no samples to pretrain on.")
    x = torch.from_numpy(np.ascontiguousarray(features.read(dataset, table.chunks, table.rows)))
    y = torch.from_numpy(table.labels)
    keys = np.arange(len(table.pk), dtype=np.uint64)
    optimizer = make_optimizer(train, model)
    scheduler = make_scheduler(train, optimizer, total_epochs=train.epochs)
    with torch.random.fork_rng(devices=[]), deterministic():
        torch.manual_seed(derive_seed(seed, "pretrain", dataset))
        stats = _train_epochs(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            features=x,
            labels=y,
            order_keys=keys,
            config=train,
            seed=derive_seed(seed, "pretrain-order", dataset),
            first_epoch=0,
            epochs=train.epochs,
        )
    model.eval()
    lineage = sha256_hex(
        "pretrain", dataset, sha256_of_ids(table.sample_ids), str(seed), str(train.to_dict())
    )
    meta = {"kind": "pretrained_backbone", "dataset": dataset, "lineage_hash": lineage}
    ref = store.put(tensors=dict(model.state_dict()), meta=meta)
    return PretrainedBackbone(
        checkpoint_id=ref.checkpoint_id,
        dataset=dataset,
        lineage_hash=lineage,
        samples=len(table.pk),
        last_loss=stats.last_loss,
    )
