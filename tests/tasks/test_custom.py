"""Custom: the user's own module and data; exact hypergradients; unsupported modules refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import optuna_fmd as fmd
from optuna_fmd.episode import build_episode

from ._helpers import fd_check


def _images(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 0).long()
    return x, y


def _bn_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 36, 3),
    )


def _dropout_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(36, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 3)
    )


def test_batchnorm_module_gives_exact_hypergradient() -> None:
    task = fmd.tasks.Custom(
        model=_bn_cnn(), train=_images(), steps=6, batch_size=16, dtype=torch.float64
    )
    fd_check(task, {"lr": [0.1, 0.05], "momentum": [0.8]})


def test_dropout_module_gives_exact_hypergradient() -> None:
    task = fmd.tasks.Custom(
        model=_dropout_mlp(), train=_images(), steps=6, batch_size=16, dtype=torch.float64
    )
    hg = fd_check(task, {"lr": [0.2, 0.1], "weight_decay": [1e-3]})
    # dropout masks are drawn per (seed, step): another seed is another episode
    other = fmd.run_episode(task, {"lr": [0.2, 0.1], "weight_decay": [1e-3]}, seed=1)
    assert other.hypergradient != hg


@pytest.mark.parametrize(
    "optimizer,schedules",
    [
        ("sf-adamw", {"lr": [1e-2, 5e-3], "beta1": [0.9, 0.8], "warmup": [2.5]}),
        ("sf-sgd", {"lr": [0.2, 0.1], "momentum": [0.9, 0.8], "weight_decay": [1e-3]}),
    ],
)
def test_schedule_free_on_a_module_with_batchnorm_is_exact(
    optimizer: str, schedules: dict[str, list[float]]
) -> None:
    """Schedule-free optimisers on the user's own module: running statistics from the training
    iterate ``y``, the validation loss at the average ``x``, exact hypergradients."""
    task = fmd.tasks.Custom(
        model=_bn_cnn(),
        train=_images(),
        steps=6,
        batch_size=16,
        dtype=torch.float64,
        optimizer=optimizer,
    )
    fd_check(task, schedules)


def test_torch_dataset_and_tensor_pair_give_the_same_task() -> None:
    x, y = _images()
    a = fmd.tasks.Custom(model=_bn_cnn(), train=(x, y), steps=5, batch_size=16)
    b = fmd.tasks.Custom(
        model=_bn_cnn(), train=torch.utils.data.TensorDataset(x, y), steps=5, batch_size=16
    )
    assert torch.equal(a.data().train_x, b.data().train_x)
    ra = fmd.run_episode(a, {"lr": [0.1]}, hypergradient=False)
    rb = fmd.run_episode(b, {"lr": [0.1]}, hypergradient=False)
    assert ra.val_loss == rb.val_loss


def test_explicit_val_split() -> None:
    x, y = _images(96)
    vx, vy = _images(20, seed=1)
    task = fmd.tasks.Custom(model=_bn_cnn(), train=(x, y), val=(vx, vy), steps=5, batch_size=16)
    tr, va = task.split(0)
    assert torch.equal(tr, torch.arange(96)) and torch.equal(va, torch.arange(96, 116))
    assert torch.equal(task.split(3)[1], va)  # fixed, whatever the seed
    data = task.data()
    assert torch.equal(data.train_x[va], vx) and torch.equal(data.train_x[tr], x)
    # without val, a random val_fraction of train, as for the built-in tasks
    plain = fmd.tasks.Custom(model=_bn_cnn(), train=(x, y), val_fraction=0.25, batch_size=16)
    tr2, va2 = plain.split(0)
    assert len(va2) == 24 and len(set(tr2.tolist()) & set(va2.tolist())) == 0


def test_episode_validates_on_the_given_val() -> None:
    x, y = _images(96)
    vx, vy = _images(20, seed=1)
    task = fmd.tasks.Custom(model=_bn_cnn(), train=(x, y), val=(vx, vy), steps=5, batch_size=16)
    problem, _, _ = build_episode(task, {"lr": [0.1]})
    got = torch.cat([b[0] for b in problem.val_batches])
    assert torch.equal(got, vx)


def test_model_init_rule() -> None:
    net = _bn_cnn()
    before = [p.clone() for p in net.parameters()]
    task = fmd.tasks.Custom(model=net, train=_images(), steps=5, batch_size=16)
    a0, a0b, a1 = task.make_model(0), task.make_model(0), task.make_model(1)
    for p, q, orig in zip(a0.parameters(), a0b.parameters(), net.parameters(), strict=True):
        assert torch.equal(p, q)  # same seed, same weights
        assert p is not orig
    assert not torch.equal(next(a0.parameters()), next(a1.parameters()))
    assert all(torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    kept = fmd.tasks.Custom(model=net, train=_images(), reinit=False, batch_size=16).make_model(1)
    assert all(torch.equal(b, p) for b, p in zip(before, kept.parameters(), strict=True))
    fac = fmd.tasks.Custom(model=_bn_cnn, train=_images(), batch_size=16)
    assert torch.equal(next(fac.make_model(2).parameters()), next(fac.make_model(2).parameters()))


def test_integer_inputs_keep_their_dtype() -> None:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 20, (64, 5), generator=g)
    y = (tokens[:, 0] % 2).long()
    net = nn.Sequential(nn.Embedding(20, 4), nn.Flatten(), nn.Linear(20, 2))
    task = fmd.tasks.Custom(
        model=net, train=(tokens, y), steps=5, batch_size=8, dtype=torch.float64
    )
    assert task.data().train_x.dtype == torch.long
    res = fmd.run_episode(task, {"lr": [0.1]})
    assert res.hypergradient is not None


def test_regression_loss_and_metric() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    task = fmd.tasks.Custom(
        model=nn.Linear(3, 1),
        train=(x[:96], y[:96]),
        test=(x[96:], y[96:]),
        loss=lambda out, t: ((out - t) ** 2).mean(),
        metric=lambda out, t: float(((out - t) ** 2).mean()),
        steps=40,
        batch_size=16,
    )
    assert task.data().n_classes == 0
    res = fmd.evaluate_schedule(task, {"lr": [0.1]}, seeds=(0, 1))
    assert res.test_metric is not None and res.test_metric == pytest.approx(res.test_loss)
    assert res.test_loss < 0.5


# -- refused up front ----------------------------------------------------------------------------
class _LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x.flatten(1, 2))[0][:, -1])


class _GridSampleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Linear(36, 6)
        self.fc = nn.Linear(36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.theta(x.flatten(1)).view(-1, 2, 3)
        grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        return self.fc(nn.functional.grid_sample(x, grid, align_corners=False).flatten(1))


class _InPlaceNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.data.mul_(0.99)
        return self.fc(x.flatten(1))


def test_lstm_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match=r"`rnn` \(LSTM\).*LSTMCell"):
        fmd.tasks.Custom(model=_LSTMNet(), train=_images())


def test_op_without_forward_derivative_is_refused_by_the_dry_run() -> None:
    with pytest.raises(ValueError, match="op `grid_sampler_2d` has no forward-mode derivative"):
        fmd.tasks.Custom(model=_GridSampleNet(), train=_images())


def test_loss_without_forward_derivative_is_blamed() -> None:
    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cdist(out, nn.functional.one_hot(y, 3).to(out.dtype)).mean()

    with pytest.raises(ValueError, match=r"^`loss` cannot be differentiated.*_cdist_forward"):
        fmd.tasks.Custom(model=_dropout_mlp(), train=_images(), loss=loss)


def test_in_place_parameter_write_is_refused() -> None:
    with pytest.raises(ValueError, match=r"writes parameter `fc\.weight` in place"):
        fmd.tasks.Custom(model=_InPlaceNet(), train=_images())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "resnet", "train": _images()}, "`model` must be an nn.Module"),
        ({"model": _bn_cnn()}, "`train` is required"),
        ({"model": _bn_cnn(), "train": (torch.zeros(4, 1, 6, 6), torch.zeros(3))}, "same length"),
        ({"model": _bn_cnn(), "train": [1, 2, 3]}, "must yield"),
        (
            {"model": _bn_cnn(), "train": _images(), "val": (torch.zeros(2, 5), torch.zeros(2))},
            "`val` inputs must have the shape",
        ),
        ({"model": _bn_cnn(), "train": _images(), "steps": 0}, "`steps` must be a positive int"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        fmd.tasks.Custom(**kwargs)


def _mlp10() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))


def _flat(n: int = 32, width: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, width, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train": (_flat()[0], _flat()[1].float())}, r"^`train` targets must be integer class"),
        ({"train": _flat(), "val": (_flat(8)[0], _flat(8)[1].float())}, r"^`val` targets must"),
        ({"train": _flat(), "test": (_flat(8)[0], _flat(8)[1] > 0)}, r"^`test` targets must"),
        ({"train": (_flat()[0], -_flat()[1] - 1)}, r"^`train` targets .* label -\d+ < 0"),
        ({"train": _flat(width=12)}, r"^`train` inputs of shape \(12,\) per example do not fit"),
        ({"train": _flat(), "test": _flat(8, width=12)}, r"^`test` inputs must have the shape"),
        ({"train": (_flat()[0], _flat()[1] * 3)}, r"^`model` gives 3 scores .* go up to 6"),
    ],
)
def test_data_that_does_not_fit_the_model_or_loss_fails_at_construction_naming_it(
    kwargs: dict[str, object], match: str
) -> None:
    for check in (True, False):  # without the forward-mode dry run too
        with pytest.raises(ValueError, match=match):
            fmd.tasks.Custom(model=_mlp10(), check=check, steps=5, batch_size=8, **kwargs)


def test_float_targets_are_fine_with_a_loss_of_their_own() -> None:
    x, y = _flat()

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out[:, 0] - target) ** 2).mean()

    task = fmd.tasks.Custom(model=_mlp10(), train=(x, y.float()), loss=mse, steps=4, batch_size=8)
    assert fmd.run_episode(task, {"lr": [0.01]}).steps == 4
