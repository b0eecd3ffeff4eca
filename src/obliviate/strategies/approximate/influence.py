"""IU: influence unlearning — one Newton-style step that removes the forget set's weight.

Paper: Koh & Liang (2017), "Understanding Black-box Predictions via Influence Functions",
ICML; as an unlearning method, Izzo et al. (2021), "Approximate Data Deletion from Machine
Learning Models", AISTATS, and the IU baseline of Jia et al. (2023), "Model Sparsity Can
Simplify Machine Unlearning", NeurIPS (``unlearn/Wfisher.py``).

The trained model minimises the mean loss over all N samples. Re-weighting every point from
1/N to 1/|D_r| on the retain set and 0 on the forget set gives the first-order change

    v = g_f / N − |D_f| / (N·|D_r|) · g_r,   g_f = Σ_{i∈D_f} ∇ℓ_i,   g_r = Σ_{j∈D_r} ∇ℓ_j,

and the update θ_u = θ_o + α (H_r + λI)⁻¹ v, with H_r the Hessian of the mean retain loss at
θ_o and λ the damping. At a minimum of the full loss, v = −∇L_r(θ_o), so α = 1 is one Newton
step toward the retrained model (exact for a quadratic loss; for an L2-regularised convex
model trained to convergence, λ = the regularisation strength makes it the true Newton step).

The inverse-Hessian-vector product is solved properly — conjugate gradient, LiSSA, or an
exact dense solve for models with at most 5,000 parameters — and its relative residual
‖A x − v‖ / ‖v‖ is logged in the evidence. The published code's "WoodFisher" recursion is
effectively rank-1 (its auxiliary vector stays parallel to the first retain gradient and it
stops after ~1,000 samples), which is why the paper tunes α in [1, 20]; we do not copy it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from obliviate.errors import ConfigError, TrainingError
from obliviate.strategies.approximate._config import (
    MethodConfig,
    check_choice,
    check_non_negative,
    check_positive,
    check_positive_int,
)
from obliviate.strategies.approximate._curvature import (
    RetainCurvature,
    SolveResult,
    conjugate_gradient,
    dense_hessian,
    exact_solve,
    flatten,
    lissa,
    loss_gradient,
    unflatten,
)
from obliviate.strategies.approximate.base import METHODS, UnlearningMethod
from obliviate.strategies.approximate.data import LabelledData, LossFn, all_finite

__all__ = ["EXACT_MAX_PARAMS", "InfluenceUnlearning", "InfluenceUnlearningConfig"]

EXACT_MAX_PARAMS = 5000
"""The exact solver builds a dense P x P Hessian, so it refuses models larger than this."""

_SOLVERS = ("cg", "lissa", "exact")
_POWER_ITERATIONS = 20


@dataclass(frozen=True)
class InfluenceUnlearningConfig(MethodConfig):
    """Configuration of :class:`InfluenceUnlearning`.

    Args:
        alpha: step scale (1 = the Newton step; the paper's α ∈ [1, 20] compensated for its
            rank-1 inverse Hessian).
        damping: λ added to the Hessian; makes it invertible and the step conservative.
            A trained net's Hessian is rarely positive definite: too small a λ makes CG stop
            on negative curvature and LiSSA diverge (both show in ``solver_residual``).
        solver: ``"cg"``, ``"lissa"`` or ``"exact"`` (dense, <= 5,000 parameters).
        cg_tol: conjugate gradient stops at relative residual <= this.
        cg_max_iter: conjugate gradient iteration cap.
        lissa_depth: terms of LiSSA's Neumann series.
        lissa_scale: LiSSA's scale s (must exceed the largest eigenvalue of H + λI); ``None``
            estimates it as 1.5x a 20-step power iteration.
        lissa_batch_size: retain samples per LiSSA product; ``None`` uses all (deterministic).
    """

    kind: ClassVar[str] = "influence_config"

    alpha: float = 1.0
    damping: float = 0.1
    solver: str = "cg"
    cg_tol: float = 1e-5
    cg_max_iter: int = 100
    lissa_depth: int = 500
    lissa_scale: float | None = None
    lissa_batch_size: int | None = None

    def _problems(self) -> list[str]:
        problems: list[str] = []
        check_positive(problems, "alpha", self.alpha)
        check_non_negative(problems, "damping", self.damping)
        check_choice(problems, "solver", self.solver, _SOLVERS)
        check_positive(problems, "cg_tol", self.cg_tol)
        check_positive_int(problems, "cg_max_iter", self.cg_max_iter)
        check_positive_int(problems, "lissa_depth", self.lissa_depth)
        if self.lissa_scale is not None:
            check_positive(problems, "lissa_scale", self.lissa_scale)
        if self.lissa_batch_size is not None:
            check_positive_int(problems, "lissa_batch_size", self.lissa_batch_size)
        return problems


@METHODS.register("influence")
class InfluenceUnlearning(UnlearningMethod):
    """One damped inverse-Hessian step along the re-weighting gradient; see the module."""

    name: ClassVar[str] = "influence"
    paper: ClassVar[str] = "Koh & Liang, ICML 2017; Izzo et al., AISTATS 2021; Jia et al., 2023"
    config_class: ClassVar[type[InfluenceUnlearningConfig]] = InfluenceUnlearningConfig
    config: InfluenceUnlearningConfig

    def _unlearn(
        self,
        *,
        model: nn.Module,
        forget: LabelledData,
        retain: LabelledData,
        num_classes: int,
        loss_fn: LossFn,
        generator: torch.Generator,
        mask: Mapping[str, Tensor] | None,
    ) -> tuple[int, dict[str, float]]:
        c = self.config
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        size = sum(p.numel() for p in params)
        if c.solver == "exact" and size > EXACT_MAX_PARAMS:
            raise ConfigError(
                f"solver='exact' builds a dense Hessian and allows at most {EXACT_MAX_PARAMS} "
                f"parameters; this model has {size}. Use solver='cg' or 'lissa'."
            )
        model.eval()
        keep = None
        if mask:
            keep = flatten([mask[n] if n in mask else torch.ones_like(p) for n, p in named]).to(
                params[0].dtype
            )
        n_f, n_r = len(forget), len(retain)
        total = n_f + n_r
        g_f = loss_gradient(model=model, params=params, data=forget, loss_fn=loss_fn) * n_f
        g_r = loss_gradient(model=model, params=params, data=retain, loss_fn=loss_fn) * n_r
        v = g_f / total - (n_f / (total * n_r)) * g_r
        if keep is not None:
            v = v * keep
        curvature = RetainCurvature(
            model=model, params=params, data=retain, loss_fn=loss_fn, damping=c.damping, keep=keep
        )
        evidence: dict[str, float] = {"v_norm": float(v.norm()), "damping": c.damping}
        solution = self._solve(curvature, v, generator, evidence)
        x = solution.x.detach()
        if not all_finite(x):
            raise TrainingError(
                f"the {c.solver} inverse-Hessian solve diverged to NaN/inf; raise damping"
                + (" or lissa_scale." if c.solver == "lissa" else ".")
            )
        residual = float((curvature(x) - v).norm()) / max(float(v.norm()), 1e-30)
        if residual > 1.0:
            raise TrainingError(
                f"the {c.solver} inverse-Hessian solve diverged (relative residual "
                f"{residual:.3g} > 1, worse than no step); raise damping"
                + (" or lissa_scale." if c.solver == "lissa" else ".")
            )
        if solution.negative_curvature:
            self.note(
                f"conjugate gradient met non-positive curvature after {solution.iterations} "
                "iterations (the damped Hessian is not positive definite); raise damping"
            )
        step = c.alpha * x
        with torch.no_grad():
            for param, delta in zip(params, unflatten(step, params), strict=True):
                param.add_(delta)
        evidence.update(
            {
                "solver_residual": residual,
                "solver_iterations": float(solution.iterations),
                "negative_curvature": float(solution.negative_curvature),
                "hessian_vector_products": float(curvature.products),
                "step_norm": float(step.norm()),
            }
        )
        return total + curvature.sample_passes, evidence

    def _solve(
        self,
        curvature: RetainCurvature,
        v: Tensor,
        generator: torch.Generator,
        evidence: dict[str, float],
    ) -> SolveResult:
        c = self.config
        if float(v.norm()) == 0.0:
            return SolveResult(x=torch.zeros_like(v), iterations=0)
        if c.solver == "cg":
            return conjugate_gradient(curvature, v, tol=c.cg_tol, max_iter=c.cg_max_iter)
        if c.solver == "exact":
            matrix = dense_hessian(curvature)
            return SolveResult(x=exact_solve(matrix, v, keep=curvature.keep), iterations=1)
        scale = c.lissa_scale
        if scale is None:
            scale = 1.5 * _largest_eigenvalue(curvature, v)
            evidence["lissa_scale"] = scale
        apply = curvature
        if c.lissa_batch_size is not None:
            apply = curvature.sampled(c.lissa_batch_size, generator)  # type: ignore[assignment]
        return lissa(apply, v, scale=scale, depth=c.lissa_depth)


def _largest_eigenvalue(curvature: RetainCurvature, start: Tensor) -> float:
    """|largest eigenvalue| of the damped operator by power iteration from ``start``."""
    vector = start / start.norm()
    value = 0.0
    for _ in range(_POWER_ITERATIONS):
        image = curvature(vector)
        value = float(image.norm())
        if value == 0.0:
            break
        vector = image / value
    return max(value, 1e-12)
