"""Default search spaces: one definition for the CLI, the comparison and users."""

from __future__ import annotations

import math

import pytest
import torch

import optuna_fmd as fmd
from optuna_fmd import baselines, cli
from optuna_fmd.space import (
    DEFAULT_BOUNDS,
    Constant,
    Cosine,
    Custom,
    FamilyParam,
    Linear,
    Refiner,
    StepDecay,
    default_family_space,
    default_space,
)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "sf-adamw", "sf-sgd"])
def test_default_space_covers_the_optimizer_and_its_start_trains(optimizer: str) -> None:
    space = default_space(optimizer, windows=3)
    assert list(space) == list(DEFAULT_BOUNDS[optimizer])
    task = fmd.tasks.Digits(steps=30, batch_size=32, optimizer=optimizer)
    res = fmd.run_episode(task, space.initial_values(), hypergradient=False)
    assert res.val_loss < 2.3  # below chance (ln 10): the start trains on every optimiser


def test_init_overrides_and_subsets() -> None:
    space = default_space("sgd", 2, hypers=["lr"], init={"lr": 0.1})
    assert space.initial_values() == {"lr": [0.1, 0.1]}
    with pytest.raises(ValueError, match="subset of"):
        default_space("sgd", 2, hypers=["beta1"])
    with pytest.raises(ValueError, match="`optimizer` must be one of"):
        default_space("rmsprop")


