"""The functional optimisers reproduce torch.optim step by step (float64)."""

from __future__ import annotations

import pytest
import torch

from optuna_fmd.engine import make_optimizer


@pytest.mark.parametrize(
    "name,nesterov,hypers,reference",
    [
        (
            "sgd",
            False,
            {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2},
            lambda p, h: torch.optim.SGD(
                p, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"]
            ),
        ),
        (
            "sgd",
            True,
            {"lr": 0.1, "momentum": 0.8, "weight_decay": 1e-2},
            lambda p, h: torch.optim.SGD(
                p,
                lr=h["lr"],
                momentum=h["momentum"],
                weight_decay=h["weight_decay"],
                nesterov=True,
            ),
        ),
        (
            "adam",
            False,
            {"lr": 1e-2, "beta1": 0.8, "beta2": 0.95, "weight_decay": 1e-2},
            lambda p, h: torch.optim.Adam(
                p,
                lr=h["lr"],
                betas=(h["beta1"], h["beta2"]),
                weight_decay=h["weight_decay"],
                foreach=False,
            ),
        ),
        (
            "adamw",
            False,
            {"lr": 1e-2, "beta1": 0.8, "beta2": 0.95, "weight_decay": 1e-1},
            lambda p, h: torch.optim.AdamW(
                p,
                lr=h["lr"],
                betas=(h["beta1"], h["beta2"]),
                weight_decay=h["weight_decay"],
                foreach=False,
            ),
        ),
    ],
)
def test_matches_torch_optim(name, nesterov, hypers, reference) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    params = [
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.randn(4, generator=g, dtype=torch.float64),
    ]
    grads_seq = [[torch.randn_like(p) for p in params] for _ in range(6)]
    torch_params = [p.clone().requires_grad_() for p in params]
    opt_ref = reference(torch_params, hypers)
    opt = make_optimizer(name, nesterov=nesterov)
    state = opt.init(params)
    ours = params
    h = {k: torch.tensor(v, dtype=torch.float64) for k, v in hypers.items()}
    for t, grads in enumerate(grads_seq):
        for p, gr in zip(torch_params, grads, strict=True):
            p.grad = gr.clone()
        opt_ref.step()
        ours, state = opt.update(ours, grads, state, h, t)
        for a, b in zip(ours, torch_params, strict=True):
            torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)


def test_bad_optimizer_names() -> None:
    with pytest.raises(
        ValueError,
        match=r"`optimizer` must be one of 'sgd', 'adam', 'adamw', 'sf-adamw', 'sf-sgd', "
        r"but got 'rmsprop'",
    ):
        make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="nesterov=True` needs optimizer='sgd'"):
        make_optimizer("adam", nesterov=True)
