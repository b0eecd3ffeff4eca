"""Jia et al.'s unlearning protocol, scaled to a small CNN on 2 CPU cores, in one run.

"Model Sparsity Can Simplify Machine Unlearning" (NeurIPS 2023) compares approximate methods
with Retrain on UA (100 - forget accuracy), RA (retain accuracy), TA (test accuracy),
MIA-Efficacy (SVC on true-class confidence; share of forget samples called non-members) and
RTE (run time), summarised as Avg. Gap = mean |metric - Retrain's metric| over UA, RA, TA and
MIA. Here three settings, all with the zoo's small CNN:

- ``fashion_mnist``: 50,000 training images drawn from Fashion-MNIST's official training
  split and its official 10,000 test images. The CNN generalises about as well as the paper's
  ResNet-18 on CIFAR-10 (Retrain's UA near 9 against the paper's 5).
- ``fashion_mnist_subset``: 6,000 / 1,000 of the same splits, the low-data regime where the
  CNN memorises its training set (Retrain's UA near 15).
- ``cifar10_subset``: the CIFAR-10 subset in /work/shared/data (4,000 / 1,000, all that is
  there), where memorisation dominates (Retrain's UA near 54).

Each runs random forgetting of 10% of the training set and class-wise forgetting (class c
removed from the test set too), on the dense model and on a 90%-sparse one from OMP (prune
first, then unlearn). Methods: the paper's FT, GA, RL, FF, IU, l1-sparse, SalUn and BS, plus
EU-k (Goel et al.: the fully connected head re-initialised and trained on cached features;
our tuned forget term, maximum entropy or ascent on the forget rows, where the search picks
one) and NegGrad+ then EU-k (``neggrad_eu_k``: a retain-anchored ascent over the whole model
first, so that the body's memory of the forget set is reduced too).

The original model and Retrain use one recipe (SGD lr 0.02, momentum 0.9, cosine, E epochs)
that fits the training set, as the paper's ResNet-18 does (Retrain's RA is 100 there): with
lr 0.05 and 15 epochs two Retrains of the CIFAR-10 subset ended at RA 74% and 91%, so the
reference itself was noise. Like the published tables, every cell is the mean over
independent trials (a trial = its own initialisation, forget set or class, and unlearning
seed): ten in the two small settings, as in the SalUn table the target quotes, and three at
50,000 images, where a trial takes 35-40 minutes. Avg. Gap is taken between the means;
the mean of the per-trial Avg. Gaps is reported next to it. The noise floor is the Avg. Gap
of a second set of Retrains (other seeds): no method can be expected to come closer to the
reference than that.

Hyperparameters: ``--tune`` searches each iterative method's learning rate (x0.01 to x10) and
epochs (x1, x2; EU-k x1 to x3 in half steps), then, with those fixed, SalUn's rho, l1-sparse's
gamma, boundary shrink's epsilon, neggrad_eu_k's retain weight and head epochs and EU-k's
head weight decay, then its forget term (loss and weight together), then its step size on a
ladder about x1.2 apart, all three twice over (KNOB_GRID, KNOB_PASSES),
on a *validation* setting (other seeds, so a different forget set, class and initialisation;
Fashion-MNIST from other training images, for the 50,000-image setting the 10,000 it leaves out;
CIFAR-10 with 1,000 of its training images as the test set) and keeps, per method, the lowest
validation Avg. Gap among the settings that ran within 9% of the validation Retrain's time (10%
headroom). The small settings search on three validation trials (seeds 1-3; the gap between
their means), the 50,000-image one on one (seed 1). A setting's time is the median of four runs
of it, against the mean of two validation Retrains: one timing of a few seconds can be off by
more than the headroom. The search runs on the dense validation originals and on their
OMP-sparse counterparts (``--modes``; a sparse table uses the sparse search's pick where the file
has one and the dense pick otherwise), since the sparse model's retain accuracy, and its
Retrain's, sit lower and a step size fit for one need not suit the other. ``--refine`` then
tries each pick's learning rate half a grid step lower and higher (x0.577, x1.73), measuring
the pick again beside them on the same validation trials, and keeps the best by the same rule:
the grid's x3 steps can straddle a good setting. ``--knobs`` searches only the methods'
KNOB_GRID knobs, starting from each table's pick and measuring the pick again beside them
(for knobs added after the picks were made: EU-k's forget term, then its weight decay, then
its finer step size; NegGrad+ then EU-k's head knobs, epochs and finer step size, starting
from the better of its pick and its pick with the table's EU-k head, KNOB_STARTS), on six
validation trials in the small settings (three could not tell the settings apart;
``--knob-folds`` sets how many), never taking a setting over the time budget in place of
the pick;
``--tables`` limits ``--refine`` and ``--knobs`` to some tables (keys as in the tuned file).
It writes
results/approximate_jia_tuned.json; the reported run reads it and never sees its own numbers
during tuning. Without that file the defaults below are used.

    # every method, dense and sparse models (the dense half took about 25 minutes on 2 cores
    # before the retimings were added; the two subsets' sparse half 19 minutes)
    .venv/bin/python benchmarks/approximate_jia.py --tune --jobs 2
    # only the small settings' scenarios, keeping the other choices
    .venv/bin/python benchmarks/approximate_jia.py --tune --jobs 2 \
        --datasets fashion_mnist_subset cifar10_subset
    .venv/bin/python benchmarks/approximate_jia.py --tune --methods eu_k --jobs 2  # 19 minutes
    # only the sparse models of the small settings
    .venv/bin/python benchmarks/approximate_jia.py --tune --jobs 2 --modes sparse \
        --datasets fashion_mnist_subset cifar10_subset
    # half-step learning rates around the small settings' picks (858 s on 2 cores)
    .venv/bin/python benchmarks/approximate_jia.py --refine --jobs 2 \
        --datasets fashion_mnist_subset cifar10_subset
    # EU-k's forget term from the small settings' picks (1,337 s on 2 cores)
    .venv/bin/python benchmarks/approximate_jia.py --knobs --methods eu_k --jobs 2 \
        --datasets fashion_mnist_subset cifar10_subset
    # the same on three tables, with EU-k's weight decay added to its knobs (1,477 s on 2 cores)
    .venv/bin/python benchmarks/approximate_jia.py --knobs --methods eu_k --jobs 2 \
        --datasets fashion_mnist_subset cifar10_subset --tables fashion_mnist_subset/random/sparse \
        cifar10_subset/random cifar10_subset/random/sparse
    # the two sparse random tables, EU-k's step size added and its knobs gone through twice
    # (710 s on 2 cores)
    .venv/bin/python benchmarks/approximate_jia.py --knobs --methods eu_k --jobs 2 \
        --datasets fashion_mnist_subset cifar10_subset --tables fashion_mnist_subset/random/sparse \
        cifar10_subset/random/sparse
    # NegGrad+ then EU-k's knobs on the sparse CIFAR-10 subset's random table (1,524 s; run
    # again with KNOB_STARTS, from the first run's pick or EU-k's head, whichever was better)
    # (a sixth time with CARRY_KNOBS: 1,351 s; its pick was not kept, see CARRY_KNOBS)
    .venv/bin/python benchmarks/approximate_jia.py --knobs --methods neggrad_eu_k --jobs 2 \
        --datasets cifar10_subset --tables cifar10_subset/random/sparse
    # EU-k's knobs there again on twelve validation trials (seeds 1-12; 747 s, pick kept)
    .venv/bin/python benchmarks/approximate_jia.py --knobs --methods eu_k --jobs 2 \
        --datasets cifar10_subset --tables cifar10_subset/random/sparse --knob-folds 12
    .venv/bin/python benchmarks/approximate_jia.py --jobs 2          # 78-94 minutes on 2 cores
    # the two subsets with EU-k and NegGrad+ then EU-k only (3,284 s on a slower 2-core machine)
    .venv/bin/python benchmarks/approximate_jia.py --jobs 2 --datasets fashion_mnist_subset \
        cifar10_subset --methods eu_k neggrad_eu_k --out benchmarks/results/approximate_jia_subsets
    .venv/bin/python benchmarks/approximate_jia.py --quick           # a smoke run

Writes benchmarks/results/approximate_jia.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from torch import nn

from obliviate._hashing import derive_seed
from obliviate.data import load_dataset
from obliviate.errors import ObliviateError
from obliviate.evaluation import accuracy, predict_proba, svc_mia_efficacy
from obliviate.models import build_model
from obliviate.strategies.approximate import METHODS, LabelledData
from obliviate.strategies.approximate.pruning import PruneConfig, prune

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = Path(os.environ.get("OBLIVIATE_DATA_DIR", "/work/shared/data"))
TUNED = RESULTS / "approximate_jia_tuned.json"
METHOD_ORDER = [
    "finetune",
    "gradient_ascent",
    "random_label",
    "fisher",
    "influence",
    "l1_sparse",
    "salun",
    "boundary_shrink",
    "eu_k",
    "neggrad_eu_k",
]
# The step size each method's search scales (lr for iterative methods, alpha for one-shot).
STEP_FIELD = {"fisher": "alpha", "influence": "alpha"}
LR_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
EPOCH_GRID: tuple[float, ...] = (1, 2)
# EU-k's head epochs are cheap (its fixed cost, the body's forward pass over the retain set,
# is under a third of one training epoch), so its search goes in half steps up to x3
# (4 to 12 epochs): the budget falls between two of them, and a coarse step jumps over it.
EPOCH_GRID_OF: dict[str, tuple[float, ...]] = {"eu_k": (1, 1.5, 2, 2.5, 3)}
BUDGET = 0.10  # the target's run-time limit, as a fraction of Retrain's
TUNING_BUDGET = 0.09  # tuning keeps 10% headroom: run times vary from run to run
# One timing of a method that runs for seconds can be off by more than that headroom (stop 15:
# one search timing said 8.9% where four later ones said 10.1-11.1%). So the validation Retrain
# is timed twice, and a setting is kept only once RETIMINGS more runs of it put the median of
# its timings within TUNING_BUDGET. Settings whose one timing is beyond SCREEN x TUNING_BUDGET
# are not retimed (a same-seed rerun gives the same model, so only the time is new).
RETIMINGS = 3
SCREEN = 1.25
# What a search record holds besides the setting itself.
_SEARCH_RECORD = (
    "method",
    "gap",
    "time_ratio",
    "timings",
    "retrain_seconds",
    "refined_from",
    "knobs_from",
    "knobs_started_from",
)
# ``--refine``: the learning-rate multipliers tried around each pick, half a grid step
# (LR_GRID's steps are about x3) below and above it.
REFINE = (3**-0.5, 3**0.5)
# Each method's own knob, searched once its (lr, epochs) is fixed (values, not multipliers).
# A value is one setting of the knob, or a dict of settings tried together (a joint knob).
KnobValue = float | str | dict[str, float | str]
KNOB_GRID: dict[str, dict[str, tuple[KnobValue, ...]]] = {
    "salun": {"rho": (0.1, 0.3, 0.5, 0.7, 0.9)},
    "l1_sparse": {"gamma": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)},
    "boundary_shrink": {"epsilon": (0.03, 0.1, 0.3)},
    # NegGrad+ then EU-k: the retain weight of its first phase, then its head epochs (8 by
    # default, the budget's neighbourhood for EU-k alone). Then the head's own knobs, as
    # EU-k's below: weight decay, forget term, step size (0.05 x 3^(k/6), x0.577 to x6.24);
    # last the ascent phase's epochs and step size (the same ladder, from x0.333). Scratch
    # runs on the six knob folds of the sparse CIFAR-10 subset (random forgetting) gave the
    # head EU-k's pick there (lr 0.06, weight decay 2e-3, ascent 0.005) after one NegGrad+
    # epoch at lr x3: gap 0.90 against EU-k's pick's 1.92 on the same folds; without the
    # forget term, 2.81.
    "neggrad_eu_k": {
        "retain_weight": (0.5, 0.9),
        "head_epochs": (6, 10, 12),
        "head_weight_decay": (2e-3, 5e-3, 1e-2),
        "head_forget_term": tuple(
            {"head_forget_loss": loss, "head_forget_weight": weight}
            for loss in ("entropy", "ascent")
            for weight in (0.001, 0.002, 0.005, 0.01, 0.02, 0.03)
        ),
        "head_lr": tuple(0.05 * 3 ** (k / 6) for k in range(-3, 11)),
        "epochs": (1, 2),
        "lr": tuple(3 ** (k / 6) for k in range(-6, 11)),
    },
    # EU-k: the head's weight decay, then its forget term. Weight decay first: on six folds of
    # the sparse Fashion-MNIST subset a stronger decay moved the head's RA (99.4 against
    # Retrain's 97.6) and TA toward Retrain's (x4 and x10: gap 1.05 -> 0.95 and 1.02) and
    # lowered UA, which the forget term, searched after it, can raise again. The forget term's
    # weight and loss go together (the two losses want similar weights, and at weight 0 the
    # loss is moot, so a coordinate search could not compare them): scratch runs on six
    # CIFAR-10 subset folds put the useful weights between 0.002 (dense) and 0.02 (sparse);
    # at 0.1 the head singles the forget samples out (UA 66 against Retrain's 54).
    # Then its step size again, on a ladder 3^(k/6), x0.577 to x6.24 (about x1.2 apart; LR_GRID's
    # x3 steps and --refine's half steps are too coarse once the forget term is in: on six
    # sparse CIFAR-10 subset folds the head's RA went 83.4 -> 87.1 -> 89.9 -> 93.0 at lr x1,
    # x1.15, x1.3 and x1.5, against Retrain's 88.3).
    "eu_k": {
        "weight_decay": (2e-3, 5e-3, 1e-2),
        "forget_term": tuple(
            {"forget_loss": loss, "forget_weight": weight}
            for loss in ("entropy", "ascent")
            for weight in (0.001, 0.002, 0.005, 0.01, 0.02, 0.03)
        ),
        "lr": tuple(3 ** (k / 6) for k in range(-3, 11)),
    },
}
# How many times ``--knobs`` goes through a method's knobs. EU-k's depend on each other (the
# forget weight that suits one step size is wrong for the next: on six sparse Fashion-MNIST
# subset folds, lr x5.77 wanted ascent 0.02 (gap 0.97; 0.03: 1.52) and lr x3 wanted 0.03
# (0.43; 0.02: 0.75)), and one pass would stop at the first step size it moves to; its trials
# cost seconds on cached features, so a second pass is cheap.
KNOB_PASSES: dict[str, int] = {"eu_k": 2, "neggrad_eu_k": 2}
# ``--knobs`` starts a method's search from the better of its pick and its pick with another
# method's setting carried over, where the two share a part: NegGrad+ then EU-k ends with
# EU-k, so the same table's EU-k pick is a head setting already searched on these folds.
# (Sparse CIFAR-10 subset, random, six knob folds: scratch runs of the NegGrad+ then EU-k
# pick with EU-k's head, one NegGrad+ epoch at lr x3 and ascent 0.005, gave 0.90, where the
# coordinate search from the pick's default head had stopped at 1.31. In the recorded search
# the carried-over head measured 3.56 with the pick's two NegGrad+ epochs at lr x2.5, so the
# search went on from the pick: 1.15.)
KNOB_STARTS: dict[str, str] = {"neggrad_eu_k": "eu_k"}
# The carried-over start's own settings searched before it is compared with the pick: the
# pick's ascent phase (epochs, step size) was searched with another head, and the carried
# head wants its own (the 3.56 above is EU-k's head after two epochs at lr x2.5; the 0.90 is
# the same head after one at x3). Epochs and step size jointly, as the first search does.
# (The sixth knob search, the first with this, on a 2-core AMD EPYC: the carried head
# measured 3.18, and 1.48 with its ascent phase searched (2 epochs at x0.69; one epoch at x3
# measured worse there). The pick measured 1.26 but timed at 10.5% of Retrain's time, so the
# search took head weight decay 5e-3 in place of 1e-2 (1.72 at 8.7%), a change that costs no
# time; its pick was not kept, see docs/methods/pruning.md.)
CARRY_KNOBS: dict[str, tuple[dict[str, KnobValue], ...]] = {
    "neggrad_eu_k": tuple(
        {"epochs": epochs, "lr": lr}
        for epochs in KNOB_GRID["neggrad_eu_k"]["epochs"]
        for lr in KNOB_GRID["neggrad_eu_k"]["lr"]
    ),
}
TRIAL_STRIDE = 100  # trial t runs with seed + 100 t
# Validation trials per setting. One trial on 6,000 images is noisy at the noise floor's level
# (stop 16 kept EU-k's 4 epochs at lr x3 on a validation gap of 0.77, and the reported tables
# got 2.11 and 1.84 where stop 15 had 1.32); the small settings are cheap, so they search on
# the mean over three. The 50,000-image setting, where one trial costs minutes, keeps one.
VALIDATION_SEEDS: dict[str, tuple[int, ...]] = {"fashion_mnist": (1,)}
SMALL_SETTING_SEEDS = (1, 2, 3)
# ``--knobs`` compares settings whose gaps differ by less than three folds resolve: on seeds
# 1-3 the CIFAR-10 subset's random dense EU-k pick measured 0.72, on seeds 1-6 1.55 (and 1.48
# in the reported run). The small settings' knob search therefore runs on six.
KNOB_SEEDS = (1, 2, 3, 4, 5, 6)
NOISE_FLOOR = "retrain (other seeds)"
_REFERENCES = ("retrain", "original", NOISE_FLOOR)
_METRICS = ("UA", "RA", "TA", "MIA")
SCENARIOS = ("random", "classwise")
MODES = ("dense", "sparse")
SALUN_TARGET = 1.15  # SalUn's published Avg. Gap, CIFAR-10 ResNet-18, 10% random forgetting


@dataclass(frozen=True)
class Scale:
    """How big a run is."""

    train: dict[str, int]
    test: dict[str, int]
    epochs: int
    method_epochs: int
    lr: float = 0.02
    trials: int = 3
    sparsity: float = 0.9
    trials_of: dict[str, int] = field(default_factory=dict)

    def trials_for(self, setting: str) -> int:
        """How many independent trials a setting's tables average over."""
        return self.trials_of.get(setting, self.trials)