def test_the_cli_spaces_are_the_default_spaces() -> None:
    a = cli.make_space(["lr", "momentum", "weight_decay"], 4, kind="windows")
    b = default_space("sgd", 4)
    assert a.distributions() == b.distributions()
    assert a.initial_params() == b.initial_params()
    family = cli.make_space(["lr", "momentum", "weight_decay"], 4)
    default = default_family_space("sgd", 4)
    assert family.distributions() == default.distributions()
    assert family.initial_params() == default.initial_params()
    assert family.param_names()[:3] == ["lr_peak", "lr_warmup", "lr_final"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_one_builder_makes_the_default_family_space(optimizer: str) -> None:
    """The CLI's, the comparison's and the sampler's default family spaces are one function's
    over the window space: the same params, bounds and starts as the family spelled out."""
    from optuna_fmd.compare import _methods
    from optuna_fmd.space import family_space

    windows = default_space(optimizer, 4, init={"lr": 0.02})
    built = family_space(windows)
    assert _methods.family_space is family_space
    bounds = DEFAULT_BOUNDS[optimizer]
    lo, hi, _, _ = bounds["lr"]
    entries: dict = {"lr": Refiner(Cosine(lo, hi, windows=4, init=0.02), 4)}
    for h, (low, high, log, init) in bounds.items():
        if h != "lr":
            entries[h] = Constant(low, high, log=log, init=init)
    spelled = fmd.ScheduleSpace(entries)
    for space in (built, default_family_space(optimizer, 4, init={"lr": 0.02})):
        assert space.distributions() == spelled.distributions()
        assert space.initial_params() == spelled.initial_params()
        assert space.initial_values() == spelled.initial_values()
    plain = family_space(windows, refine=False)
    assert plain.param_names()[:3] == ["lr_peak", "lr_warmup", "lr_final"]
    assert not any("delta" in n for n in plain.param_names())


def test_the_cli_family_space_keeps_the_hypers_and_their_order() -> None:
    space = cli.make_space(["weight_decay", "lr"], 3, lr_init=0.1)
    assert list(space) == ["weight_decay", "lr"]
    assert space.initial_params()["lr_peak"] == 0.1
    assert list(cli.make_space(["momentum"], 3).param_names()) == ["momentum_value"]
    with pytest.raises(TypeError, match="must hold window schedules"):
        fmd.space.family_space(default_family_space("sgd", 2))


def test_the_families_are_defined_once_and_re_exported() -> None:
    from optuna_fmd import space
    from optuna_fmd.space import _families, _family, _loss_families, _refiner

    homes = {
        _family: ("Family", "FamilyParam", "midpoints"),
        _families: ("Constant", "Cosine", "Linear", "StepDecay", "Custom", "cosine_value"),
        _refiner: ("DELTA", "Refiner"),
        _loss_families: ("DeferredStep", "effective_number_weights", "inverse_frequency_weights"),
    }
    for module, names in homes.items():
        for name in names:
            assert getattr(space, name) is getattr(module, name)
    assert baselines.midpoints is space.midpoints


# -- families ---------------------------------------------------------------------------------
FAMILIES = {
    "constant": (Constant(windows=5), {"value": 0.07}),
    "cosine": (Cosine(windows=5), {"peak": 0.2, "warmup": 0.23, "final": 0.1}),
    "cosine-no-warmup": (Cosine(windows=5), {"peak": 0.05, "warmup": 0.0, "final": 0.3}),
    "linear": (Linear(windows=5), {"start": 0.3, "final": 0.2}),
    "step": (StepDecay(milestones=(0.3, 0.8), windows=5), {"value": 0.1, "gamma": 0.3}),
    "custom": (
        Custom(
            lambda u, a, b: a * math.exp(-b * u),
            {"a": FamilyParam(1e-3, 1.0, log=True), "b": FamilyParam(0.0, 5.0)},
            windows=5,
        ),
        {"a": 0.2, "b": 1.7},
    ),
    "refiner": (
        Refiner(Cosine(windows=3), 5),
        {
            "peak": 0.1,
            "warmup": 0.15,  # a window midpoint at the end of the warm-up is a kink
            "final": 0.0,
            **{f"delta_{k}": 0.1 * k - 0.2 for k in range(5)},
        },
    ),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_jacobian_matches_central_differences(name: str) -> None:
    family, p = FAMILIES[name]
    jac = family.jacobian(p)
    assert set(jac) == set(family.parameters)
    for n in family.parameters:
        h = 1e-6 * max(1.0, abs(p[n]))
        hi, lo = dict(p), dict(p)
        hi[n] += h
        lo[n] -= h
        rel = 1e-6
        if p[n] == family.parameters[n].low:  # at a bound: the one-sided difference inside it
            lo[n], h, rel = p[n], h / 2, 1e-4
        fd = [
            (a - b) / (2 * h)
            for a, b in zip(family.window_values(hi), family.window_values(lo), strict=True)
        ]
        assert jac[n] == pytest.approx(fd, rel=rel, abs=1e-9), n


def test_cosine_family_is_the_baseline_cosine_and_checks_its_bounds() -> None:
    got = Cosine(windows=10).window_values({"peak": 0.1, "warmup": 0.2, "final": 0.25})
    assert got == pytest.approx(baselines.cosine(0.1, 10, warmup=0.2, final=0.025))
    with pytest.raises(ValueError, match=r"`warmup` must lie inside \[0.0, 0.5\]"):
        Cosine(windows=4).window_values({"peak": 0.1, "warmup": 0.7, "final": 0.0})
    with pytest.raises(ValueError, match="needs parameter `final`"):
        Cosine(windows=4).window_values({"peak": 0.1, "warmup": 0.0})


def test_family_hypergradient_by_the_chain_rule_is_exact_through_an_episode() -> None:
    """d val_loss / d (peak, warmup, final) of a cosine lr schedule: the window hypergradient of
    one episode chained through the family's Jacobian equals central differences of the
    validation loss in the family's parameters (float64)."""
    task = fmd.tasks.Digits(steps=30, batch_size=16, dtype=torch.float64)
    windows = 6
    family = Cosine(windows=windows)
    p = {"peak": 0.3, "warmup": 0.2, "final": 0.1}
    fixed = {"momentum": [0.9] * windows}

    def loss(q: dict[str, float], hypergradient: bool = False) -> fmd.EpisodeResult:
        sched = {"lr": family.window_values(q), **fixed}
        return fmd.run_episode(task, sched, seed=0, hypergradient=hypergradient)

    res = loss(p, hypergradient=True)
    assert res.hypergradient is not None
    chained = family.chain(p, res.hypergradient["lr"])
    for n in p:
        h = 1e-6
        hi, lo = dict(p), dict(p)
        hi[n] += h
        lo[n] -= h
        fd = (loss(hi).val_loss - loss(lo).val_loss) / (2 * h)
        assert chained[n] == pytest.approx(fd, rel=1e-6), n
    # and the same chain by hand: sum over windows of dL/dv_k * dv_k/dpeak
    by_hand = sum(
        g * d for g, d in zip(res.hypergradient["lr"], family.jacobian(p)["peak"], strict=True)
    )
    assert chained["peak"] == pytest.approx(by_hand, rel=1e-12)


def test_parse_names_every_kind_of_param_through_the_space() -> None:
    from optuna_fmd.space import ParamRef, Schedule, ScheduleSpace

    space = ScheduleSpace(
        {
            "lr": Refiner(Cosine(windows=3), 3),
            "lr_head": Schedule(
                windows=2, low=1e-3, high=1.0, log=True, hyper="lr", params="fc.*"
            ),
            "weight_decay": Constant(0.0, 1e-2, log=False, init=5e-4),
        }
    )
    refs = {name: space.parse(name) for name in space.param_names()}
    assert refs["lr_peak"] == ParamRef("lr", "peak", "family", None)
    assert refs["lr_delta_2"] == ParamRef("lr", "delta_2", "correction", 2)
    assert refs["lr_head_1"] == ParamRef("lr_head", "1", "window", 1)
    assert refs["weight_decay_value"] == ParamRef("weight_decay", "value", "family", None)
    assert space.parse("lr_head_2") is None and space.parse("momentum_value") is None
    # every name round-trips through param_name
    from optuna_fmd.space import param_name

    assert all(param_name(r.entry, r.local) == n for n, r in refs.items() if r is not None)


def test_parse_param_without_the_space() -> None:
    from optuna_fmd.space import ParamRef, parse_param

    # with the entries (e.g. the keys of a trial's "schedules" attr): the longest owner wins
    entries = ["lr", "lr_head", "momentum"]
    assert parse_param("lr_head_peak", entries) == ParamRef("lr_head", "peak", "family", None)
    assert parse_param("lr_delta_4", entries) == ParamRef("lr", "delta_4", "correction", 4)
    assert parse_param("momentum_value", entries) == ParamRef("momentum", "value", "family", None)
    assert parse_param("beta1_0", entries) is None and parse_param("lr_", entries) is None
    # without: by the shape of the name
    assert parse_param("lr_3") == ParamRef("lr", "3", "window", 3)
    assert parse_param("lr_head_delta_0") == ParamRef("lr_head", "delta_0", "correction", 0)
    assert parse_param("lr_l0_warmup") == ParamRef("lr_l0", "warmup", "family", None)
    assert parse_param("x") is None and parse_param("_1") is None
    # the names of a whole default family space read back as the space reads them
    space = default_family_space("sgd", windows=3)
    for name in space.param_names():
        assert parse_param(name) == parse_param(name, list(space)) == space.parse(name)


def test_per_layer_space_has_a_cosine_per_group_and_shared_constants() -> None:
    from optuna_fmd.space import per_layer_space

    space = per_layer_space({"l0": "1.*", "l1": ("3.*", "4.*")}, "sgd", windows=4)
    assert list(space) == ["lr_l0", "lr_l1", "momentum", "weight_decay"]
    assert space.groups() == {"lr_l0": ("lr", ("1.*",)), "lr_l1": ("lr", ("3.*", "4.*"))}
    start = space.from_params(space.initial_params())
    assert start["lr_l0"] == start["lr_l1"] == Cosine(windows=4, init=0.05).initial_values()
    assert start["momentum"] == [0.9] and start["weight_decay"] == [5e-4]
    with pytest.raises(ValueError, match="identifiers"):
        per_layer_space({"a b": "1.*"})
    with pytest.raises(ValueError, match="non-empty"):
        per_layer_space({})


def test_the_schedule_free_space_has_an_lr_and_a_warmup_per_layer() -> None:
    from optuna_fmd.space import schedule_free_space

    layers = {"l0": "1.*", "l1": ("3.*",)}
    space = schedule_free_space(layers, init={"warmup": 10.0})
    assert space.param_names() == [
        "lr_l0_value",
        "lr_l1_value",
        "warmup_l0_value",
        "warmup_l1_value",
        "beta1_value",
        "weight_decay_value",
    ]
    assert space.groups() == {
        "lr_l0": ("lr", ("1.*",)),
        "lr_l1": ("lr", ("3.*",)),
        "warmup_l0": ("warmup", ("1.*",)),
        "warmup_l1": ("warmup", ("3.*",)),
    }
    start = space.initial_params()
    assert start["lr_l1_value"] == 0.0025 and start["warmup_l0_value"] == 10.0
    assert start["beta1_value"] == 0.9 and start["weight_decay_value"] == 0.0
    every = schedule_free_space(layers, "sf-sgd", per_layer=("lr", "momentum", "weight_decay"))
    assert len(every.groups()) == 6 and every.param_names()[-1] == "warmup_value"
    assert every.initial_params()["lr_l0_value"] == 1.0
    task = fmd.tasks.Digits(steps=20, batch_size=32, optimizer="sf-adamw")
    res = fmd.run_episode(task, space.from_params(start), groups=space.groups(), seed=0)
    assert res.hypergradient is not None and set(res.hypergradient) == set(space.initial_values())
    with pytest.raises(
        ValueError, match="`optimizer` must be 'sf-adamw' or 'sf-sgd', but got 'sgd'"
    ):
        schedule_free_space(layers, "sgd")
    with pytest.raises(ValueError, match=r"`per_layer`.*among.*but got \['beta2'\]"):
        schedule_free_space(layers, per_layer=("lr", "beta2"))
