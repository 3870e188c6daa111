"""Model helpers: the parameter groups of a per-layer space."""

from __future__ import annotations

import fnmatch

import optuna_fmd as fmd
from optuna_fmd.space import per_layer_space
from optuna_fmd.tasks import build_model, layer_groups


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
