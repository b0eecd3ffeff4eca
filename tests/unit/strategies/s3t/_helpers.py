"""Shared tiny setup for S3T tests: blobs, a 4-block backbone, a pretrained checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from obliviate import TrainConfig, Workspace
from obliviate.data.sample_set import SampleSet
from obliviate.models.backbone import build_backbone_mlp, pretrain_backbone
from obliviate.strategies.exact.s3t import S3T, S3TConfig
from obliviate.testing import make_blobs

FAST = TrainConfig(epochs=2, batch_size=16, lr=0.05, momentum=0.9)
OPTIONS = {"width": 16, "depth": 4, "expansion": 1}


def data(n: int = 96) -> SampleSet:
    return make_blobs(n=n, classes=3, features=6, seed=0)


def workspace(root: Path, samples: SampleSet, *, pretrain: bool = True) -> tuple[Workspace, str]:
    """A workspace with ``samples`` as dataset "d" and, optionally, a pretrained backbone."""
    ws = Workspace.init(root)
    ws.register(samples, dataset="d")
    if not pretrain:
        return ws, ""
    public = make_blobs(n=60, classes=3, features=6, seed=7, id_prefix="p")
    ws.register(public, dataset="public", deletable=False)
    torch.manual_seed(0)
    model = build_backbone_mlp(input_shape=(6,), num_classes=3, **OPTIONS)
    bb = pretrain_backbone(
        provenance=ws.provenance,
        store=ws.store,
        features=ws.features,
        dataset="public",
        model=model,
        train=TrainConfig(epochs=1, batch_size=16, lr=0.05),
    )
    return ws, bb.checkpoint_id


def config(backbone: str = "", **kw: Any) -> S3TConfig:
    base: dict[str, Any] = {
        "shards": 2,
        "slices": 2,
        "sequences": 2,
        "model": "backbone_mlp",
        "model_options": OPTIONS,
        "train": FAST,
        "retrain_when": "never",
    }
    if backbone:
        base.update(backbone_checkpoint=backbone, pretraining_dataset="public")
    base.update(kw)
    return S3TConfig(**base)


def fit(ws: Workspace, cfg: S3TConfig, name: str = "m") -> S3T:
    model = ws.train(name=name, dataset="d", strategy="s3t", config=cfg)
    assert isinstance(model, S3T)
    return model
