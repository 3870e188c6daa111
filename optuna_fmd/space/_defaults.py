"""The default spaces: the bounds and starts of each optimiser's hyperparameters
(:data:`DEFAULT_BOUNDS`) and the builders over them: windows (:func:`default_space`), families
(:func:`default_family_space`, :func:`family_space`), per layer group (:func:`per_layer_space`,
:func:`schedule_free_space`) and with class weights (:func:`imbalanced_space`).

Import them from :mod:`optuna_fmd.space`, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ._families import Constant, Cosine
from ._family import Family
from ._loss_families import loss_families
from ._refiner import Refiner
from ._space import ScheduleSpace
from ._windows import Schedule

__all__ = [
    "DEFAULT_BOUNDS",
    "default_family_space",
    "default_space",
    "family_space",
    "imbalanced_space",
    "per_layer_space",
    "schedule_free_space",
]

#: ``{optimizer: {hyper: (low, high, log, init)}}``. SGD: the usual 0.05 / 0.9 / 5e-4 start with
#: bounds that contain every setting that trains the small models here; Adam(W): PyTorch's
#: defaults (lr 1e-3, beta1 0.9) and AdamW's common decoupled weight decay of 0.01. Schedule-free
#: AdamW / SGD: the ``schedulefree`` package's defaults (lr 0.0025 / 1.0, beta 0.9, no weight
#: decay, no warm-up); ``warmup`` counts steps, and ``beta`` stays clear of 0, where the
#: evaluated average ``x = y + (1 - 1 / beta) (z - y)`` is undefined.
DEFAULT_BOUNDS: Mapping[str, Mapping[str, tuple[float, float, bool, float]]] = {
    "sgd": {
        "lr": (1e-3, 1.0, True, 0.05),
        "momentum": (0.0, 0.99, False, 0.9),
        "weight_decay": (0.0, 1e-2, False, 5e-4),
    },
    "adam": {
        "lr": (1e-5, 1e-1, True, 1e-3),
        "beta1": (0.0, 0.99, False, 0.9),
        "weight_decay": (0.0, 1e-2, False, 0.0),
    },
    "adamw": {
        "lr": (1e-5, 1e-1, True, 1e-3),
        "beta1": (0.0, 0.99, False, 0.9),
        "weight_decay": (0.0, 0.3, False, 1e-2),
    },
    "sf-adamw": {
        "lr": (1e-4, 1e-1, True, 0.0025),
        "beta1": (0.5, 0.99, False, 0.9),
        "weight_decay": (0.0, 0.3, False, 0.0),
        "warmup": (0.0, 100.0, False, 0.0),
    },
    "sf-sgd": {
        "lr": (1e-2, 10.0, True, 1.0),
        "momentum": (0.5, 0.99, False, 0.9),
        "weight_decay": (0.0, 1e-2, False, 0.0),
        "warmup": (0.0, 100.0, False, 0.0),
    },
}


def default_space(
    optimizer: str = "sgd",
    windows: int = 10,
    *,
    hypers: Sequence[str] | None = None,
    init: Mapping[str, float] | None = None,
) -> ScheduleSpace:
    """The default window space of ``optimizer``: every scheduled hyperparameter of
    :data:`DEFAULT_BOUNDS` with ``windows`` values.

    Args:
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        windows: Windows K per hyperparameter.
        hypers: Only these hyperparameters (default: all of the optimiser's).
        init: Starting values that replace the defaults, ``{hyper: value}``.
    """
    if optimizer not in DEFAULT_BOUNDS:
        raise ValueError(
            f"`optimizer` must be one of {list(DEFAULT_BOUNDS)}, but got {optimizer!r}."
        )
    bounds = DEFAULT_BOUNDS[optimizer]
    names = list(bounds) if hypers is None else list(hypers)
    unknown = [h for h in [*names, *(init or {})] if h not in bounds]
    if unknown or not names:
        raise ValueError(
            f"`hypers` (and the keys of `init`) must be a non-empty subset of {list(bounds)} "
            f"for optimizer={optimizer!r}, but got {unknown if unknown else names}."
        )
    starts = {h: bounds[h][3] for h in names} | dict(init or {})
    return ScheduleSpace({h: Schedule(windows, *bounds[h][:3], init=starts[h]) for h in names})


def default_family_space(
    optimizer: str = "sgd",
    windows: int = 10,
    *,
    refine: bool = True,
    init: Mapping[str, float] | None = None,
    hypers: Sequence[str] | None = None,
) -> ScheduleSpace:
    """The default *family* space of ``optimizer``, the one :class:`~optuna_fmd.FMDSampler`
    searches by default: :func:`family_space` over :func:`default_space` (the lr as a
    :class:`Cosine` with warm-up (peak at the default lr, no warm-up, decaying to 0), optionally
    times a windowed correction (:class:`Refiner`, ``refine=True``), and every other
    hyperparameter of :data:`DEFAULT_BOUNDS` as one :class:`Constant` at its default).

    Args:
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        windows: Windows K of the lr schedule.
        refine: Add the per-window corrections ``lr_delta_<k>`` (found after the family's
            few parameters, see :class:`~optuna_fmd.FMDSampler`).
        init: Starting values that replace the defaults, ``{hyper: value}`` (the lr's is the
            cosine's peak).
        hypers: Only these hyperparameters, in this order (default: all of the optimiser's).
    """
    return family_space(default_space(optimizer, windows, hypers=hypers, init=init), refine=refine)


def family_space(window_space: ScheduleSpace, *, refine: bool = True) -> ScheduleSpace:
    """The family space over a window space's hyperparameters, bounds and starts: every entry
    of the lr a :class:`Cosine` (peak in the lr's bounds, starting at its start; no warm-up;
    decaying to 0), times its windows' corrections with ``refine`` (:class:`Refiner`); every
    other entry one :class:`Constant` in its bounds at its start. Layer groups keep their
    ``hyper`` and ``params``.

    The one builder of the default family space: :func:`default_family_space`, the CLI's
    ``--space family`` and the comparison's FMD methods all go through it.

    Example:
        >>> family_space(default_space("sgd", windows=2), refine=False).param_names()
        ['lr_peak', 'lr_warmup', 'lr_final', 'momentum_value', 'weight_decay_value']
    """
    entries: dict[str, Schedule | Family] = {}
    for name, s in window_space.items():
        if not isinstance(s, Schedule):
            raise TypeError(f"`window_space` must hold window schedules, but `{name}` is {s!r}.")
        assert s.init is not None
        hyper, params = s.hyper, s.params
        if (hyper or name) == "lr":
            lr: Family = Cosine(
                s.low, s.high, init=s.init, windows=s.windows, hyper=hyper, params=params
            )
            entries[name] = Refiner(lr, s.windows) if refine else lr
        else:
            entries[name] = Constant(
                s.low, s.high, log=s.log, init=s.init, hyper=hyper, params=params
            )
    return ScheduleSpace(entries)


def per_layer_space(
    layers: Mapping[str, str | Sequence[str]],
    optimizer: str = "sgd",
    windows: int = 10,
    *,
    init: Mapping[str, float] | None = None,
) -> ScheduleSpace:
    """A cosine lr schedule per layer group and every other hyperparameter of
    :data:`DEFAULT_BOUNDS` as one :class:`Constant` shared by all layers.

    Entry ``lr_<label>`` is a :class:`Cosine` (peak, warm-up, final) restricted to the
    parameters matched by ``layers[label]`` (``fnmatch`` globs over
    ``model.named_parameters()``), so its trial params are ``lr_<label>_peak``,
    ``lr_<label>_warmup`` and ``lr_<label>_final``. :class:`~optuna_fmd.FMDSampler` moves every
    layer's peak together when it searches the lr scale and every layer's warm-up (or final)
    together in its coarse pass, so its cost before the first hypergradient does not grow with
    the number of layers.

    Args:
        layers: ``{label: glob or globs}``; labels must make identifiers (``"l0"``, ``"fc"``).
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        windows: Windows K of every lr schedule.
        init: Starting values that replace the defaults, ``{hyper: value}`` (the lr's is every
            cosine's peak).

    Example:
        >>> space = per_layer_space({"l0": "1.*", "l1": "3.*"}, windows=4)
        >>> space.param_names()[:3]
        ['lr_l0_peak', 'lr_l0_warmup', 'lr_l0_final']
        >>> space.groups()["lr_l1"]
        ('lr', ('3.*',))
    """
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError(
            f"`layers` must be a non-empty mapping of label -> globs, but got {layers!r}."
        )
    family = default_family_space(optimizer, windows, refine=False, init=init)
    lr = family["lr"]
    assert isinstance(lr, Cosine)
    peak = lr.parameters["peak"]
    entries: dict[str, Schedule | Family] = {}
    for label, globs in layers.items():
        name = f"lr_{label}"
        if not name.isidentifier():
            raise ValueError(f"layer labels must make identifiers, but got {label!r}.")
        entries[name] = Cosine(
            peak.low, peak.high, init=peak.start(), windows=windows, hyper="lr", params=globs
        )
    entries.update({h: e for h, e in family.items() if h != "lr"})
    return ScheduleSpace(entries)


def schedule_free_space(
    layers: Mapping[str, str | Sequence[str]],
    optimizer: str = "sf-adamw",
    *,
    init: Mapping[str, float] | None = None,
    per_layer: Sequence[str] = ("lr", "warmup"),
) -> ScheduleSpace:
    """The space of a schedule-free optimiser (Defazio et al., "The Road Less Scheduled",
    NeurIPS 2024) over a model's layer groups: what its users tune, as :class:`Constant` s.

    Schedule-free training needs no lr schedule, but its lr, warm-up, ``beta`` and weight decay
    still need tuning. Each hyperparameter of :data:`DEFAULT_BOUNDS` ``[optimizer]`` named in
    ``per_layer`` gets one entry per layer group, ``<hyper>_<label>`` (restricted to the
    parameters matched by ``layers[label]``, with trial param ``<hyper>_<label>_value``); every
    other one is one entry ``<hyper>`` shared by all layers. The lr entries come first (the
    sampler's lr scale moves them together), then the other grouped ones, then the shared ones;
    ``beta2`` keeps the task's fixed value.

    Args:
        layers: ``{label: glob or globs}``; labels must make identifiers (``"l0"``, ``"fc"``).
        optimizer: ``"sf-adamw"`` or ``"sf-sgd"``.
        init: Starting values that replace the package's defaults, ``{hyper: value}`` (e.g.
            ``{"warmup": 30.0}``).
        per_layer: The hyperparameters searched per layer group (default: the lr and its
            warm-up; the others shared).

    Example:
        >>> space = schedule_free_space({"l0": "1.*", "l1": "3.*"}, init={"warmup": 30.0})
        >>> space.param_names()[:4]
        ['lr_l0_value', 'lr_l1_value', 'warmup_l0_value', 'warmup_l1_value']
        >>> space.param_names()[4:]
        ['beta1_value', 'weight_decay_value']
        >>> space.initial_values()["warmup_l1"], space.groups()["lr_l0"]
        ([30.0], ('lr', ('1.*',)))
    """
    if optimizer not in ("sf-adamw", "sf-sgd"):
        raise ValueError(f"`optimizer` must be 'sf-adamw' or 'sf-sgd', but got {optimizer!r}.")
    if not isinstance(layers, Mapping) or not layers:
        raise ValueError(
            f"`layers` must be a non-empty mapping of label -> globs, but got {layers!r}."
        )
    bounds = DEFAULT_BOUNDS[optimizer]
    unknown = [h for h in [*per_layer, *(init or {})] if h not in bounds]
    if unknown or isinstance(per_layer, str):
        raise ValueError(
            f"`per_layer` (and the keys of `init`) must name hyperparameters among "
            f"{list(bounds)}, but got {unknown if unknown else per_layer!r}."
        )
    starts = {h: b[3] for h, b in bounds.items()} | dict(init or {})
    entries: dict[str, Schedule | Family] = {}
    for hyper in sorted(bounds, key=lambda h: (h != "lr", h not in per_layer)):
        low, high, log, _ = bounds[hyper]
        if hyper not in per_layer:
            entries[hyper] = Constant(low, high, log=log, init=starts[hyper])
            continue
        for label, globs in layers.items():
            name = f"{hyper}_{label}"
            if not name.isidentifier():
                raise ValueError(f"layer labels must make identifiers, but got {label!r}.")
            entries[name] = Constant(
                low, high, log=log, init=starts[hyper], hyper=hyper, params=globs
            )
    return ScheduleSpace(entries)


def imbalanced_space(
    class_counts: Iterable[float],
    optimizer: str = "sgd",
    windows: int = 10,
    *,
    shape: str = "effective",
    init: Mapping[str, float] | None = None,
    refine: bool = False,
    label_smoothing: bool = False,
) -> ScheduleSpace:
    """The default space of an imbalanced classification task: :func:`default_family_space`
    and, per class ``c``, ``cw_<c>``: a :class:`DeferredStep` of its weight (hyper
    ``class_weight``, params ``str(c)``) from 1 to its ``shape`` weight (``"effective"`` or
    ``"inverse"``, see :func:`effective_number_weights`); with ``label_smoothing``, a
    :class:`Constant` in [0, 0.3] from 0; with ``refine``, the lr's and class weights' corrections.

    Example:
        >>> imbalanced_space([900, 90, 10], windows=4).param_names()[5:8]
        ['cw_0_switch', 'cw_0_strength', 'cw_1_switch']
    """
    entries = default_family_space(optimizer, windows, refine=refine, init=init)
    loss = loss_families(
        class_counts, windows, shape=shape, refine=refine, label_smoothing=label_smoothing
    )
    return ScheduleSpace({**entries, **loss})
