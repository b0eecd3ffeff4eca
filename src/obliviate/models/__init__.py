"""Model zoo: small, deterministic, unlearning-safe classifiers and factories for custom ones.

Every zoo model is built from torch's global RNG (seed it for reproducible weights) and uses
GroupNorm instead of BatchNorm, whose batch and running statistics would couple samples and
remember deleted ones. :func:`check_model` enforces that for custom models too.
"""

from __future__ import annotations

from obliviate.models.backbone import BackboneOptions, pretrain_backbone
from obliviate.models.checks import check_model
from obliviate.models.cnn import CNNOptions
from obliviate.models.dense import MLPOptions
from obliviate.models.factory import build_model, resolve_factory
from obliviate.models.resnet import ResNetOptions
from obliviate.models.zoo import MODELS, ModelBuilder

__all__ = [
    "MODELS",
    "BackboneOptions",
    "CNNOptions",
    "MLPOptions",
    "ModelBuilder",
    "ResNetOptions",
    "build_model",
    "check_model",
    "pretrain_backbone",
    "resolve_factory",
]
