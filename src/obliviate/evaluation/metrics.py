"""Utility metrics and per-sample scores computed from class probabilities.

The unlearning literature's utility metrics (Jia et al., "Model Sparsity Can Simplify Machine
Unlearning", NeurIPS 2023; Fan et al., "SalUn", ICLR 2024) are accuracies in percent on the
forget, retain and test sets: UA = 100 - Acc(forget), RA = Acc(retain), TA = Acc(test). The
per-sample scores here (true-class confidence, entropy, modified entropy, logit-scaled
confidence) feed the membership-inference attacks in :mod:`obliviate.evaluation.mia`.
Modified entropy follows Song & Mittal ("Systematic Evaluation of Privacy Risks of Machine
Learning Models", USENIX Security 2021) as defined there, not as mis-coded in Unlearn-Sparse's
``SVC_MIA.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation._arrays import check_pair

__all__ = [
    "accuracy",
    "avg_gap",
    "logit_confidence",
    "modified_entropy",
    "predict_proba",
    "prediction_entropy",
    "true_class_confidence",
]

_TINY = 1e-30


def accuracy(*, probabilities: Any, labels: Any) -> float:
    """Top-1 accuracy in percent (0..100).

    Ties in the probabilities resolve to the lowest class index (``argmax``), the same rule
    as ``Prediction.labels``.

    Raises:
        DataError: the arrays are malformed, disagree in length, or are empty.
    """
    probs, labs = check_pair(probabilities, labels, name="accuracy")
    return float(np.mean(np.argmax(probs, axis=1) == labs) * 100.0)


def predict_proba(
    module: nn.Module, features: npt.NDArray[Any] | torch.Tensor, *, batch_size: int = 512
) -> npt.NDArray[np.float32]:
    """Softmax class probabilities of ``module`` on ``features``, in eval mode without grad.

    The module's train/eval mode is restored afterwards, so evaluation never changes the
    model it looks at.

    Raises:
        ConfigError: ``batch_size`` is not positive.
        DataError: the module does not return (N, C) logits.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}.")
    inputs = torch.as_tensor(features)
    if inputs.dtype != torch.float32:
        inputs = inputs.to(torch.float32)
    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = module.training
    module.eval()
    chunks: list[npt.NDArray[np.float32]] = []
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                logits = module(inputs[start : start + batch_size].to(device))
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else None
                    raise DataError(
                        "the module must return (N, C) logits for probability evaluation; "
                        f"got {type(logits).__name__} with shape {shape}."
                    )
                probs = torch.softmax(logits.to(torch.float32), dim=1)
                chunks.append(probs.cpu().numpy().astype(np.float32, copy=False))
    finally:
        module.train(was_training)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks, axis=0)


def true_class_confidence(*, probabilities: Any, labels: Any) -> npt.NDArray[np.float64]:
    """p_y: the probability assigned to each sample's true label (Jia et al.'s feature)."""
    probs, labs = check_pair(probabilities, labels, name="confidence", allow_empty=True)
    return np.asarray(probs[np.arange(len(labs)), labs], dtype=np.float64)


def prediction_entropy(*, probabilities: Any) -> npt.NDArray[np.float64]:
    """Shannon entropy -sum_i p_i log p_i of each row (natural log; 0 log 0 = 0)."""
    probs, _ = check_pair(
        probabilities,
        np.zeros(len(np.asarray(probabilities)), dtype=np.int64),
        name="entropy",
        allow_empty=True,
    )
    logs = np.log(np.maximum(probs, _TINY))
    out = -np.sum(np.where(probs > 0, probs * logs, 0.0), axis=1)
    return np.asarray(out, dtype=np.float64)


def modified_entropy(*, probabilities: Any, labels: Any) -> npt.NDArray[np.float64]:
    """Song & Mittal's modified entropy: -(1-p_y) log p_y - sum_{i!=y} p_i log(1-p_i).

    Unlike plain entropy it uses the label, so a confidently wrong prediction scores high
    (looks like a non-member) instead of low.
    """
    probs, labs = check_pair(probabilities, labels, name="modified entropy", allow_empty=True)
    rows = np.arange(len(labs))
    p_y = probs[rows, labs]
    log_p = np.log(np.maximum(probs, _TINY))
    log_1mp = np.log(np.maximum(1.0 - probs, _TINY))
    terms = -probs * log_1mp
    terms[rows, labs] = 0.0
    out = -(1.0 - p_y) * log_p[rows, labs] + terms.sum(axis=1)
    return np.asarray(out, dtype=np.float64)


def logit_confidence(*, probabilities: Any, labels: Any) -> npt.NDArray[np.float64]:
    """log p_y - log(sum_{c!=y} p_c): LiRA's and the NeurIPS 2023 scorer's confidence.

    The logit scaling makes the per-example distribution over training randomness close to
    Gaussian, which is what LiRA's likelihood ratio assumes. Probabilities are clipped away
    from 0 and 1 so that saturated softmax outputs stay finite.
    """
    probs, labs = check_pair(probabilities, labels, name="logit confidence", allow_empty=True)
    rows = np.arange(len(labs))
    p_y = probs[rows, labs]
    others = probs.copy()
    others[rows, labs] = 0.0
    rest = np.maximum(others.sum(axis=1), _TINY)  # summed directly: no 1 - p_y cancellation
    out = np.log(np.maximum(p_y, _TINY)) - np.log(rest)
    return np.asarray(out, dtype=np.float64)


def avg_gap(gaps: Any) -> float:
    """Mean of absolute gaps to the reference (Jia et al.'s "Disparity Ave.", SalUn's "Avg. Gap").

    Raises:
        DataError: no gaps, or a gap is not finite.
    """
    values = np.abs(np.asarray(list(gaps), dtype=np.float64))
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise DataError(f"avg_gap needs at least one finite gap; got {values.tolist()}.")
    return float(values.mean())
