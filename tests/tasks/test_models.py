"""Model helpers: the names a task takes, checked at construction, and the parameter groups
of a per-layer space."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import pytest

import optuna_fmd as fmd
from optuna_fmd.space import per_layer_space
from optuna_fmd.tasks import MODELS, build_model, check_model, layer_groups


def test_layer_groups_cover_every_parameter_once_in_model_order() -> None:
    for name, shape in (("mlp-16-16-16", (8,)), ("lenet", (1, 28, 28)), ("wrn-10-1", (3, 8, 8))):
        model = build_model(name, shape, 10)
        groups = layer_groups(model)
        assert list(groups) == [f"l{i}" for i in range(len(groups))]
        for pname, _ in model.named_parameters():
            hits = [
                g for g, globs in groups.items() if any(fnmatch.fnmatch(pname, p) for p in globs)
            ]
            assert len(hits) == 1, (name, pname, hits)
    assert layer_groups(build_model("mlp-128-128", (4,), 3)) == {
        "l0": ("1.*",),
        "l1": ("3.*",),
        "l2": ("5.*",),
    }


def test_a_per_layer_space_trains_each_layer_with_its_own_schedule() -> None:
    """A layer whose peak lr is the lowest bound barely moves; the others train."""
    task = fmd.tasks.Digits(model="mlp-16", steps=30, batch_size=32)
    space = per_layer_space(layer_groups(task.make_model(0)), windows=3)
    params = space.initial_params() | {"lr_l0_peak": 1e-3}
    res = fmd.run_episode(task, space.from_params(params), seed=0, groups=space.groups())
    base = fmd.run_episode(
        task, space.from_params(space.initial_params()), seed=0, groups=space.groups()
    )
    assert res.val_loss != base.val_loss
    assert res.hypergradient is not None and set(res.hypergradient) == set(space)


@pytest.mark.parametrize(
    "make",
    [
        lambda: fmd.tasks.FashionMNIST(model="mpl"),
        lambda: fmd.tasks.MNIST(model="resnet"),
        lambda: fmd.tasks.CIFAR10(model="mlp-"),
        lambda: fmd.tasks.Digits(model="wrn16"),
        lambda: fmd.tasks.Synthetic(model=3),
    ],
)
def test_an_unknown_model_name_fails_at_construction_listing_the_models(
    make: Callable[[], fmd.tasks.Task], monkeypatch: pytest.MonkeyPatch
) -> None:
    # built without data on disk: nothing is read before the check
    monkeypatch.setenv("OPTUNA_FMD_DATA", "/nonexistent")
    with pytest.raises(ValueError, match=r"^`model` must be one of: mlp \(") as info:
        make()
    assert MODELS in str(info.value) and "..." not in MODELS
    assert "but got" in str(info.value)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fmd.tasks.Digits(model="lenet"), r"'lenet' does not fit .* \(1, 8, 8\)"),
        (lambda: fmd.tasks.Synthetic(model="wrn-16-1"), r"does not fit .* \(784,\)"),
        (lambda: fmd.tasks.CIFAR10(model="wrn-15-1"), "depth 6n \\+ 4"),
    ],
)
def test_a_model_that_cannot_take_the_task_inputs_fails_at_construction(
    make: Callable[[], fmd.tasks.Task], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_known_models_of_every_form_pass_the_check() -> None:
    assert fmd.tasks.FashionMNIST(model="lenet").model == "lenet"
    assert fmd.tasks.CIFAR10(model="wrn-16-1").model == "wrn-16-1"
    assert fmd.tasks.Synthetic(model="mlp-8-4", shape=(5,)).model == "mlp-8-4"
    assert check_model("wrn-10-2", (3, 8, 8)) == "wrn-10-2"
