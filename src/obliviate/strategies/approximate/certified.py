"""Certified removal for L2-regularised logistic regression on fixed features.

Guo, Goldstein, Hannun and van der Maaten, "Certified Data Removal from Machine Learning
Models", ICML 2020. Training minimises the perturbed objective

    L_b(w; D) = sum_i log(1 + exp(-y_i w.x_i)) + (lam * n / 2) * |w|^2 + b.w,  b ~ N(0, sigma^2 I)

and removing a batch of m samples takes one Newton step on the remaining data,
``w <- w + H^-1 Delta`` with ``Delta = m * lam * w + sum_j grad l_j`` and H the Hessian of the
remaining objective. The step leaves a gradient residual; Guo et al.'s data-dependent bound
``gamma * |X|_2 * |H^-1 Delta| * |X H^-1 Delta|`` (gamma = 1/4, rows of X of norm <= 1) caps
it, and the bounds add up over removals. While the accumulated bound stays within
``sigma * epsilon / c`` (``c = sqrt(2 ln(1.5 / delta))``), every released model is
(epsilon, delta)-certified removal: statistically close to a model trained without the data.
When the next removal would exceed that budget, the model retrains from scratch on the
remaining data with fresh noise, and the budget starts again (Guo et al.'s code only tracks
the budget; the retrain is ours).

Why a certificate and not "exact": the released weights differ from retraining; the noise b
hides the difference. Results therefore say :attr:`Guarantee.APPROXIMATE` and carry
(epsilon, delta) and the budget as evidence. The guarantee needs a convex model on features
that do not depend on the deleted data (a frozen, public or DP-trained extractor).

Multiclass problems use one binary head per class (one-vs-rest); the heads form one convex
problem over the concatenated weights, so the joint residual is the root-sum-square of the
heads' residuals and that is what the budget bounds. Rows are projected onto the unit ball
(``x / max(1, |x|)``) at fit and predict time, because the bound assumes ``|x| <= 1``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.optimize
import torch

from obliviate._hashing import derive_seed
from obliviate.errors import (
    AlreadyDeletedError,
    ConfigError,
    DataError,
    NotFittedError,
    TrainingError,
    UnknownSampleError,
)
from obliviate.strategies.approximate.data import all_finite
from obliviate.strategies.base import Guarantee

__all__ = [
    "CertifiedLinearModel",
    "CertifiedRemovalConfig",
    "RemovalResult",
    "certified_c",
]

_KIND = "certified_linear"
_FORMAT_VERSION = 1
_GAMMA = 0.25  # Lipschitz bound of the logistic loss's second derivative used by Guo et al.


def certified_c(delta: float) -> float:
    """Guo et al.'s c: noise of std ``c * eps' / epsilon`` gives (epsilon, delta) removal."""
    return math.sqrt(2.0 * math.log(1.5 / delta))


@dataclass(frozen=True)
class CertifiedRemovalConfig:
    """Hyperparameters of certified removal.

    Give ``sigma`` (noise std) or ``budget`` (admissible accumulated residual), not both;
    the other follows from ``budget = sigma * epsilon / c``. With neither, sigma is 1.

    Attributes:
        lam: L2 strength per sample (the objective uses ``lam * n / 2 * |w|^2``).
        epsilon: certified-removal epsilon.
        delta: certified-removal delta, in (0, 1).
        sigma: std of the objective-perturbation noise b.
        budget: residual budget; when given, sigma is derived from it.
        max_iter: L-BFGS iterations when fitting.
        fit_tol: residual above which fitting adds Newton polishing steps.
        mode: ``"auto"`` (binary for two classes, else one-vs-rest), ``"binary"`` or ``"ovr"``.
    """

    lam: float = 1e-3
    epsilon: float = 1.0
    delta: float = 1e-4
    sigma: float | None = None
    budget: float | None = None
    max_iter: int = 500
    fit_tol: float = 1e-6
    mode: str = "auto"

    def __post_init__(self) -> None:
        problems = []
        for name in ("lam", "epsilon", "fit_tol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number; got {value!r}")
        if not (isinstance(self.delta, (int, float)) and 0 < self.delta < 1):
            problems.append(f"delta must be in (0, 1); got {self.delta!r}")
        for name in ("sigma", "budget"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                problems.append(f"{name} must be a positive number or None; got {value!r}")
        if self.sigma is not None and self.budget is not None:
            problems.append("give sigma or budget, not both (budget = sigma * epsilon / c)")
        if not (isinstance(self.max_iter, int) and self.max_iter > 0):
            problems.append(f"max_iter must be a positive integer; got {self.max_iter!r}")
        if self.mode not in ("auto", "binary", "ovr"):
            problems.append(f"mode must be 'auto', 'binary' or 'ovr'; got {self.mode!r}")
        if problems:
            raise ConfigError("invalid CertifiedRemovalConfig: " + "; ".join(problems) + ".")

    @property
    def noise_std(self) -> float:
        """The std of b actually used."""
        if self.budget is not None:
            return certified_c(self.delta) * self.budget / self.epsilon
        return 1.0 if self.sigma is None else float(self.sigma)

    @property
    def residual_budget(self) -> float:
        """The admissible accumulated gradient residual, ``sigma * epsilon / c``."""
        return self.noise_std * self.epsilon / certified_c(self.delta)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict tagged with kind and format_version."""
        return {"kind": "certified_removal_config", "format_version": 1, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CertifiedRemovalConfig:
        """Inverse of :meth:`to_dict`; rejects unknown fields and other kinds."""
        payload = dict(data)
        if payload.pop("kind", "certified_removal_config") != "certified_removal_config":
            raise ConfigError(f"not a certified_removal_config: kind={data.get('kind')!r}.")
        payload.pop("format_version", None)
        unknown = sorted(set(payload) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown CertifiedRemovalConfig fields {unknown}.")
        return cls(**payload)


@dataclass(frozen=True)
class RemovalResult:
    """What one removal request did.

    Attributes:
        removed: the ids removed.
        step_bound: this removal's own residual bound (before a forced retrain, the bound
            it would have added).
        bound: the accumulated certified bound on the gradient residual after the request.
        true_residual: the measured residual |grad L_b(w; remaining)| (always <= bound).
        budget: the admissible residual ``sigma * epsilon / c``.
        budget_used: equal to ``bound``.
        budget_left: ``budget - budget_used``.
        retrained: the budget would have been exceeded, so the model was retrained.
        remaining: training samples left.
        seconds: wall-clock time of the request.
    """

    removed: tuple[str, ...]
    step_bound: float
    bound: float
    true_residual: float
    budget: float
    budget_used: float
    budget_left: float
    retrained: bool
    remaining: int
    seconds: float


@dataclass
class _Fit:
    """The mutable numeric state (float64 tensors)."""

    features: torch.Tensor  # (n, d), rows in the unit ball
    signs: torch.Tensor  # (K, n) +-1 targets per head
    active: torch.Tensor  # (n,) bool
    weights: torch.Tensor  # (K, d)
    noise: torch.Tensor  # (K, d)
    gram: torch.Tensor  # (d, d) X^T X over active rows
    head_bounds: torch.Tensor  # (K,) accumulated bounds
    lam: float
    refits: int = 0
    log: list[RemovalResult] = field(default_factory=list)


class CertifiedLinearModel:
    """Logistic regression (binary or one-vs-rest) with (epsilon, delta)-certified removal.

    Example:
        >>> import torch
        >>> x = torch.randn(60, 5); y = (x[:, 0] > 0).long()
        >>> m = CertifiedLinearModel(CertifiedRemovalConfig(lam=1e-2))
        >>> _ = m.fit(features=x, labels=y, ids=[str(i) for i in range(60)])
        >>> result = m.remove(ids=["3"])
        >>> result.true_residual <= result.bound, result.retrained
        (True, False)
    """

    guarantee: ClassVar[Guarantee] = Guarantee.APPROXIMATE

    def __init__(self, config: CertifiedRemovalConfig | None = None) -> None:
        self.config = config or CertifiedRemovalConfig()
        self._state: _Fit | None = None
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._num_classes = 0
        self._seed = 0

    # ---- training -------------------------------------------------------------------------

    def fit(
        self,
        *,
        features: Any,
        labels: Any,
        ids: Sequence[Any],
        seed: int = 0,
        num_classes: int | None = None,
    ) -> CertifiedLinearModel:
        """Trains on fixed features with loss perturbation; returns ``self``.

        Raises:
            DataError: shapes disagree, values are not finite, ids repeat, labels are out of
                range; nothing is changed.
        """
        x = _as_rows(features)
        y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        id_list = [str(i) for i in ids]
        if y.ndim != 1 or y.shape[0] != x.shape[0] or len(id_list) != x.shape[0]:
            raise DataError(
                "features, labels and ids must have the same length with labels and ids 1-D; "
                f"got features {tuple(x.shape)}, labels {tuple(y.shape)}, {len(id_list)} ids."
            )
        if x.shape[0] < 2:
            raise DataError(f"need at least 2 training samples; got {x.shape[0]}.")
        if len(set(id_list)) != len(id_list):
            raise DataError("ids must be unique; found repeated ids.")
        classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
        if classes < 2 or int(y.min()) < 0 or int(y.max()) >= classes:
            raise DataError(f"labels must lie in [0, {classes}) with at least 2 classes.")
        heads = 1 if self._binary(classes) else classes
        if heads == 1 and classes != 2:
            raise DataError(f"mode='binary' needs exactly 2 classes; got {classes}.")
        targets = [y == 1] if heads == 1 else [y == k for k in range(heads)]
        signs = torch.stack([t.to(torch.float64) * 2 - 1 for t in targets])
        generator = torch.Generator().manual_seed(derive_seed(seed, "certified", "noise", 0))
        state = _Fit(
            features=x,
            signs=signs,
            active=torch.ones(x.shape[0], dtype=torch.bool),
            weights=torch.zeros(heads, x.shape[1], dtype=torch.float64),
            noise=self._draw_noise(heads, x.shape[1], generator),
            gram=x.T @ x,
            head_bounds=torch.zeros(heads, dtype=torch.float64),
            lam=self.config.lam,
        )
        self._train(state)
        self._state, self._ids, self._num_classes, self._seed = state, id_list, classes, seed
        self._row = {sid: i for i, sid in enumerate(id_list)}
        return self

    def _binary(self, classes: int) -> bool:
        return self.config.mode == "binary" or (self.config.mode == "auto" and classes == 2)

    def _draw_noise(self, heads: int, dim: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(heads, dim, generator=generator, dtype=torch.float64)
        return noise * self.config.noise_std

    def _train(self, state: _Fit) -> None:
        """Minimises every head's perturbed objective; the fit residual opens the budget."""
        for k in range(state.weights.shape[0]):
            state.weights[k] = self._solve_head(state, k)
            state.head_bounds[k] = _gradient(state, k, state.weights[k]).norm()

    def _solve_head(self, state: _Fit, k: int) -> torch.Tensor:
        n = int(state.active.sum())

        def objective(w_np: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
            w = torch.from_numpy(w_np)
            margins = state.signs[k] * (state.features @ w)
            loss = (torch.nn.functional.softplus(-margins) * state.active).sum()
            value = loss + 0.5 * self.config.lam * n * w.dot(w) + state.noise[k].dot(w)
            grad = _gradient(state, k, w)
            return float(value) / n, (grad / n).numpy()

        start = state.weights[k].numpy().copy()
        solution = scipy.optimize.minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.config.max_iter, "gtol": 1e-12, "ftol": 1e-16},
        )
        w = torch.from_numpy(np.asarray(solution.x, dtype=np.float64))
        for _ in range(5):  # Newton polishing: quadratic convergence to the exact minimiser
            grad = _gradient(state, k, w)
            if float(grad.norm()) <= self.config.fit_tol:
                break
            w = w - torch.linalg.solve(_hessian(state, k, w, state.active), grad)
        if not all_finite(w):
            raise TrainingError("certified logistic regression diverged (non-finite weights).")
        return w

    # ---- removal --------------------------------------------------------------------------

    def remove(self, *, ids: Sequence[Any]) -> RemovalResult:
        """Removes ``ids`` with one Newton step, or retrains if the budget would run out.

        Raises:
            NotFittedError: before :meth:`fit`.
            DataError: ids repeat, are empty, or would remove every remaining sample.
            UnknownSampleError: an id was never in the training set.
            AlreadyDeletedError: an id was removed earlier.
            Nothing changes when any of these is raised.
        """
        start = time.perf_counter()
        state = self._fitted()
        rows = self._rows_of(ids, state)
        removed = tuple(self._ids[r] for r in rows.tolist())
        active = state.active.clone()
        active[rows] = False
        gram = state.gram - state.features[rows].T @ state.features[rows]
        spectral = math.sqrt(max(float(torch.linalg.eigvalsh(gram)[-1]), 0.0))
        n_left = int(active.sum())
        steps, bounds = [], []
        for k in range(state.weights.shape[0]):
            w = state.weights[k]
            delta = len(rows) * self.config.lam * w + _loss_gradient(state, k, w, rows)
            step = torch.linalg.solve(_hessian(state, k, w, active), delta)
            projected = (state.features @ step) * active
            steps.append(step)
            bounds.append(_GAMMA * spectral * float(step.norm()) * float(projected.norm()))
        step_bounds = torch.tensor(bounds, dtype=torch.float64)
        candidate = state.head_bounds + step_bounds
        retrained = float(candidate.norm()) > self.config.residual_budget
        # Work on a copy and swap at the end, so a failed retrain leaves the model as it was.
        state = dataclasses.replace(state, active=active, gram=gram)
        if retrained:
            state.refits += 1
            seed = derive_seed(self._seed, "certified", "noise", state.refits)
            heads, dim = state.weights.shape
            state.noise = self._draw_noise(heads, dim, torch.Generator().manual_seed(seed))
            state.weights = torch.zeros_like(state.weights)
            state.head_bounds = torch.zeros_like(state.head_bounds)
            self._train(state)
        else:
            state.weights = state.weights + torch.stack(steps)
            state.head_bounds = candidate
        residual = torch.stack(
            [_gradient(state, k, state.weights[k]) for k in range(state.weights.shape[0])]
        ).norm()
        used = float(state.head_bounds.norm())
        result = RemovalResult(
            removed=removed,
            step_bound=float(step_bounds.norm()),
            bound=used,
            true_residual=float(residual),
            budget=self.config.residual_budget,
            budget_used=used,
            budget_left=self.config.residual_budget - used,
            retrained=retrained,
            remaining=n_left,
            seconds=time.perf_counter() - start,
        )
        state.log.append(result)
        self._state = state
        return result

    def _rows_of(self, ids: Sequence[Any], state: _Fit) -> torch.Tensor:
        wanted = [str(i) for i in ids]
        if not wanted:
            raise DataError("remove() needs at least one id; got none.")
        if len(set(wanted)) != len(wanted):
            raise DataError("ids to remove must be unique; found repeated ids.")
        unknown = [i for i in wanted if i not in self._row]
        if unknown:
            raise UnknownSampleError(
                f"ids not in the training set: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}."
            )
        rows = torch.tensor([self._row[i] for i in wanted], dtype=torch.int64)
        gone = [wanted[j] for j in torch.nonzero(~state.active[rows]).flatten().tolist()]
        if gone:
            raise AlreadyDeletedError(f"ids already removed earlier: {gone[:5]}.")
        if len(wanted) >= int(state.active.sum()):
            raise DataError(
                f"removing {len(wanted)} ids would leave no training data "
                f"({int(state.active.sum())} remain); delete the model instead."
            )
        return rows

    # ---- inference and evidence -----------------------------------------------------------

    def predict_proba(self, features: Any) -> npt.NDArray[np.float32]:
        """Class probabilities (binary: logistic; one-vs-rest: normalised head sigmoids)."""
        state = self._fitted()
        x = _as_rows(features)
        if x.shape[1] != state.weights.shape[1]:
            raise DataError(f"expected {state.weights.shape[1]} features; got {x.shape[1]}.")
        scores = torch.sigmoid(x @ state.weights.T)
        if state.weights.shape[0] == 1:
            probs = torch.cat([1 - scores, scores], dim=1)
        else:
            probs = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-300)
        return probs.numpy().astype(np.float32)

    def predict(self, features: Any) -> npt.NDArray[np.int64]:
        """Predicted classes."""
        return np.asarray(self.predict_proba(features).argmax(axis=1), dtype=np.int64)

    @property
    def weights(self) -> torch.Tensor:
        """A copy of the weights, shape (heads, features); binary has one head."""
        return self._fitted().weights.clone()

    @property
    def history(self) -> tuple[RemovalResult, ...]:
        """Every removal so far, with its bound and true residual."""
        return tuple(self._fitted().log)

    @property
    def remaining_ids(self) -> list[str]:
        """Training ids not yet removed, in training order."""
        active = self._fitted().active.tolist()
        return [sid for sid, keep in zip(self._ids, active, strict=True) if keep]

    def true_residual(self) -> float:
        """|grad L_b(w; remaining)| now, recomputed from the data."""
        state = self._fitted()
        grads = [_gradient(state, k, state.weights[k]) for k in range(state.weights.shape[0])]
        return float(torch.stack(grads).norm())

    def evidence(self) -> dict[str, Any]:
        """The certificate: approximate, with (epsilon, delta), sigma and the budget."""
        state = self._fitted()
        used = float(state.head_bounds.norm())
        return {
            "guarantee": self.guarantee.value,
            "method": "certified_removal",
            "paper": "Guo et al., ICML 2020",
            "epsilon": self.config.epsilon,
            "delta": self.config.delta,
            "sigma": self.config.noise_std,
            "lam": self.config.lam,
            "budget": self.config.residual_budget,
            "budget_used": used,
            "budget_left": self.config.residual_budget - used,
            "refits": state.refits,
            "certified": used <= self.config.residual_budget,
        }

    # ---- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue removing; the noise b is secret, store it privately."""
        state = self._fitted()
        return {
            "kind": _KIND,
            "format_version": _FORMAT_VERSION,
            "config": self.config.to_dict(),
            "ids": list(self._ids),
            "num_classes": self._num_classes,
            "seed": self._seed,
            "refits": state.refits,
            "features": state.features.clone(),
            "signs": state.signs.clone(),
            "active": state.active.clone(),
            "weights": state.weights.clone(),
            "noise": state.noise.clone(),
            "head_bounds": state.head_bounds.clone(),
        }

    @classmethod
    def from_state_dict(cls, data: Mapping[str, Any]) -> CertifiedLinearModel:
        """Inverse of :meth:`state_dict` (the removal log is not kept)."""
        if data.get("kind") != _KIND or data.get("format_version") != _FORMAT_VERSION:
            raise ConfigError(
                f"expected kind={_KIND!r}, format_version={_FORMAT_VERSION}; got "
                f"kind={data.get('kind')!r}, format_version={data.get('format_version')!r}."
            )
        model = cls(CertifiedRemovalConfig.from_dict(data["config"]))
        features = torch.as_tensor(data["features"], dtype=torch.float64).clone()
        active = torch.as_tensor(data["active"], dtype=torch.bool).clone()
        kept = features[active]
        model._state = _Fit(
            features=features,
            signs=torch.as_tensor(data["signs"], dtype=torch.float64).clone(),
            active=active,
            weights=torch.as_tensor(data["weights"], dtype=torch.float64).clone(),
            noise=torch.as_tensor(data["noise"], dtype=torch.float64).clone(),
            gram=kept.T @ kept,
            head_bounds=torch.as_tensor(data["head_bounds"], dtype=torch.float64).clone(),
            lam=model.config.lam,
            refits=int(data["refits"]),
        )
        model._ids = [str(i) for i in data["ids"]]
        model._row = {sid: i for i, sid in enumerate(model._ids)}
        model._num_classes, model._seed = int(data["num_classes"]), int(data["seed"])
        return model

    def _fitted(self) -> _Fit:
        if self._state is None:
            raise NotFittedError("CertifiedLinearModel is not fitted; call fit() first.")
        return self._state


def _as_rows(features: Any) -> torch.Tensor:
    """Float64 (n, d) rows projected onto the unit ball; DataError on bad shapes or NaN."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"features must have shape (n, d) with n >= 1; got {tuple(x.shape)}.")
    x = x.reshape(x.shape[0], -1).clone()
    if not all_finite(x):
        raise DataError("features contain NaN or infinite values.")
    scale: torch.Tensor = x.norm(dim=1, keepdim=True).clamp_min(1.0)
    return x / scale


def _loss_gradient(state: _Fit, k: int, w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Sum of the logistic-loss gradients of ``rows`` for head ``k``."""
    x, s = state.features[rows], state.signs[k][rows]
    coef = (torch.sigmoid(s * (x @ w)) - 1) * s
    return x.T @ coef


def _gradient(state: _Fit, k: int, w: torch.Tensor) -> torch.Tensor:
    """grad L_b(w) over the active rows for head ``k`` (loss + L2 + noise)."""
    s = state.signs[k]
    coef = (torch.sigmoid(s * (state.features @ w)) - 1) * s * state.active
    n = int(state.active.sum())
    return state.features.T @ coef + state.lam * n * w + state.noise[k]


def _hessian(state: _Fit, k: int, w: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """The Hessian of L_b over the ``active`` rows for head ``k`` (b adds nothing)."""
    p = torch.sigmoid(state.signs[k] * (state.features @ w))
    d = p * (1 - p) * active
    h = state.features.T @ (state.features * d[:, None])
    return h + state.lam * int(active.sum()) * torch.eye(h.shape[0], dtype=h.dtype)
