"""Per-model SGD and Adam updates on stacked parameters (pure tensor math, no state).

The batched trainer keeps M models' parameters stacked along a leading model dimension.
``torch.optim`` would treat the stack as one tensor: weight decay and the update are
elementwise, so they would keep models apart, but gradient clipping, per-model learning
rates and "this model has no batch this step" would not. These functions take a boolean
``active`` vector: an inactive model's parameters and optimiser state come back bit-for-bit
unchanged (``torch.where`` selects the old tensor), so a shard that ran out of samples does
not move. The update rules follow ``torch.optim.SGD`` (dampening 0, no Nesterov) and
``torch.optim.Adam`` (no AMSGrad); they are the same algorithms, not bit-identical kernels.
"""

from __future__ import annotations

import torch

__all__ = ["adam_update", "clip_per_model", "per_model", "sgd_update"]


def _select(
    mask: torch.Tensor, all_set: bool, new: torch.Tensor, old: torch.Tensor
) -> torch.Tensor:
    # torch.where(all True, new, old) is `new` bit for bit; skipping it saves a full pass
    # over the stacked parameters in the common case where every model steps.
    return new if all_set else torch.where(per_model(mask, new), new, old)


def per_model(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshapes a ``[M]`` vector so it broadcasts over a stacked ``[M, ...]`` tensor."""
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1)))


def clip_per_model(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """Scales each model's gradients to a total 2-norm of at most ``max_norm``.

    The norm of model ``m`` is taken over its own gradients only (dimensions after the
    first), never across models: one global norm would let one shard's data rescale every
    other shard's step. The coefficient matches ``torch.nn.utils.clip_grad_norm_``.
    """
    norms = torch.stack([g.flatten(1).norm(p=2, dim=1) for g in grads])  # [P, M]
    total = norms.norm(p=2, dim=0)  # [M]
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * per_model(coef, g) for g in grads]


def sgd_update(
    *,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor],
    has_buffer: torch.Tensor,
    lr: torch.Tensor,
    momentum: float,
    weight_decay: float,
    active: torch.Tensor,
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """One SGD step per active model.

    Args:
        params: stacked parameters, ``[M, ...]`` each.
        grads: their gradients.
        buffers: momentum buffers (ignored when ``momentum == 0``).
        has_buffer: ``[M]`` bool; a model's first momentum step starts its buffer at the
            gradient, as ``torch.optim.SGD`` does.
        lr: ``[M]`` learning rates (each model follows its own epoch schedule).
        momentum: SGD momentum.
        weight_decay: L2 penalty added to the gradient.
        active: ``[M]`` bool; inactive models keep parameters and buffers unchanged.

    Returns:
        ``(params, buffers, has_buffer)`` after the step.
    """
    all_active = bool(active.all())
    all_buffered = bool(has_buffer.all())
    if all_active and (all_buffered or not momentum):
        # The common step (every model steps, momentum buffers exist) as a handful of list
        # ops instead of three ops per tensor. Each list op runs the very elementwise op of
        # the loop below, in the same order, so a model's bits do not depend on which path
        # its group took (a forget retrains one slot with the others idle).
        directions = (
            list(torch._foreach_add(grads, torch._foreach_mul(params, weight_decay)))
            if weight_decay
            else list(grads)
        )
        if momentum:
            directions = list(torch._foreach_add(directions, buffers, alpha=momentum))
        rates = [per_model(-lr, p) for p in params]
        moved = list(torch._foreach_addcmul(params, rates, directions))
        return moved, (directions if momentum else buffers), has_buffer | active
    new_params, new_buffers = [], []
    for p, g, buf in zip(params, grads, buffers, strict=True):
        d = g + weight_decay * p if weight_decay else g
        if momentum:
            stepped = _select(has_buffer, all_buffered, torch.add(d, buf, alpha=momentum), d)
            new_buffers.append(_select(active, all_active, stepped, buf))
            d = stepped
        else:
            new_buffers.append(buf)
        new_params.append(_select(active, all_active, torch.addcmul(p, per_model(-lr, p), d), p))
    return new_params, new_buffers, has_buffer | active if momentum else has_buffer


def adam_update(
    *,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: torch.Tensor,
    lr: torch.Tensor,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    active: torch.Tensor,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """One Adam step per active model (each with its own step count for bias correction).

    Returns:
        ``(params, exp_avgs, exp_avg_sqs, steps)`` after the step; inactive models unchanged.
    """
    beta1, beta2 = betas
    new_steps = torch.where(active, steps + 1, steps)
    safe = torch.clamp(new_steps, min=1.0)  # idle models with no step yet: no division by 0
    correction1 = 1 - beta1**safe
    correction2_sqrt = torch.sqrt(1 - beta2**safe)
    all_active = bool(active.all())
    new_params, new_avgs, new_sqs = [], [], []
    for p, g, avg, sq in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        d = g + weight_decay * p if weight_decay else g
        avg_next = avg + (d - avg) * (1 - beta1)
        sq_next = sq * beta2 + d * d * (1 - beta2)
        denom = torch.sqrt(sq_next) / per_model(correction2_sqrt, p) + eps
        step = per_model(lr / correction1, p) * avg_next / denom
        new_params.append(_select(active, all_active, p - step, p))
        new_avgs.append(_select(active, all_active, avg_next, avg))
        new_sqs.append(_select(active, all_active, sq_next, sq))
    return new_params, new_avgs, new_sqs, new_steps