FULL = Scale(
    train={"fashion_mnist": 50000, "fashion_mnist_subset": 6000, "cifar10_subset": 4000},
    test={"fashion_mnist": 10000, "fashion_mnist_subset": 1000, "cifar10_subset": 1000},
    epochs=25,
    method_epochs=1,
    # The small settings run SalUn's published protocol, ten independent trials (their
    # per-trial spread is several points of UA and MIA on 400-600 forget samples, and three
    # trials left the headline gap within that noise); a 50,000-image trial takes 35-40 minutes.
    trials_of={"fashion_mnist_subset": 10, "cifar10_subset": 10},
)
REDUCED = Scale(
    train={"fashion_mnist": 12000, "fashion_mnist_subset": 3000, "cifar10_subset": 2000},
    test={"fashion_mnist": 2000, "fashion_mnist_subset": 500, "cifar10_subset": 500},
    epochs=15,
    method_epochs=1,
    trials=2,
)
QUICK = Scale(
    train={"fashion_mnist": 1200, "fashion_mnist_subset": 600, "cifar10_subset": 400},
    test={"fashion_mnist": 400, "fashion_mnist_subset": 200, "cifar10_subset": 200},
    epochs=2,
    method_epochs=1,
    trials=2,
)
# A setting names the dataset it draws from when the two differ (the subset is the low-data
# regime: a tenth of Fashion-MNIST's training split, where the CNN memorises far more).
SOURCE = {"fashion_mnist_subset": "fashion_mnist"}


