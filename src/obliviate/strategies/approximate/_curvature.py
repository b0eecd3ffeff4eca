"""Second-order tools: loss gradients, Hessian-vector products and inverse-HVP solvers.

Pure functions over flat parameter vectors (no method state), used by influence unlearning.
Hessian-vector products use double backward (``torch.autograd.grad`` with
``create_graph=True``), which every differentiable module supports. Solvers:

* conjugate gradient (Hestenes & Stiefel 1952), stopping on a relative residual or on
  negative curvature (the damped Hessian of a non-convex net need not be positive definite);
* LiSSA (Agarwal, Bullins & Hazan 2017, as used by Koh & Liang 2017): the truncated Neumann
  series x = Σ_j (I − A/s)^j b / s, optionally on random minibatches;
* an exact dense solve for small parameter counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from obliviate.strategies.approximate.data import LabelledData, LossFn, all_finite

__all__ = [
    "RetainCurvature",
    "SolveResult",
    "conjugate_gradient",
    "dense_hessian",
    "exact_solve",
    "flatten",
    "lissa",
    "loss_gradient",
    "unflatten",
]

_CHUNK = 1024


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """One vector from tensors (in order)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Tensors shaped like ``like`` from one vector (inverse of :func:`flatten`)."""
    out, offset = [], 0
    for t in like:
        out.append(vector[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


def loss_gradient(
    *, model: nn.Module, params: Sequence[Tensor], data: LabelledData, loss_fn: LossFn
) -> Tensor:
    """Flat gradient of the *mean* loss over ``data`` (chunked; exact for mean losses)."""
    n = len(data)
    total = torch.zeros(
        sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device
    )
    for start in range(0, n, _CHUNK):
        x = data.features[start : start + _CHUNK].to(params[0].device)
        y = data.labels[start : start + _CHUNK].to(params[0].device)
        loss = loss_fn(model(x), y) * (len(y) / n)
        grads = torch.autograd.grad(loss, list(params), allow_unused=True)
        total += flatten(
            [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
        )
    return total


class RetainCurvature:
    """Hessian-vector products of the mean loss over a data set, restricted and damped.

    ``A v = m ⊙ H (m ⊙ v) + damping · v`` where H is the Hessian of the mean loss at the
    current parameters and m the keep-mask (1 = free), so frozen coordinates never move.
    The gradient graph of each chunk is built once and reused by every product.

    Attributes:
        products: Hessian-vector products computed so far.
        sample_passes: samples processed by them (backward passes).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        params: Sequence[Tensor],
        data: LabelledData,
        loss_fn: LossFn,
        damping: float,
        keep: Tensor | None = None,
    ) -> None:
        self.params = list(params)
        self.damping = damping
        self.keep = keep
        self.size = sum(p.numel() for p in self.params)
        self.n = len(data)
        self.products = 0
        self.sample_passes = 0
        self._model, self._data, self._loss_fn = model, data, loss_fn
        self._graphs = [self._grad_graph(start) for start in range(0, self.n, _CHUNK)]

    def _grad_graph(self, start: int, rows: Tensor | None = None) -> tuple[Tensor, int]:
        device = self.params[0].device
        if rows is None:
            x = self._data.features[start : start + _CHUNK].to(device)
            y = self._data.labels[start : start + _CHUNK].to(device)
        else:
            x, y = self._data.features[rows].to(device), self._data.labels[rows].to(device)
        loss = self._loss_fn(self._model(x), y)
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        flat = flatten(
            [
                torch.zeros_like(p) if g is None else g
                for p, g in zip(self.params, grads, strict=True)
            ]
        )
        return flat, len(y)

    def _hvp(self, graphs: Sequence[tuple[Tensor, int]], vector: Tensor) -> Tensor:
        v = vector if self.keep is None else vector * self.keep
        total_n = sum(n for _, n in graphs)
        out = torch.zeros_like(v)
        for flat, n in graphs:
            if not flat.requires_grad:
                continue
            parts = torch.autograd.grad(
                flat, self.params, grad_outputs=v, retain_graph=True, allow_unused=True
            )
            hv = flatten(
                [
                    torch.zeros_like(p) if g is None else g
                    for p, g in zip(self.params, parts, strict=True)
                ]
            )
            out += hv * (n / total_n)
            self.sample_passes += n
        self.products += 1
        if self.keep is not None:
            out = out * self.keep
        return out + self.damping * vector

    def batched(self, vectors: Tensor) -> Tensor:
        """A v for each row of ``vectors`` (one vectorised backward per chunk)."""
        v = vectors if self.keep is None else vectors * self.keep
        out = torch.zeros_like(v)
        for flat, n in self._graphs:
            if not flat.requires_grad:
                continue
            parts = torch.autograd.grad(
                flat,
                self.params,
                grad_outputs=v,
                retain_graph=True,
                allow_unused=True,
                is_grads_batched=True,
            )
            hv = torch.cat(
                [
                    torch.zeros(len(v), p.numel(), dtype=v.dtype, device=v.device)
                    if g is None
                    else g.reshape(len(v), -1)
                    for p, g in zip(self.params, parts, strict=True)
                ],
                dim=1,
            )
            out += hv * (n / self.n)
            self.sample_passes += n * len(v)
        self.products += len(v)
        if self.keep is not None:
            out = out * self.keep
        return out + self.damping * vectors

    def __call__(self, vector: Tensor) -> Tensor:
        """A v over the whole data set."""
        return self._hvp(self._graphs, vector)

    def sampled(self, batch_size: int, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        """A v estimated on one random minibatch (a fresh one per call)."""

        def apply(vector: Tensor) -> Tensor:
            rows = torch.randperm(self.n, generator=generator)[:batch_size]
            return self._hvp([self._grad_graph(0, rows)], vector)

        return apply


@dataclass(frozen=True)
class SolveResult:
    """An approximate solution of A x = b and how good it is."""

    x: Tensor
    iterations: int
    negative_curvature: bool = False


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor], b: Tensor, *, tol: float, max_iter: int
) -> SolveResult:
    """Solves A x = b for symmetric A; stops at ‖r‖ ≤ tol·‖b‖ or on negative curvature.

    Returns the iterate with the smallest residual seen: on an indefinite A the residual is
    not monotone, and the last iterate before negative curvature can be worse than x = 0.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = float(r @ r)
    best, best_rs = x, rs
    target = (tol * float(b.norm())) ** 2
    for iteration in range(max_iter):
        if rs <= target:
            return SolveResult(x=x, iterations=iteration)
        ap = apply(p)
        curvature = float(p @ ap)
        if curvature <= 0 or not math.isfinite(curvature):
            return SolveResult(x=best, iterations=iteration, negative_curvature=True)
        step = rs / curvature
        x = x + step * p
        r = r - step * ap
        rs_next = float(r @ r)
        if rs_next < best_rs:
            best, best_rs = x, rs_next
        p = r + (rs_next / rs) * p
        rs = rs_next
    return SolveResult(x=best, iterations=max_iter)


def lissa(apply: Callable[[Tensor], Tensor], b: Tensor, *, scale: float, depth: int) -> SolveResult:
    """x = Σ_{j<depth} (I − A/scale)^j b / scale; converges when 0 < eig(A) < scale."""
    h = b.clone()
    for iteration in range(1, depth):
        h = b + h - apply(h) / scale
        if not all_finite(h):
            return SolveResult(x=h / scale, iterations=iteration)
    return SolveResult(x=h / scale, iterations=depth)


def dense_hessian(curvature: RetainCurvature, *, block: int = 128) -> Tensor:
    """The dense damped, restricted operator A as a matrix, ``block`` columns at a time."""
    size = curvature.size
    eye = torch.eye(size, dtype=curvature.params[0].dtype, device=curvature.params[0].device)
    columns = [curvature.batched(eye[j : j + block]) for j in range(0, size, block)]
    return torch.cat(columns, dim=0).T


def exact_solve(matrix: Tensor, b: Tensor, *, keep: Tensor | None = None) -> Tensor:
    """Solves matrix x = b in float64 over the free coordinates (frozen ones stay 0)."""
    if keep is None:
        solved: Tensor = torch.linalg.solve(matrix.double(), b.double())
        return solved.to(b.dtype)
    free = keep.nonzero().flatten()
    x = torch.zeros_like(b)
    sub = matrix.double()[free][:, free]
    x[free] = torch.linalg.solve(sub, b.double()[free]).to(b.dtype)
    return x
