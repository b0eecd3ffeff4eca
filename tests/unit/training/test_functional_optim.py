"""Per-model optimiser updates: inactive models stay put, clipping never couples models."""

from __future__ import annotations

import torch

from obliviate.training.functional_optim import adam_update, clip_per_model, sgd_update


def test_sgd_leaves_inactive_models_and_their_buffers_bitwise_unchanged() -> None:
    params = [torch.randn(3, 4, 2)]
    grads = [torch.randn(3, 4, 2)]
    buffers = [torch.randn(3, 4, 2)]
    active = torch.tensor([True, False, True])
    new_p, new_b, has = sgd_update(
        params=params,
        grads=grads,
        buffers=buffers,
        has_buffer=torch.tensor([True, True, False]),
        lr=torch.tensor([0.1, 0.1, 0.2]),
        momentum=0.9,
        weight_decay=0.01,
        active=active,
    )
    assert torch.equal(new_p[0][1], params[0][1]) and torch.equal(new_b[0][1], buffers[0][1])
    assert not torch.equal(new_p[0][0], params[0][0])
    # A model's first momentum step starts its buffer at the gradient (torch.optim.SGD).
    torch.testing.assert_close(new_b[0][2], grads[0][2] + 0.01 * params[0][2])
    assert has.tolist() == [True, True, True]


def test_adam_counts_steps_per_model() -> None:
    p = [torch.zeros(2, 3)]
    out = adam_update(
        params=p,
        grads=[torch.ones(2, 3)],
        exp_avgs=[torch.zeros(2, 3)],
        exp_avg_sqs=[torch.zeros(2, 3)],
        steps=torch.tensor([0.0, 4.0]),
        lr=torch.tensor([0.1, 0.1]),
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        active=torch.tensor([True, False]),
    )
    new_p, _, _, steps = out
    assert steps.tolist() == [1.0, 4.0]
    torch.testing.assert_close(new_p[0][0], torch.full((3,), -0.1))  # first Adam step is lr
    assert torch.equal(new_p[0][1], p[0][1])


def test_clipping_is_per_model() -> None:
    small = torch.full((1, 4), 0.1)
    huge = torch.full((1, 4), 100.0)
    clipped = clip_per_model([torch.cat([small, huge])], max_norm=1.0)[0]
    assert torch.equal(clipped[0], small[0])  # under the limit: untouched
    torch.testing.assert_close(clipped[1].norm(), torch.tensor(1.0), atol=1e-5, rtol=0)


def test_sgd_gives_a_model_the_same_bits_whether_or_not_its_group_is_all_active() -> None:
    # Every model stepping takes a fused path; a group with an idle slot takes the loop.
    # A forget retrains one slot with the others idle, so both must agree bit for bit.
    generator = torch.Generator().manual_seed(3)
    shapes = [(3, 16, 8), (3, 16), (3, 4, 16)]
    params = [torch.randn(s, generator=generator) for s in shapes]
    grads = [torch.randn(s, generator=generator) for s in shapes]
    buffers = [torch.randn(s, generator=generator) for s in shapes]
    common = {"lr": torch.tensor([0.05, 0.1, 0.2]), "momentum": 0.9, "weight_decay": 5e-4}
    fused = sgd_update(
        params=params,
        grads=grads,
        buffers=buffers,
        has_buffer=torch.ones(3, dtype=torch.bool),
        active=torch.ones(3, dtype=torch.bool),
        **common,  # type: ignore[arg-type]
    )
    looped = sgd_update(
        params=params,
        grads=grads,
        buffers=buffers,
        has_buffer=torch.ones(3, dtype=torch.bool),
        active=torch.tensor([True, True, False]),
        **common,  # type: ignore[arg-type]
    )
    for got, want in zip(fused[0], looped[0], strict=True):
        assert torch.equal(got[:2], want[:2])
    for got, want in zip(fused[1], looped[1], strict=True):
        assert torch.equal(got[:2], want[:2])