def validation_seeds(setting: str) -> tuple[int, ...]:
    """The seeds of a setting's validation trials (never a reported trial's seed)."""
    return VALIDATION_SEEDS.get(setting, SMALL_SETTING_SEEDS)


def source(setting: str) -> str:
    """The dataset a setting draws its images from (and seeds its initialisation with)."""
    return SOURCE.get(setting, setting)


def default_configs(scale: Scale) -> dict[str, Any]:
    """Each method's config at about a twentieth of Retrain's sample passes (x2 in tuning)."""
    e = scale.method_epochs
    cfg: dict[str, Any] = {}
    for name in METHOD_ORDER:
        cls = METHODS.get(name).config_class
        fields = cls.__dataclass_fields__
        kwargs: dict[str, Any] = {}
        if "epochs" in fields:
            # Methods that only pass over the forget set (10%) can afford more passes, and
            # EU-k's epochs over cached features cost about a quarter of a full-model epoch
            # (the CNN's wide fully connected layer is its head).
            kwargs["epochs"] = {"gradient_ascent": 5, "boundary_shrink": 5, "eu_k": 4}.get(
                name, 1
            ) * e
        if name == "influence":
            # A fixed LiSSA scale skips the full-batch power iteration; mini-batch products
            # keep the solve near a tenth of Retrain's cost.
            kwargs.update(solver="lissa", lissa_depth=30, lissa_batch_size=64, lissa_scale=200.0)
        if name == "fisher":
            # The per-sample Fisher costs K backward passes per retain sample (far beyond a
            # tenth of Retrain here); the paper's code squares batch-mean gradients instead.
            kwargs["fisher"] = "batch_mean"
        cfg[name] = cls(**kwargs)
    return cfg


def configured(config: Any, method: str, choice: dict[str, Any] | None) -> Any:
    """``config`` with a tuned choice applied: step size x ``lr``, epochs x ``epochs``, and
    any method knob (``rho``, ``gamma``, ``epsilon``) set to the chosen value."""
    if not choice:
        return config
    field = STEP_FIELD.get(method, "lr")
    changes = {field: getattr(config, field) * choice.get("lr", 1.0)}
    fields = type(config).__dataclass_fields__
    if "epochs" in fields:
        changes["epochs"] = max(1, round(config.epochs * float(choice.get("epochs", 1))))
    changes.update({k: v for k, v in choice.items() if k in fields and k not in changes})
    return replace(config, **changes)


def load_setting(
    setting: str, scale: Scale, *, validation: bool
) -> tuple[LabelledData, LabelledData]:
    """Train and test sets; the validation setting never touches the official test split."""
    n_train, n_test = scale.train[setting], scale.test[setting]
    dataset = source(setting)
    full = LabelledData.from_sample_set(load_dataset(dataset, split="train", data_dir=DATA))
    if dataset == "cifar10_subset" and validation:
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(11))
        n_val = min(n_test, len(full) // 4)
        return full.subset(order[n_val:][:n_train]), full.subset(order[:n_val])
    if validation:  # other training images of Fashion-MNIST
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(11))
        return full.subset(order[:n_train]), full.subset(order[n_train : n_train + n_test])
    test = LabelledData.from_sample_set(load_dataset(dataset, split="test", data_dir=DATA))
    take = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[:n_train]
    return full.subset(take), test.subset(torch.arange(min(n_test, len(test))))


@dataclass(frozen=True)
class Split:
    """A forgetting scenario on one training set."""

    scenario: str
    forget: LabelledData
    retain: LabelledData
    test: LabelledData
    forgotten_class: int | None


@dataclass(frozen=True)
class Fold:
    """One validation trial: its original (and sparsity mask), its split and its seed."""

    original: nn.Module
    split: Split
    seed: int
    mask: dict[str, torch.Tensor] | None = None


def make_split(
    train: LabelledData,
    test: LabelledData,
    scenario: str,
    seed: int,
    *,
    forgotten_class: int | None = None,
) -> Split:
    """10% random forgetting, or class-wise forgetting of ``forgotten_class`` (drawn from
    ``seed`` when not given; class 0 for seed 0)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "split", scenario))
    if scenario == "random":
        order = torch.randperm(len(train), generator=gen)
        cut = round(0.1 * len(train))
        return Split(scenario, train.subset(order[:cut]), train.subset(order[cut:]), test, None)
    c = forgotten_class
    if c is None:
        c = int(torch.randint(0, 10, (1,), generator=gen)) if seed else 0
    out = train.labels == c
    kept = torch.nonzero(test.labels != c).flatten()
    return Split(
        scenario,
        train.subset(torch.nonzero(out).flatten()),
        train.subset(torch.nonzero(~out).flatten()),
        test.subset(kept),
        c,
    )


def metrics(model: nn.Module, split: Split) -> dict[str, float]:
    """UA, RA, TA and MIA-Efficacy in percent."""
    probs = {
        name: predict_proba(model, data.features)
        for name, data in (("f", split.forget), ("r", split.retain), ("t", split.test))
    }
    return {
        "UA": 100.0 - accuracy(probabilities=probs["f"], labels=split.forget.labels.numpy()),
        "RA": accuracy(probabilities=probs["r"], labels=split.retain.labels.numpy()),
        "TA": accuracy(probabilities=probs["t"], labels=split.test.labels.numpy()),
        "MIA": svc_mia_efficacy(
            retain_probs=probs["r"],
            retain_labels=split.retain.labels.numpy(),
            test_probs=probs["t"],
            test_labels=split.test.labels.numpy(),
            forget_probs=probs["f"],
            forget_labels=split.forget.labels.numpy(),
        ),
    }


def avg_gap(row: dict[str, float], reference: dict[str, float]) -> float:
    return float(np.mean([abs(row[k] - reference[k]) for k in ("UA", "RA", "TA", "MIA")]))


def initialisation(dataset: str, shape: tuple[int, ...], seed: int) -> nn.Module:
    """The untrained network a trial's originals grow from (one draw per dataset and seed)."""
    torch.manual_seed(derive_seed(seed, "init", source(dataset)))
    return build_model("cnn", input_shape=shape, num_classes=10)


def originals(
    dataset: str, train: LabelledData, scale: Scale, seed: int
) -> tuple[nn.Module, nn.Module, dict[str, torch.Tensor], float]:
    """Dense and OMP-sparse originals from one call, and the dense training time."""
    init = initialisation(dataset, train.sample_shape, seed)
    config = PruneConfig(epochs=scale.epochs, lr=scale.lr, batch_size=64, rewind_epoch=1)
    result = prune(method="omp", model=init, train=train, sparsity=scale.sparsity, config=config)
    if result.dense is None:  # pragma: no cover - OMP always trains dense
        raise RuntimeError("OMP returned no dense model")
    return result.dense, result.model, result.mask, result.seconds


