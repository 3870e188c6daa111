"""Class weights and label smoothing as space entries: the weight shapes, the deferred step and
the default space of an imbalanced task."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from optuna_fmd.outer._geometry import geometry_of
from optuna_fmd.space import (
    CLASS_WEIGHT_BOUNDS,
    Constant,
    Cosine,
    DeferredStep,
    Refiner,
    ScheduleSpace,
    default_family_space,
    effective_number_weights,
    imbalanced_space,
    inverse_frequency_weights,
    midpoints,
)

LONG_TAIL = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT, ratio 100


# -- the weight shapes ------------------------------------------------------------------------
def test_inverse_frequency_weights_by_hand() -> None:
    # 1/n = 1, 1/2, 1/4: sum 7/4, times 3 classes / (7/4)
    assert inverse_frequency_weights([1, 2, 4]) == pytest.approx([12 / 7, 6 / 7, 3 / 7])
    assert inverse_frequency_weights([10, 20, 40]) == pytest.approx([12 / 7, 6 / 7, 3 / 7])
    assert inverse_frequency_weights([7]) == [1.0]


def test_effective_number_weights_by_hand() -> None:
    # beta 0.5: (1 - 0.5) / (1 - 0.5 ** n) = 1 and 2/3, normalised to mean 1
    assert effective_number_weights([1, 2], beta=0.5) == pytest.approx([6 / 5, 4 / 5])
    assert effective_number_weights([1, 5, 100], beta=0.0) == [1.0, 1.0, 1.0]
    raw = [1e-4 / (1 - 0.9999**n) for n in LONG_TAIL]  # the paper's default beta
    expected = [len(raw) * r / sum(raw) for r in raw]
    assert effective_number_weights(LONG_TAIL) == pytest.approx(expected, rel=1e-9)
    # beta -> 1: the effective number tends to n
    near = effective_number_weights(LONG_TAIL, beta=1 - 1e-10)
    assert near == pytest.approx(inverse_frequency_weights(LONG_TAIL), rel=1e-5)


@pytest.mark.parametrize("shape", [inverse_frequency_weights, effective_number_weights])
def test_weights_average_one_and_fall_with_the_count(shape) -> None:  # type: ignore[no-untyped-def]
    w = shape(LONG_TAIL)
    assert math.fsum(w) / len(w) == pytest.approx(1.0, abs=1e-12)
    assert all(a < b for a, b in itertools.pairwise(w))  # the counts fall
    counts = torch.bincount(torch.tensor([0] * 9 + [1] * 3 + [2]))  # tensors and numpy work too
    assert shape(counts) == pytest.approx(shape([9, 3, 1]))
    assert shape(counts.numpy()) == pytest.approx(shape([9, 3, 1]))


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ([], "at least one class"),
        ([3, 0], r"`counts\[1\]` must be a positive number, but got 0"),
        ([3, -1.5], r"`counts\[1\]` must be a positive number"),
        ([float("nan")], r"`counts\[0\]` must be a positive number"),
        ([float("inf")], r"`counts\[0\]` must be a positive number"),
        ([True, 3], r"`counts\[0\]` must be a positive number"),
        (["4"], r"`counts\[0\]` must be a positive number"),
        ("123", "must be a sequence of class counts"),
        ({0: 3}, "must be a sequence of class counts"),
        (5, "must be a sequence of class counts"),
    ],
)
def test_bad_counts_are_named(counts: object, match: str) -> None:
    for shape in (inverse_frequency_weights, effective_number_weights):
        with pytest.raises(ValueError, match=match):
            shape(counts)  # type: ignore[arg-type]


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5, float("nan")])
def test_bad_beta_is_named(beta: float) -> None:
    with pytest.raises(ValueError, match=r"`beta` must"):
        effective_number_weights([3, 1], beta=beta)


# -- the deferred step ------------------------------------------------------------------------
def test_deferred_step_is_one_before_the_switch_and_the_target_after() -> None:
    cw = DeferredStep(3.0, windows=10)
    p = {"switch": 0.5, "strength": 1.0}
    assert cw.value(0.0, p) == pytest.approx(1.0, abs=1e-3)
    assert cw.value(0.2, p) == pytest.approx(1.0, abs=1e-2)  # three windows before
    assert cw.value(0.5, p) == pytest.approx(2.0)  # half-way at the switch
    assert cw.value(0.8, p) == pytest.approx(3.0, abs=1e-2)
    assert cw.value(1.0, p) == pytest.approx(3.0, abs=1e-3)
    low = DeferredStep(0.4, windows=10)
    q = {"switch": 0.3, "strength": 1.5}
    assert low.value(0.0, q) == pytest.approx(1.0, abs=1e-2)
    assert low.value(0.7, q) == pytest.approx(1 + 1.5 * (0.4 - 1), abs=1e-3)
    assert cw.value(0.9, {"switch": 0.5, "strength": 0.0}) == 1.0


def test_deferred_step_params_and_their_bounds() -> None:
    cw = DeferredStep(3.0, hyper="class_weight", params="3")
    assert list(cw.parameters) == ["switch", "strength"]
    switch, strength = cw.parameters["switch"], cw.parameters["strength"]
    assert (switch.low, switch.high, switch.log, switch.start()) == (0.05, 0.95, False, 0.6)
    assert (strength.low, strength.high, strength.log, strength.start()) == (0.0, 2.0, False, 1.0)
    assert DeferredStep(3.0, switch=0.3).initial()["switch"] == 0.3
    assert cw.params == ("3",) and cw.hyper == "class_weight"


@pytest.mark.parametrize("target", [0.01, 0.1, 0.5, 0.9])
def test_a_target_below_one_never_drives_the_weight_under_the_floor(target: float) -> None:
    floor = CLASS_WEIGHT_BOUNDS[0]
    cw = DeferredStep(target, windows=10)
    top = cw.parameters["strength"].high
    assert top == pytest.approx(min(2.0, (1 - floor) / (1 - target)))
    assert cw.initial()["strength"] == min(1.0, top)  # the target itself whenever it can
    p = {"switch": 0.05, "strength": top}
    assert min(cw.value(u / 100, p) for u in range(101)) >= floor - 1e-12
    assert cw.value(1.0, p) == pytest.approx(max(floor, 1 + 2 * (target - 1)), abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": 0.0}, "must be positive"),
        ({"target": -2.0}, "must be positive"),
        ({"target": float("nan")}, "`target` must be a finite float"),
        ({"target": 2.0, "max_strength": 0.0}, "must be positive"),
        ({"target": 2.0, "switch": 0.99}, r"`init` must lie inside \[0.05, 0.95\]"),
        ({"target": 2.0, "windows": 0}, "`windows` must be a positive int"),
    ],
)
def test_bad_deferred_steps_are_named(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DeferredStep(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("windows", [1, 4, 10])
@pytest.mark.parametrize(
    ("target", "switch", "strength"), [(3.0, 0.5, 1.0), (0.3, 0.23, 1.2), (8.0, 0.81, 0.4)]
)
def test_deferred_step_gradient_is_its_central_difference(
    windows: int, target: float, switch: float, strength: float
) -> None:
    cw = DeferredStep(target, windows=windows)
    p = {"switch": switch, "strength": strength}
    for u in [0.0, 0.1, switch - 0.03, switch, switch + 0.07, 0.66, 1.0]:
        grad = cw.gradient(u, p)
        assert set(grad) == {"switch", "strength"}
        for name in p:
            h = 1e-6
            hi, lo = dict(p), dict(p)
            hi[name] += h
            lo[name] -= h
            fd = (cw.value(u, hi) - cw.value(u, lo)) / (2 * h)
            assert grad[name] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_the_step_width_moves_the_switch_evenly_between_midpoints() -> None:
    # width 1/(2K): the summed pull of `switch` on the window values is the same (to 0.3 %)
    # wherever it sits between two midpoints, and never zero as a hard step's would be
    k, target = 10, 3.0
    cw = DeferredStep(target, windows=k)
    pulls = [
        sum(cw.jacobian({"switch": 0.35 + 0.3 * i / 60, "strength": 1.0})["switch"])
        for i in range(61)
    ]
    assert all(p / (-(target - 1) * k) == pytest.approx(1.0, rel=3e-3) for p in pulls)
    # and the step still happens within about a window either side of the switch
    p = {"switch": 0.5, "strength": 1.0}
    assert cw.value(0.5 - 1 / k, p) < 1 + 0.12 * (target - 1)
    assert cw.value(0.5 + 1 / k, p) > 1 + 0.88 * (target - 1)


# -- class weights as space entries -----------------------------------------------------------
def test_a_constant_is_a_per_class_weight() -> None:
    low, high, log, init = CLASS_WEIGHT_BOUNDS
    assert (low, high, log, init) == (0.05, 20.0, True, 1.0)
    space = ScheduleSpace(
        {
            "lr": Cosine(windows=4, init=0.1),
            "cw_3": Constant(low, high, log=log, init=init, hyper="class_weight", params="3"),
            "cw_rest": Constant(low, high, log=log, init=init, hyper="class_weight"),
            "class_weight": Constant(low, high, log=log, init=init),
        }
    )
    assert space.groups() == {
        "cw_3": ("class_weight", ("3",)),
        "cw_rest": ("class_weight", ("*",)),
    }
    assert set(space.hypers().values()) == {"lr", "class_weight"}
    assert space.initial_values()["cw_3"] == [1.0]
    assert space.distributions()["cw_3_value"] == (0.05, 20.0, True)


def test_imbalanced_space_names_one_deferred_step_per_class() -> None:
    counts = [900, 300, 100, 30, 10]
    space = imbalanced_space(counts, windows=4)
    base = default_family_space("sgd", 4, refine=False)
    assert list(space)[: len(base)] == list(base)  # the optimiser's own, lr first
    assert space.param_names()[: base.n_params] == base.param_names()
    cw_params = space.param_names()[base.n_params :]
    assert cw_params == [f"cw_{c}_{p}" for c in range(5) for p in ("switch", "strength")]
    for c, w in enumerate(effective_number_weights(counts)):
        entry = space[f"cw_{c}"]
        assert isinstance(entry, DeferredStep)
        assert entry.target == pytest.approx(w)
        assert entry.windows == 4
    groups = space.groups()
    assert groups["cw_3"] == ("class_weight", ("3",))
    assert groups == {f"cw_{c}": ("class_weight", (str(c),)) for c in range(5)}
    inverse = imbalanced_space(counts, windows=4, shape="inverse")
    targets = [inverse[f"cw_{c}"].target for c in range(5)]  # type: ignore[union-attr]
    assert targets == pytest.approx(inverse_frequency_weights(counts))
    with pytest.raises(ValueError, match="`shape` must be one of"):
        imbalanced_space(counts, shape="sqrt")


def test_imbalanced_space_options() -> None:
    space = imbalanced_space([50, 5], "adamw", windows=3, init={"lr": 3e-3}, label_smoothing=True)
    assert space.initial_params()["lr_peak"] == 3e-3
    assert "beta1_value" in space.param_names()
    assert space.distributions()["label_smoothing_value"] == (0.0, 0.3, False)
    assert space.initial_params()["label_smoothing_value"] == 0.0
    assert space.hypers()["label_smoothing"] == "label_smoothing"
    assert "label_smoothing" not in space.groups()
    refined = imbalanced_space([50, 5], windows=3, refine=True)
    for name in ("lr", "cw_0", "cw_1"):
        assert isinstance(refined[name], Refiner)
        assert [f"{name}_delta_{k}" for k in range(3)] == [
            p for p in refined.param_names() if p.startswith(f"{name}_delta_")
        ]
    assert isinstance(refined["cw_1"].base, DeferredStep)  # type: ignore[union-attr]
    assert refined.groups()["cw_1"] == ("class_weight", ("1",))


@pytest.mark.parametrize("refine", [False, True])
def test_round_trip_and_the_chain_rule_are_exact(refine: bool) -> None:
    space = imbalanced_space(LONG_TAIL[:4], windows=5, refine=refine, label_smoothing=True)
    start = space.initial_params()
    back, initial = space.from_params(start), space.initial_values()
    assert list(back) == list(initial)
    assert all(back[n] == pytest.approx(initial[n]) for n in initial)
    for name in space.param_names():
        ref = space.parse(name)
        assert ref is not None and ref.kind in {"family", "correction"}
    assert space.parse("cw_2_switch") == ("cw_2", "switch", "family", None)
    with pytest.raises(ValueError, match="do not determine family parameters"):
        space.to_params(space.initial_values())
    rng = random.Random(0)
    dists = space.distributions()
    params = {
        n: (math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi))
        for n, (lo, hi, log) in dists.items()
    }
    values = space.from_params(params)
    g = {n: [rng.gauss(0, 1) for _ in v] for n, v in values.items()}

    def loss(x: dict[str, float]) -> float:
        vals = space.from_params(x)
        return math.fsum(a * b for n in vals for a, b in zip(vals[n], g[n], strict=True))

    chained = space.chain(params, g)
    assert list(chained) == space.param_names()
    for name in space.param_names():
        h = 1e-6 * max(1.0, abs(params[name]))
        hi, lo = dict(params), dict(params)
        hi[name] += h
        lo[name] -= h
        fd = (loss(hi) - loss(lo)) / (2 * h)
        assert chained[name] == pytest.approx(fd, rel=1e-5, abs=1e-7), name
    # the window values are the deferred step at the window midpoints
    cw = space["cw_3"]
    assert isinstance(cw, (DeferredStep, Refiner))
    local = {p: params[f"cw_3_{p}"] for p in cw.parameters}
    assert values["cw_3"] == pytest.approx([cw.value(u, local) for u in midpoints(5)])


@pytest.mark.parametrize("refine", [False, True])
def test_coarse_blocks_do_not_grow_with_the_classes(refine: bool) -> None:
    def blocks(n_classes: int) -> tuple[int, dict[str, int]]:
        space = imbalanced_space(LONG_TAIL[:n_classes], windows=4, refine=refine)
        geo = geometry_of(space)
        assert geo.blocks is not None
        return len(set(geo.blocks)), dict(zip(space.param_names(), geo.blocks, strict=True))

    n3, of3 = blocks(3)
    n10, of10 = blocks(10)
    assert n3 == n10
    for of, n in ((of3, 3), (of10, 10)):
        assert len({of[f"cw_{c}_switch"] for c in range(n)}) == 1
        assert len({of[f"cw_{c}_strength"] for c in range(n)}) == 1
        assert of["cw_0_switch"] != of["cw_0_strength"]
        if refine:
            assert len({of[f"cw_{c}_delta_1"] for c in range(n)}) == 1