def retrain_row(
    *,
    original: nn.Module,
    mask: dict[str, torch.Tensor] | None,
    split: Split,
    scale: Scale,
    seed: int,
    name: str = "retrain",
    reinitialise: bool = True,
) -> dict[str, Any]:
    """Retrain from scratch on the retain set with the originals' recipe: metrics and time.

    ``reinitialise=False`` trains ``original`` from the weights it has (pass an untrained
    initialisation)."""
    config = METHODS.get("retrain").config_class(
        lr=scale.lr,
        epochs=scale.epochs,
        batch_size=64,
        schedule="cosine",
        reinitialise=reinitialise,
    )
    result = METHODS.get("retrain")(config).unlearn(
        model=original, forget=split.forget, retain=split.retain, mask=mask, seed=seed
    )
    return {"method": name, **metrics(result.model, split), "seconds": result.seconds}


def references(
    *,
    original: nn.Module,
    mask: dict[str, torch.Tensor] | None,
    split: Split,
    scale: Scale,
    seed: int,
) -> list[dict[str, Any]]:
    """Retrain (the reference), a second Retrain with another seed, and the original."""
    common: dict[str, Any] = {"original": original, "mask": mask, "split": split, "scale": scale}
    return [
        retrain_row(**common, seed=seed),
        retrain_row(**common, seed=seed + 1000, name=NOISE_FLOOR),
        {"method": "original", **metrics(original, split), "seconds": 0.0},
    ]


def method_row(
    *,
    name: str,
    config: Any,
    original: nn.Module,
    mask: dict[str, torch.Tensor] | None,
    split: Split,
    seed: int,
) -> dict[str, Any]:
    """One method's metrics and time; a method that fails is reported, not fatal."""
    try:
        result = METHODS.get(name)(config).unlearn(
            model=original, forget=split.forget, retain=split.retain, seed=seed, mask=mask
        )
    except ObliviateError as exc:  # e.g. a diverging step size
        nan = float("nan")
        return {"method": name, **dict.fromkeys(_METRICS, nan), "seconds": nan, "error": str(exc)}
    return {"method": name, **metrics(result.model, split), "seconds": result.seconds}


def with_gaps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds each row's Avg. Gap to the first row (Retrain) and its time ratio to it."""
    ref = rows[0]
    for row in rows:
        failed = "error" in row
        row["avg_gap"] = float("inf") if failed else avg_gap(row, ref)
        row["time_ratio"] = row["seconds"] / ref["seconds"]
    return rows


def trial_tables(
    dataset: str,
    scale: Scale,
    seed: int,
    methods: list[str],
    choices: dict[str, dict[str, Any]],
    trial: int = 0,
) -> list[dict[str, Any]]:
    """One trial (one seed) of every (scenario, dense/sparse) table of one dataset.

    Trial t forgets class 3t mod 10 in the class-wise tables, so trials never repeat a class.
    """
    torch.set_num_threads(1)
    base = default_configs(scale)
    tables: list[dict[str, Any]] = []
    train, test = load_setting(dataset, scale, validation=False)
    dense, sparse, mask, _ = originals(dataset, train, scale, seed)
    for scenario in SCENARIOS:
        split = make_split(train, test, scenario, seed, forgotten_class=(3 * trial) % 10)
        for mode, model, model_mask in (("dense", dense, None), ("sparse", sparse, mask)):
            chosen = mode_choices(choices, dataset, scenario, mode)
            configs = {m: configured(base[m], m, chosen.get(m)) for m in methods}
            rows = references(original=model, mask=model_mask, split=split, scale=scale, seed=seed)
            for name in methods:
                rows.append(
                    method_row(
                        name=name,
                        config=configs[name],
                        original=model,
                        mask=model_mask,
                        split=split,
                        seed=seed,
                    )
                )
            tables.append(
                {
                    "dataset": dataset,
                    "scenario": scenario,
                    "mode": mode if mode == "dense" else f"{int(100 * scale.sparsity)}% sparse",
                    "seed": seed,
                    "forget": len(split.forget),
                    "retain": len(split.retain),
                    "test": len(split.test),
                    "forgotten_class": split.forgotten_class,
                    "rows": with_gaps(rows),
                    "configs": {m: configs[m].to_dict() for m in methods},
                }
            )
        print(f"{dataset} seed {seed} {scenario} done", flush=True)
    return tables


def aggregate(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (dataset, scenario, mode): means over trials and Avg. Gap between the means."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for table in trials:
        groups.setdefault((table["dataset"], table["scenario"], table["mode"]), []).append(table)
    tables: list[dict[str, Any]] = []
    for (dataset, scenario, mode), group in groups.items():
        names = [r["method"] for r in group[0]["rows"]]
        rows = [_mean_row(name, [_row(t, name) for t in group]) for name in names]
        ref = rows[0]
        for row in rows:
            ok = "error" not in row
            row["avg_gap"] = avg_gap(row, ref) if ok else float("inf")
            row["time_ratio"] = row["seconds"] / ref["seconds"] if ok else float("nan")
            per_trial = [_row(t, row["method"])["avg_gap"] for t in group]
            row["avg_gap_trials"] = float(np.mean(per_trial)) if ok else float("inf")
            row["time_ratio_max"] = (
                max(_row(t, row["method"])["time_ratio"] for t in group) if ok else float("nan")
            )
        best, in_budget = best_row(rows), best_row(rows, budget=BUDGET)
        tables.append(
            {
                "dataset": dataset,
                "scenario": scenario,
                "mode": mode,
                "trials": len(group),
                "seeds": [t["seed"] for t in group],
                "forget": [t["forget"] for t in group],
                "forgotten_class": [t["forgotten_class"] for t in group],
                "rows": rows,
                "best": best,
                "best_in_budget": in_budget,
                "noise_floor": _named(rows, NOISE_FLOOR)["avg_gap"],
                "target_met": in_budget["avg_gap"] <= 1.0,
                "configs": group[0]["configs"],
            }
        )
    return tables


def _row(table: dict[str, Any], name: str) -> dict[str, Any]:
    return _named(table["rows"], name)


def _named(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in rows if r["method"] == name)


def _mean_row(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r for r in rows if "error" in r]
    out: dict[str, Any] = {"method": name}
    for key in (*_METRICS, "seconds"):
        values = [r[key] for r in rows if "error" not in r]
        out[key] = float(np.mean(values)) if values else float("nan")
        out[f"{key}_std"] = float(np.std(values)) if values else float("nan")
    if failed:
        out["error"] = f"failed in {len(failed)} of {len(rows)} trials: {failed[0]['error']}"
    return out


class _Search:
    """Settings of one (setting, scenario, mode) measured against its validation Retrains.

    A setting's gap is the Avg. Gap between its means and the Retrains' means over the folds
    (as the reported tables take it over trials), its time the ratio of the mean times. "Best"
    is the lowest gap whose median time, over 1 + RETIMINGS runs, is within TUNING_BUDGET of
    the Retrains' mean time over two runs each (the lowest gap overall when nothing fits).
    """

    def __init__(self, *, folds: list[Fold], scale: Scale) -> None:
        self.folds = folds
        self.base = default_configs(scale)
        refs: list[dict[str, Any]] = []
        self.ref_seconds: list[float] = []
        for fold in folds:
            common: dict[str, Any] = {
                "original": fold.original,
                "mask": fold.mask,
                "split": fold.split,
                "scale": scale,
            }
            first = retrain_row(**common, seed=fold.seed)
            seconds = [first["seconds"], retrain_row(**common, seed=fold.seed)["seconds"]]
            self.ref_seconds += seconds
            refs.append({**first, "seconds": float(np.mean(seconds))})
        self.ref = _mean_row("retrain", refs)
        # Records by setting: a same-seed rerun gives the same models, and --knobs' second
        # pass meets settings the first already measured (all of them, when it moved nothing).
        self._trials: dict[str, dict[str, Any]] = {}

    def run(self, name: str, choice: dict[str, Any]) -> dict[str, Any]:
        """The mean row of ``name`` at ``choice`` over the folds, with its gap and time ratio."""
        config = configured(self.base[name], name, choice)
        rows = [
            method_row(
                name=name,
                config=config,
                original=fold.original,
                mask=fold.mask,
                split=fold.split,
                seed=fold.seed,
            )
            for fold in self.folds
        ]
        return with_gaps([self.ref, _mean_row(name, rows)])[1]

    def trial(self, name: str, choice: dict[str, Any]) -> dict[str, Any]:
        """A search record of one setting, timed once (the same record when asked again)."""
        key = json.dumps([name, choice], sort_keys=True)
        if key not in self._trials:
            row = self.run(name, choice)
            self._trials[key] = {
                "method": name,
                **choice,
                "gap": row["avg_gap"],
                "time_ratio": row["time_ratio"],
                "timings": [row["time_ratio"]],
            }
        return self._trials[key]

    def retime(self, tried: dict[str, Any]) -> None:
        """Adds RETIMINGS timings to a once-timed setting; its time becomes their median."""
        if len(tried["timings"]) > 1:
            return
        choice = setting_of(tried)
        tried["timings"] += [
            self.run(tried["method"], choice)["time_ratio"] for _ in range(RETIMINGS)
        ]
        tried["time_ratio"] = float(np.median(tried["timings"]))

    def best(self, tried: list[dict[str, Any]]) -> dict[str, Any]:
        """The lowest-gap record within the tuning budget (see the class docstring)."""
        for candidate in sorted(tried, key=lambda t: t["gap"]):
            if not np.isfinite(candidate["gap"]):
                break
            if candidate["time_ratio"] > SCREEN * TUNING_BUDGET:
                continue
            self.retime(candidate)
            if candidate["time_ratio"] <= TUNING_BUDGET:
                return candidate
        return min(tried, key=lambda t: t["gap"])

    def record(self, pick: dict[str, Any]) -> dict[str, Any]:
        """What the tuned file keeps of a pick."""
        return {
            **{k: v for k, v in pick.items() if k != "method"},
            "retrain_seconds": self.ref_seconds,
        }


def setting_of(record: dict[str, Any]) -> dict[str, Any]:
    """The setting (multipliers and knob values) of a search record, without its measurements."""
    return {k: v for k, v in record.items() if k not in _SEARCH_RECORD}


def run_tuning_grid(
    *,
    dataset: str,
    scenario: str,
    folds: list[Fold],
    scale: Scale,
    methods: list[str],
) -> dict[str, Any]:
    """Per method: the best (lr, epochs) multiplier, then the best value of its own knob.

    A coordinate search against the validation Retrains (:class:`_Search`): every (lr, epochs)
    pair first, then, with that pair fixed, each value in ``KNOB_GRID`` for the methods that
    have one.
    """
    search = _Search(folds=folds, scale=scale)
    chosen: dict[str, Any] = {}
    for name in methods:
        grid = EPOCH_GRID_OF.get(name, EPOCH_GRID)
        pick = search.best(
            [search.trial(name, {"lr": f, "epochs": e}) for f in LR_GRID for e in grid]
        )
        chosen[name] = search.record(search_knobs(search, name, pick))
        print(dataset, scenario, name, chosen[name], flush=True)
    return chosen


def carried_over(
    name: str, other: str, pick: dict[str, Any], base: dict[str, Any]
) -> dict[str, Any]:
    """The settings of ``other``'s ``pick`` that ``name`` shares, as ``name``'s fields.

    Only EU-k's head into NegGrad+ then EU-k's ``head_*`` fields: step size and epochs are
    multipliers of EU-k's defaults, so they are turned into values here.
    """
    if (name, other) != ("neggrad_eu_k", "eu_k"):
        raise ValueError(f"no carry-over from {other} to {name}")
    head = configured(base[other], other, setting_of(pick))
    return {
        "head_lr": head.lr,
        "head_epochs": head.epochs,
        "head_weight_decay": head.weight_decay,
        "head_forget_loss": head.forget_loss,
        "head_forget_weight": head.forget_weight,
    }


def search_knobs(search: _Search, name: str, pick: dict[str, Any]) -> dict[str, Any]:
    """``pick`` with each of the method's KNOB_GRID knobs searched in turn, the rest fixed.

    A knob the pick already sets is searched from that value; a value equal to the config's
    default is skipped while the pick has no value of its own (the pick already runs it).
    With KNOB_PASSES the knobs are gone through again from where the last pass ended.
    """
    for _ in range(KNOB_PASSES.get(name, 1)):
        for knob, values in KNOB_GRID.get(name, {}).items():
            changes = [value if isinstance(value, dict) else {knob: value} for value in values]
            pick = search_changes(search, name, pick, changes)
    return pick


def search_changes(
    search: _Search, name: str, pick: dict[str, Any], changes: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The best of ``pick`` and ``pick`` with each of ``changes`` applied, the rest fixed."""
    start = setting_of(pick)
    tried = [pick]
    for change in changes:
        current = {k: start.get(k, getattr(search.base[name], k)) for k in change}
        if change != current:
            tried.append(search.trial(name, {**start, **change}))
    return search.best(tried)


def run_knob_search(
    *,
    dataset: str,
    scenario: str,
    folds: list[Fold],
    scale: Scale,
    picks: dict[str, dict[str, Any]],
    table: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per method: its pick with only its KNOB_GRID knobs searched (``--knobs``).

    For a knob added after a table's picks were made: the pick is measured again beside the
    knob's values on the same validation folds (a gap recorded on another run is not
    comparable), and the best is kept by the search's rule, except that a setting over the
    time budget never replaces the pick (the pick was within it when it was searched; a
    retiming here that puts every candidate over is noise, not a reason to go over).
    With KNOB_STARTS, the search starts from the better of the pick and the pick with the
    named method's setting in ``table`` (all of the table's picks) carried over, the latter
    with its CARRY_KNOBS searched first.
    """
    search = _Search(folds=folds, scale=scale)
    chosen: dict[str, Any] = {}
    for name, pick in picks.items():
        start = setting_of(pick)
        again = search.trial(name, start)
        begin = again
        other = KNOB_STARTS.get(name)
        started_from: dict[str, Any] | None = None
        if other and table and other in table:
            carried = carried_over(name, other, table[other], search.base)
            from_carried = search.trial(name, {**start, **carried})
            carry_knobs = CARRY_KNOBS.get(name, ())
            carried_best = search_changes(search, name, from_carried, carry_knobs)
            begin = search.best([again, carried_best])
            searched = {k for change in carry_knobs for k in change}
            started_from = {
                "carried_from": other,
                **carried,
                "gap": from_carried["gap"],
                "searched": {
                    **{k: v for k, v in setting_of(carried_best).items() if k in searched},
                    "gap": carried_best["gap"],
                },
            }
        best = search_knobs(search, name, begin)
        if best["time_ratio"] > TUNING_BUDGET:
            best = again
        chosen[name] = {
            **search.record(best),
            "knobs_from": {
                **{k: v for k, v in start.items() if k in ("lr", "epochs")},
                "gap": again["gap"],
                "time_ratio": again["time_ratio"],
            },
        }
        if started_from is not None:
            chosen[name]["knobs_started_from"] = started_from
        print(dataset, scenario, name, chosen[name], flush=True)
    return chosen


def run_refinement(
    *,
    dataset: str,
    scenario: str,
    folds: list[Fold],
    scale: Scale,
    picks: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Per method: its pick or the pick with lr a half grid step lower or higher (REFINE).

    The grid's steps are about x3 apart, and on the subsets' validation folds the gap can
    change by half between two neighbours (the CIFAR-10 subset's sparse EU-k: 4.71 at lr x1,
    2.26 at x1.5 and 4.16 at x3 over nine folds), so the search can land next to a good
    setting rather than on it. Every candidate, the pick included, is measured again here:
    the same seeds train other models on another CPU, so a gap recorded elsewhere is not
    comparable. Everything but the step size stays as picked, so the candidates cost the
    same and their timings differ by noise only; when none of them is within the budget
    after retiming, the lowest gap is kept, as in the search.
    """
    search = _Search(folds=folds, scale=scale)
    chosen: dict[str, Any] = {}
    for name, pick in picks.items():
        start = setting_of(pick)
        tried = [search.trial(name, start)] + [
            search.trial(name, {**start, "lr": start["lr"] * factor}) for factor in REFINE
        ]
        chosen[name] = {**search.record(search.best(tried)), "refined_from": start["lr"]}
        print(dataset, scenario, name, chosen[name], flush=True)
    return chosen


def choice_key(dataset: str, scenario: str, mode: str = "dense") -> str:
    """Where a tuned file keeps the picks of one (setting, scenario, mode).

    Dense picks keep the key files from before per-mode searches used; sparse ones add
    ``/sparse``.
    """
    return f"{dataset}/{scenario}" + ("" if mode == "dense" else f"/{mode}")


def mode_choices(
    choices: dict[str, dict[str, Any]], dataset: str, scenario: str, mode: str
) -> dict[str, Any]:
    """Each method's pick for one table: the mode's own search where it ran, else dense's.

    The sparse model is another model (its retain accuracy, and Retrain's, sit lower), so a
    step size searched on the dense one need not suit it; methods never searched on the sparse
    validation models keep their dense pick.
    """
    dense = choices.get(choice_key(dataset, scenario), {})
    if mode == "dense":
        return dict(dense)
    return {**dense, **choices.get(choice_key(dataset, scenario, mode), {})}


def validation_folds(
    dataset: str, scenario: str, scale: Scale, mode: str, seeds: tuple[int, ...] | None = None
) -> list[Fold]:
    """The validation trials of one (setting, scenario, mode), originals trained here.

    Both scenarios of a setting train the same validation originals (same seeds), so they can
    run in parallel at the price of training them twice. ``mode`` picks the dense original or
    the OMP-sparse one (unlearned and retrained under its mask, as in the reported tables).
    """
    torch.set_num_threads(1)
    train, test = load_setting(dataset, scale, validation=True)
    folds = []
    for seed in seeds or validation_seeds(dataset):
        dense, sparse, mask, _ = originals(dataset, train, scale, seed=seed)
        folds.append(
            Fold(
                original=dense if mode == "dense" else sparse,
                split=make_split(train, test, scenario, seed=seed),
                seed=seed,
                mask=None if mode == "dense" else mask,
            )
        )
    return folds


def tune_scenario(
    dataset: str, scenario: str, scale: Scale, methods: list[str], mode: str = "dense"
) -> dict[str, Any]:
    """Each method's (lr, epochs) with the lowest validation gap in one scenario of a setting."""
    folds = validation_folds(dataset, scenario, scale, mode)
    return {
        choice_key(dataset, scenario, mode): run_tuning_grid(
            dataset=dataset, scenario=scenario, folds=folds, scale=scale, methods=methods
        )
    }


def knob_scenario(
    dataset: str,
    scenario: str,
    scale: Scale,
    picks: dict[str, dict[str, Any]],
    mode: str,
    table: dict[str, dict[str, Any]] | None = None,
    *,
    knob_seeds: tuple[int, ...] = KNOB_SEEDS,
) -> dict[str, Any]:
    """``picks`` with their knobs searched (:func:`run_knob_search`) in one table."""
    seeds = None if dataset in VALIDATION_SEEDS else knob_seeds  # the 50,000 keep theirs
    folds = validation_folds(dataset, scenario, scale, mode, seeds)
    return {
        choice_key(dataset, scenario, mode): run_knob_search(
            dataset=dataset,
            scenario=scenario,
            folds=folds,
            scale=scale,
            picks=picks,
            table=table,
        )
    }


def refine_scenario(
    dataset: str,
    scenario: str,
    scale: Scale,
    picks: dict[str, dict[str, Any]],
    mode: str,
    table: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``picks`` refined (:func:`run_refinement`) in one scenario and mode of a setting
    (``table``, the table's other picks, plays no part)."""
    folds = validation_folds(dataset, scenario, scale, mode)
    return {
        choice_key(dataset, scenario, mode): run_refinement(
            dataset=dataset, scenario=scenario, folds=folds, scale=scale, picks=picks
        )
    }


def tune(
    scale: Scale, methods: list[str], jobs: int, modes: tuple[str, ...] = MODES
) -> dict[str, Any]:
    """Searches the iterative methods' step sizes and epochs on the validation setting."""
    methods = [m for m in methods if m not in STEP_FIELD]  # FF and IU cost too much to search
    chosen: dict[str, Any] = {}
    work = [
        (d, c, scale, methods, mode)
        for d in _largest_first(scale)
        for c in SCENARIOS
        for mode in modes
    ]
    for part in _map(tune_scenario, work, jobs):
        chosen.update(part)
    return {
        "lr_grid": LR_GRID,
        "epoch_grid": EPOCH_GRID,
        "epoch_grid_of": EPOCH_GRID_OF,
        "knob_grid": KNOB_GRID,
        "budget": TUNING_BUDGET,
        "validation_seeds": {d: validation_seeds(d) for d in scale.train},
        "choices": chosen,
        "searched": methods,
        "searched_modes": {mode: methods for mode in modes},
    }


def refine(
    scale: Scale,
    methods: list[str],
    jobs: int,
    modes: tuple[str, ...],
    tuned: dict[str, Any],
    tables: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """``tuned`` with each searched method's pick refined on the settings in ``scale``.

    A table's picks are what it runs with (:func:`mode_choices`: a sparse table without its
    own search starts from the dense pick), and the refined picks are stored under the
    table's own key.
    """
    searched = set(tuned.get("searched", METHOD_ORDER))
    methods = [m for m in methods if m not in STEP_FIELD and m in searched]
    out = _revisit(scale, methods, jobs, modes, tables, tuned, refine_scenario, "refined")
    out["refine_factors"] = REFINE
    return out


def knob_search(
    scale: Scale,
    methods: list[str],
    jobs: int,
    modes: tuple[str, ...],
    tuned: dict[str, Any],
    tables: tuple[str, ...] | None = None,
    knob_seeds: tuple[int, ...] = KNOB_SEEDS,
) -> dict[str, Any]:
    """``tuned`` with the KNOB_GRID knobs of ``methods`` searched from each table's pick.

    Like :func:`refine`, a table starts from the picks it runs with and stores the result
    under its own key; ``knob_searched`` records which tables and methods had this search,
    and ``knob_searches`` its grid, passes and the small settings' validation seeds.
    """
    methods = [m for m in methods if m in KNOB_GRID]
    per_table = partial(knob_scenario, knob_seeds=knob_seeds)
    out = _revisit(scale, methods, jobs, modes, tables, tuned, per_table, "knob_searched")
    out["knob_grid"] = KNOB_GRID
    keys = sorted(choice_key(*table) for table in _selected(scale, modes, tables))
    grid = {m: KNOB_GRID[m] for m in methods}
    passes = {m: KNOB_PASSES.get(m, 1) for m in methods}
    search = {"tables": keys, "grid": grid, "passes": passes, "seeds": list(knob_seeds)}
    out["knob_searches"] = [*knob_searches(tuned), search]
    return out


def _selected(
    scale: Scale, modes: tuple[str, ...], tables: tuple[str, ...] | None
) -> list[tuple[str, str, str]]:
    """The (setting, scenario, mode) tables that ``--refine`` or ``--knobs`` revisits, largest
    setting first; every table of ``scale`` and ``modes`` unless ``tables`` names some."""
    return [
        (d, c, mode)
        for d in _largest_first(scale)
        for c in SCENARIOS
        for mode in modes
        if tables is None or choice_key(d, c, mode) in tables
    ]


def knob_searches(tuned: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``--knobs`` searches behind a tuned file, oldest first: each one's tables, grid and
    passes per method (one where a record has none).

    Files from before this record held one search, whose tables are ``knob_searched`` and
    whose grid is ``knob_grid``.
    """
    if "knob_searches" in tuned:
        return list(tuned["knob_searches"])
    if not tuned.get("knob_searched"):
        return []
    grid = tuned["knob_grid"]
    methods = {m for names in tuned["knob_searched"].values() for m in names}
    return [
        {
            "tables": sorted(tuned["knob_searched"]),
            "grid": {m: grid[m] for m in sorted(methods) if m in grid},
        }
    ]


def _revisit(
    scale: Scale,
    methods: list[str],
    jobs: int,
    modes: tuple[str, ...],
    tables: tuple[str, ...] | None,
    tuned: dict[str, Any],
    per_table: Any,
    record: str,
) -> dict[str, Any]:
    """``tuned`` with ``per_table(dataset, scenario, scale, picks, mode, table)`` on every table
    (only those whose :func:`choice_key` is in ``tables`` when it is given).

    A table's picks are what it runs with (:func:`mode_choices`); what ``per_table`` returns
    is stored under the table's own key, and ``tuned[record]`` lists, per key, the methods
    it revisited.
    """
    work = []
    for d, c, mode in _selected(scale, modes, tables):
        table = mode_choices(tuned["choices"], d, c, mode)
        picks = {m: table[m] for m in methods if m in table}
        work.append((d, c, scale, picks, mode, table))
    out = {**tuned, "choices": {k: dict(v) for k, v in tuned["choices"].items()}}
    revisited: dict[str, list[str]] = dict(out.get(record, {}))
    for part in _map(per_table, work, jobs):
        for key, picks in part.items():
            out["choices"].setdefault(key, {}).update(picks)
            revisited[key] = sorted(set(revisited.get(key, [])) | set(picks))
    out[record] = revisited
    return out


def _largest_first(scale: Scale) -> list[str]:
    """Settings by training-set size, largest first, so parallel workers finish together."""
    return sorted(scale.train, key=lambda d: -scale.train[d])


def merged(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``previous`` tuning with the methods searched in ``new`` replaced by their new picks.

    ``--tune --methods A B`` re-searches only A and B and keeps every other method's choice;
    ``--tune --datasets D`` re-searches only D's scenarios.
    """
    choices = {key: dict(picks) for key, picks in previous["choices"].items()}
    for key, picks in new["choices"].items():
        choices.setdefault(key, {}).update(picks)
    searched = sorted(set(previous.get("searched", [])) | set(new["searched"]))
    # Files from before per-mode searches searched the dense models only.
    modes = previous.get("searched_modes") or {"dense": previous.get("searched", [])}
    for mode, names in new["searched_modes"].items():
        modes[mode] = sorted(set(modes.get(mode, [])) | set(names))
    # Files from before the per-setting seeds searched every setting on seed 1.
    seeds = previous.get("validation_seeds") or {
        key.split("/")[0]: [previous.get("validation_seed", 1)] for key in choices
    }
    seeds = {**seeds, **new["validation_seeds"]}
    return {
        **new,
        "choices": choices,
        "searched": searched,
        "searched_modes": modes,
        "validation_seeds": seeds,
    }


def _map(fn: Any, arguments: list[tuple[Any, ...]], jobs: int) -> list[Any]:
    """``fn(*args)`` for each tuple, in order; in ``jobs`` processes when jobs > 1."""
    if jobs <= 1:
        return [fn(*a) for a in arguments]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(fn, *a) for a in arguments]
        return [f.result() for f in futures]


def best_row(rows: list[dict[str, Any]], *, budget: float | None = None) -> dict[str, Any]:
    """The method with the lowest Avg. Gap (within ``budget`` x Retrain's time, if given)."""
    candidates = [
        r
        for r in rows
        if r["method"] not in _REFERENCES
        and "error" not in r
        and (budget is None or r["time_ratio"] <= budget)
    ]
    if not candidates:
        return {"method": "none", "avg_gap": float("inf"), "time_ratio": float("nan")}
    return min(candidates, key=lambda r: r["avg_gap"])


def _cell(row: dict[str, Any], key: str) -> str:
    std = row.get(f"{key}_std")
    return f"{row[key]:.2f}" if not std else f"{row[key]:.2f} ± {std:.2f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Approximate unlearning vs Retrain (Jia et al. protocol, scaled down)",
        "",
        report["conditions"],
        "",
        f"Hyperparameters: {report['tuning']}",
        "",
    ]
    for table in report["tables"]:
        ret = table["rows"][0]
        lines += [
            f"## {table['dataset']}, {table['scenario']} forgetting, {table['mode']}",
            "",
            f"{table['trials']} trials (seeds {table['seeds']}); forget set sizes "
            f"{table['forget']}"
            + (
                f"; forgotten classes {table['forgotten_class']}"
                if table["scenario"] == "classwise"
                else ""
            )
            + ". Cells: mean ± std over trials.",
            "",
            "| method | UA | RA | TA | MIA-Efficacy | RTE (s) | RTE / Retrain | "
            "Avg. Gap (of means) | mean per-trial Avg. Gap |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in table["rows"]:
            if "error" in r:
                lines.append(f"| {r['method']} | {r['error'][:90]} | | | | | | | |")
                continue
            gap = "-" if r["method"] == "retrain" else f"{r['avg_gap']:.2f}"
            trial_gap = "-" if r["method"] == "retrain" else f"{r['avg_gap_trials']:.2f}"
            lines.append(
                f"| {r['method']} | "
                + " | ".join(_cell(r, k) for k in _METRICS)
                + f" | {r['seconds']:.1f} | {r['time_ratio']:.3f} | {gap} | {trial_gap} |"
            )
        best = table["best"]
        fast = table["best_in_budget"]
        lines += [
            "",
            f"Best: **{best['method']}**, Avg. Gap {best['avg_gap']:.2f} at "
            f"{100 * best['time_ratio']:.1f}% of Retrain's {ret['seconds']:.1f} s. "
            f"Best within {BUDGET:.0%} of Retrain's time: **{fast['method']}**, Avg. Gap "
            f"{fast['avg_gap']:.2f} -> target (Avg. Gap <= 1.0 and <= {BUDGET:.0%} of Retrain's "
            f"time) **{'met' if table['target_met'] else 'not met'}**. Noise floor (Retrains "
            f"with other seeds): Avg. Gap {table['noise_floor']:.2f}.",
            "",
        ]
    lines += ["## Summary", "", report["summary"], ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    tables = report["tables"]
    cols = 4
    rows_n = (len(tables) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.6 * rows_n), squeeze=False)
    for ax, table in zip(axes.flat, tables, strict=False):
        for r in table["rows"]:
            if r["method"] in _REFERENCES or "error" in r:
                continue
            ax.scatter(100 * r["time_ratio"], r["avg_gap"], s=18)
            ax.annotate(r["method"], (100 * r["time_ratio"], r["avg_gap"]), fontsize=7)
        ax.axhline(1.0, color="green", linestyle="--", linewidth=0.8)
        ax.axhline(SALUN_TARGET, color="grey", linestyle=":", linewidth=0.8)
        ax.axhline(table["noise_floor"], color="purple", linestyle="-.", linewidth=0.8)
        ax.axvline(100 * BUDGET, color="red", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.set_ylim(bottom=min(0.1, 0.5 * table["noise_floor"]) or 0.01)
        # At least 1% to 12% of Retrain's time, so that a panel with a few methods close
        # together does not stretch their differences across the whole width.
        left, right = ax.get_xlim()
        ax.set_xlim(left=min(left, 1.0), right=max(right, 120 * BUDGET))
        ax.set_title(f"{table['dataset']} {table['scenario']} {table['mode']}", fontsize=9)
        ax.set_xlabel("run time, % of Retrain", fontsize=8)
        ax.set_ylabel("Avg. Gap (of trial means)", fontsize=8)
    for ax in list(axes.flat)[len(tables) :]:
        ax.axis("off")
    fig.suptitle(
        "Avg. Gap vs run time (green: target 1.0; grey: SalUn's 1.15; red: 10%; "
        "purple: the noise floor, Retrains with other seeds)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds to minutes)")
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="full",
        help="full (the protocol above), reduced (fewer images, 15 epochs, 2 trials), quick",
    )
    parser.add_argument("--tune", action="store_true", help="search step sizes on validation")
    parser.add_argument(
        "--refine",
        action="store_true",
        help="try each tuned pick's lr half a grid step lower and higher (needs the tuned file)",
    )
    parser.add_argument(
        "--knobs",
        action="store_true",
        help="search only the methods' KNOB_GRID knobs from their tuned picks",
    )
    parser.add_argument("--datasets", nargs="+", choices=list(FULL.train), default=list(FULL.train))
    parser.add_argument("--methods", nargs="+", default=METHOD_ORDER)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODES),
        default=list(MODES),
        help="which originals --tune searches on (sparse picks fall back to dense ones)",
    )
    parser.add_argument(
        "--tables",
        nargs="+",
        default=None,
        help="only these tables for --refine and --knobs (keys as in the tuned file, e.g. "
        "cifar10_subset/random/sparse); the others keep their picks",
    )
    parser.add_argument(
        "--knob-folds",
        type=int,
        default=len(KNOB_SEEDS),
        help="validation trials (seeds 1..N) --knobs searches the small settings on",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=None, help="override the scale's trials")
    parser.add_argument("--jobs", type=int, default=1, help="(dataset, trial) runs in parallel")
    parser.add_argument("--out", type=Path, default=RESULTS / "approximate_jia")
    args = parser.parse_args()
    if args.knob_folds < 1:
        raise SystemExit(f"--knob-folds must be at least 1; got {args.knob_folds}")
    torch.set_num_threads(1)  # one thread per process is fastest on a shared 2-core machine
    scale_name = "quick" if args.quick else args.scale
    scale = SCALES[scale_name]
    tuned_file = tuned_path(scale_name)
    scale = replace(
        scale,
        train={d: scale.train[d] for d in args.datasets},
        test={d: scale.test[d] for d in args.datasets},
        trials=args.trials or scale.trials,
        trials_of={} if args.trials else scale.trials_of,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    only = tuple(args.tables) if args.tables else None
    if only and not (args.refine or args.knobs):
        raise SystemExit("--tables applies to --refine and --knobs only")
    # Known = the tables of the chosen --datasets and --modes: a key outside them would
    # otherwise be skipped without a word.
    known = {choice_key(d, c, m) for d in scale.train for c in SCENARIOS for m in args.modes}
    if only and not set(only) <= known:
        raise SystemExit(
            f"--tables: not among the chosen --datasets and --modes: "
            f"{sorted(set(only) - known)}; these are: {sorted(known)}"
        )
    if args.refine:
        if not tuned_file.exists():
            raise SystemExit(f"--refine starts from the tuned picks; {tuned_file} is missing")
        previous = json.loads(tuned_file.read_text())
        tuned = refine(scale, args.methods, args.jobs, tuple(args.modes), previous, only)
        tuned_file.write_text(json.dumps(clean_json(tuned), indent=2))
        print(f"wrote {tuned_file} in {time.perf_counter() - started:.0f} s")
        return
    if args.knobs:
        if not tuned_file.exists():
            raise SystemExit(f"--knobs starts from the tuned picks; {tuned_file} is missing")
        previous = json.loads(tuned_file.read_text())
        knob_seeds = tuple(range(1, args.knob_folds + 1))
        tuned = knob_search(
            scale, args.methods, args.jobs, tuple(args.modes), previous, only, knob_seeds
        )
        tuned_file.write_text(json.dumps(clean_json(tuned), indent=2))
        print(f"wrote {tuned_file} in {time.perf_counter() - started:.0f} s")
        return
    if args.tune:
        tuned = tune(scale, args.methods, args.jobs, tuple(args.modes))
        partial_tune = (
            set(args.methods) != set(METHOD_ORDER)
            or set(args.datasets) != set(FULL.train)
            or set(args.modes) != set(MODES)
        )
        if tuned_file.exists() and partial_tune:
            tuned = merged(json.loads(tuned_file.read_text()), tuned)
        tuned_file.write_text(json.dumps(clean_json(tuned), indent=2))
        print(f"wrote {tuned_file} in {time.perf_counter() - started:.0f} s")
        return
    choices: dict[str, dict[str, Any]] = {}
    tuning = "defaults (no tuned file)"
    if tuned_file.exists():
        tuned = json.loads(tuned_file.read_text())
        choices = tuned["choices"]
        tuning = (
            f"learning-rate x {list(LR_GRID)} and epochs x {list(EPOCH_GRID)} "
            f"({', '.join(f'{m} x {list(g)}' for m, g in EPOCH_GRID_OF.items())}), then each "
            f"method's own knob ({_knobs()}), from {tuned_file.name}, searched on the "
            f"validation setting (seeds {_validation_seeds(tuned_file)}; never on these runs), "
            "lowest validation Avg. Gap between means over the validation trials, within "
            f"{TUNING_BUDGET:.0%} of the validation Retrains' time; fisher and "
            f"influence at defaults. {_modes_searched(tuned)}{_refined(tuned)}"
            f"{_knob_searched(tuned)} Chosen: "
            + "; ".join(
                f"{key}: " + ", ".join(f"{m} {_choice(c)}" for m, c in pick.items())
                for key, pick in choices.items()
            )
        )
    seeds = {
        d: [args.seed + TRIAL_STRIDE * t for t in range(scale.trials_for(d))] for d in scale.train
    }
    arguments = [
        (d, scale, s, args.methods, choices, t)
        for d in _largest_first(scale)
        for t, s in enumerate(seeds[d])
    ]
    runs: list[dict[str, Any]] = []
    for part in _map(trial_tables, arguments, args.jobs):
        runs.extend(part)
    tables = aggregate(runs)
    met = [t for t in tables if t["target_met"]]
    summary = (
        f"Target (best method's Avg. Gap <= 1.0, beating SalUn's published {SALUN_TARGET}, at "
        f"<= {BUDGET:.0%} of Retrain's run time) met in {len(met)} of {len(tables)} tables"
        + (
            ": "
            + "; ".join(
                f"{t['dataset']} {t['scenario']} {t['mode']} by "
                f"{t['best_in_budget']['method']} ({t['best_in_budget']['avg_gap']:.2f})"
                for t in met
            )
            if met
            else ""
        )
        + ". Best within budget per table: "
        + ", ".join(
            f"{t['dataset']} {t['scenario']} {t['mode']} {t['best_in_budget']['method']} "
            f"{t['best_in_budget']['avg_gap']:.2f} (noise floor {t['noise_floor']:.2f})"
            for t in tables
        )
        + "."
    )
    conditions = (
        f"{_LABEL[scale_name]}Small CNN (zoo 'cnn'), original and Retrain trained "
        f"{scale.epochs} epochs (SGD lr {scale.lr}, momentum 0.9, wd 5e-4, cosine, batch 64); "
        f"sparse = OMP at {scale.sparsity:.0%} of conv+linear weights, rewind to epoch 1; "
        f"training sets {scale.train}, test sets {scale.test}; "
        + ", ".join(f"{d} {len(s)} trials (seeds {s})" for d, s in seeds.items())
        + f"; CPU {platform.machine()}, 1 torch thread per process, {args.jobs} "
        f"processes, load average {os.getloadavg()[0]:.1f} at the end (shared machine); total "
        f"{time.perf_counter() - started:.0f} s. RTE is each method's own wall-clock time; "
        "RTE / Retrain compares mean times with the Retrain runs of the same trials."
    )
    report = {
        "conditions": conditions,
        "tuning": tuning,
        "quick": args.quick,
        "tables": tables,
        "trials": runs,
        "summary": summary,
    }
    args.out.with_suffix(".json").write_text(json.dumps(clean_json(report), indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    plot(report, args.out.with_suffix(".png"))
    print(report["summary"])


def _validation_seeds(tuned_file: Path) -> str:
    """Which validation seeds the tuned file's searches used, per setting."""
    tuned = json.loads(tuned_file.read_text())
    seeds = tuned.get("validation_seeds", {})
    return ", ".join(f"{d} {list(s)}" for d, s in seeds.items()) or "1"


def _modes_searched(tuned: dict[str, Any]) -> str:
    """Which methods the file searched on the sparse models (the rest reuse dense picks)."""
    sparse = tuned.get("searched_modes", {}).get("sparse", [])
    if not sparse:
        return "Searched on the dense models only; the sparse tables reuse the dense picks."
    where = sorted({key.split("/")[0] for key in tuned["choices"] if key.endswith("/sparse")})
    return (
        f"Searched on the sparse models too for {', '.join(sparse)} (settings: "
        f"{', '.join(where)}; keys ending /sparse); every other sparse table and method reuses "
        "the dense pick."
    )


def _refined(tuned: dict[str, Any]) -> str:
    """Which tables' picks ``--refine`` revisited, and how."""
    refined = tuned.get("refined", {})
    if not refined:
        return ""
    factors = ", ".join(f"{f:.3g}" for f in tuned.get("refine_factors", REFINE))
    return (
        f" Then refined (--refine) for {', '.join(sorted(refined))}: each pick's learning rate "
        f"also tried x [{factors}] (half a grid step), all three measured again on the same "
        "validation trials, the best kept by the same rule."
    )


def _knob_searched(tuned: dict[str, Any]) -> str:
    """Which tables' picks ``--knobs`` revisited, and with which grid, in order."""
    searches = knob_searches(tuned)
    if not searches:
        return ""
    steps = "; then ".join(
        f"{', '.join(_searched_grid(m, g, search) for m, g in search['grid'].items())} for "
        f"{', '.join(search['tables'])}"
        f" (validation seeds {search.get('seeds', list(KNOB_SEEDS))})"
        for search in searches
    )
    return (
        f" Then (--knobs) the methods' own knobs searched from the picks above: {steps}; the "
        "small settings on the validation trials named (the 50,000-image one on its own), the "
        "picks measured again beside them, the best kept by the same rule except that a "
        "setting over the time budget never replaced a pick; other tables run without them."
    )


def _searched_grid(method: str, grid: dict[str, Any], search: dict[str, Any]) -> str:
    passes = search.get("passes", {}).get(method, 1)
    return f"{method} {_grid(grid)}" + (f" ({passes} passes)" if passes > 1 else "")


def _grid(grid: dict[str, Any]) -> str:
    """One method's knob grid as text (a joint knob's values joined by '/')."""
    return ", ".join(f"{k} [{', '.join(_shown(v) for v in values)}]" for k, values in grid.items())


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "/".join(_shown(v) for v in value.values())
    return f"{value:g}" if isinstance(value, float) else str(value)


def _knobs() -> str:
    return ", ".join(f"{m} {_grid(grid)}" for m, grid in KNOB_GRID.items())


def _choice(choice: dict[str, Any]) -> str:
    extra = [
        f"{k} {v:g}" if isinstance(v, float | int) else f"{k} {v}"
        for k, v in choice.items()
        if k not in ("lr", "epochs", *_SEARCH_RECORD)
    ]
    return " ".join([f"lr x{choice['lr']:.3g}", f"epochs x{choice['epochs']:g}", *extra])


SCALES = {"full": FULL, "reduced": REDUCED, "quick": QUICK}
_LABEL = {
    "full": "",
    "reduced": "REDUCED configuration (not the full protocol). ",
    "quick": "QUICK smoke run. ",
}


def tuned_path(scale_name: str) -> Path:
    """Where the tuned choices of a scale live (the full scale's is TUNED)."""
    return (
        TUNED
        if scale_name == "full"
        else TUNED.with_name(f"approximate_jia_tuned_{scale_name}.json")
    )


def clean_json(value: Any) -> Any:
    """Non-finite floats (failed methods) become null, so the JSON is standard."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


if __name__ == "__main__":
    main()
