"""Search spaces, without torch: window schedules, schedule *families* and the one place that
names trial parameters and converts them to and from schedules.

A :class:`ScheduleSpace` maps names to entries. A :class:`Schedule` is ``K`` free window values
(trial params ``<name>_0`` ... ``<name>_{K-1}``); a :class:`Family` is a schedule given by a few
parameters (trial params ``<name>_<param>``, e.g. ``lr_peak``), evaluated at the ``K`` window
midpoints ``(k + 0.5) / K``. An episode's hypergradient with respect to the window values gives
the hypergradient with respect to a family's parameters exactly, by the chain rule
(:meth:`ScheduleSpace.chain`). The families themselves (:class:`Cosine`, :class:`Constant`
...) and the cosine's maths (:func:`cosine_value`) are defined in ``_families``, the window
:class:`Schedule` in ``_windows``; import them from here.

Example:
    >>> from optuna_fmd.space import Constant, Cosine, ScheduleSpace, default_space
    >>> default_space("sgd", windows=2).initial_values()
    {'lr': [0.05, 0.05], 'momentum': [0.9, 0.9], 'weight_decay': [0.0005, 0.0005]}
    >>> cos = Cosine(windows=4)
    >>> [round(v, 4) for v in cos.window_values({"peak": 0.1, "warmup": 0.0, "final": 0.0})]
    [0.0962, 0.0691, 0.0309, 0.0038]
    >>> space = ScheduleSpace({"lr": Cosine(windows=4, init=0.1), "momentum": Constant(0.0, 0.99,
    ...                        log=False, init=0.9)})
    >>> space.param_names()
    ['lr_peak', 'lr_warmup', 'lr_final', 'momentum_value']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

from ._families import (
    CLASS_WEIGHT_BOUNDS,
    DELTA,
    Constant,
    Cosine,
    Custom,
    DeferredStep,
    Family,
    FamilyParam,
    Linear,
    Refiner,
    StepDecay,
    cosine_value,
    effective_number_weights,
    inverse_frequency_weights,
    loss_families,
    midpoints,
)
from ._windows import Schedule

__all__ = [
    "CLASS_WEIGHT_BOUNDS",
    "DEFAULT_BOUNDS",
    "DELTA",
    "Constant",
    "Cosine",
    "Custom",
    "DeferredStep",
    "Family",
    "FamilyParam",
    "Linear",
    "ParamRef",
    "Refiner",
    "Schedule",
    "ScheduleSpace",
    "StepDecay",
    "cosine_value",
    "default_family_space",
    "default_space",
    "effective_number_weights",
    "family_space",
    "imbalanced_space",
    "inverse_frequency_weights",
    "midpoints",
    "param_name",
    "parse_param",
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


# -- Param names -------------------------------------------------------------------------------
class ParamRef(NamedTuple):
    """What a trial parameter stands for in its space.

    Attributes:
        entry: The space entry it belongs to (``"lr"``, ``"lr_head"``).
        local: Its name inside the entry (``"3"`` for window 3, ``"peak"``, ``"delta_3"``).
        kind: ``"window"`` (a window value of a :class:`Schedule`), ``"family"`` (a family
            parameter) or ``"correction"`` (a :class:`Refiner`'s correction ``delta_<k>``).
        window: The window k of a ``"window"`` or ``"correction"`` param, else ``None``.
    """

    entry: str
    local: str
    kind: str
    window: int | None


def param_name(entry: str, local: str | int) -> str:
    """The trial parameter of ``entry``'s ``local`` param: ``<entry>_<local>`` (``lr_0``,
    ``lr_peak``, ``lr_delta_3``)."""
    return f"{entry}_{local}"


def _ref(entry: str, local: str) -> ParamRef:
    """``local`` read by its shape: ``delta_<k>`` a correction, ``<k>`` a window value."""
    if local.startswith(DELTA) and local[len(DELTA) :].isdigit():
        return ParamRef(entry, local, "correction", int(local[len(DELTA) :]))
    if local.isdigit():
        return ParamRef(entry, local, "window", int(local))
    return ParamRef(entry, local, "family", None)


def parse_param(name: str, entries: Iterable[str] | None = None) -> ParamRef | None:
    """Read a trial parameter name without the space that made it (a stored study's params).

    With ``entries`` (the space's entry names, e.g. the keys of a trial's
    ``user_attrs["schedules"]``), the longest entry that prefixes ``name`` owns it; ``None`` if
    none does. Without them, a name ending in ``_delta_<k>`` is a refiner's correction, one
    ending in ``_<k>`` a window value and any other ``<entry>_<param>`` a family parameter
    (split at the last underscore). :meth:`ScheduleSpace.parse` is exact; this is for studies
    whose space is not at hand.

    Example:
        >>> parse_param("lr_delta_3", ["lr", "momentum"])
        ParamRef(entry='lr', local='delta_3', kind='correction', window=3)
        >>> parse_param("lr_head_1")
        ParamRef(entry='lr_head', local='1', kind='window', window=1)
        >>> parse_param("weight_decay_value")
        ParamRef(entry='weight_decay', local='value', kind='family', window=None)
    """
    if entries is not None:
        owners = [e for e in entries if name.startswith(f"{e}_") and len(name) > len(e) + 1]
        if not owners:
            return None
        entry = max(owners, key=len)
        return _ref(entry, name[len(entry) + 1 :])
    head, _, k = name.rpartition("_")
    if not head:
        return None
    stem, _, tag = head.rpartition("_")
    if k.isdigit() and stem and f"{tag}_" == DELTA:
        return ParamRef(stem, f"{DELTA}{k}", "correction", int(k))
    return _ref(head, k)


# -- The space ---------------------------------------------------------------------------------
Entry = Schedule | Family


class ScheduleSpace(Mapping[str, Entry]):
    """A named set of :class:`Schedule` s and :class:`Family` s: the search space of a study.

    Trial parameters are named ``<name>_<k>`` (``lr_0`` ... ``lr_9``), one per window, for a
    :class:`Schedule`, and ``<name>_<param>`` (``lr_peak``) for a :class:`Family`. This class
    is the one place that spells those names and converts params to schedules and window
    hypergradients to param hypergradients.

    Example:
        >>> space = ScheduleSpace({"lr": Schedule(windows=3, low=1e-3, high=1.0, log=True)})
        >>> space.param_names()
        ['lr_0', 'lr_1', 'lr_2']
    """

    def __init__(self, schedules: Mapping[str, Entry]) -> None:
        if not isinstance(schedules, Mapping):
            raise TypeError(
                f"`schedules` must be a mapping of name -> Schedule, but got {schedules!r}."
            )
        if not schedules:
            raise ValueError("`schedules` must name at least one hyperparameter, but got {}.")
        for name, schedule in schedules.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"schedule names must be Python identifiers, but got {name!r}.")
            if not isinstance(schedule, (Schedule, Family)):
                raise TypeError(
                    f"schedule `{name}` must be a Schedule or a Family, but got "
                    f"{type(schedule).__name__}."
                )
        self._schedules = dict(schedules)
        self._specs = {n: s.param_specs() for n, s in self._schedules.items()}

    def __getitem__(self, name: str) -> Entry:
        return self._schedules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._schedules)

    def __len__(self) -> int:
        return len(self._schedules)

    def __repr__(self) -> str:
        return f"ScheduleSpace({self._schedules!r})"

    @property
    def n_params(self) -> int:
        """Total number of trial parameters (window values and family parameters)."""
        return sum(len(v) for v in self._specs.values())

    def has_families(self) -> bool:
        """Whether any entry is a :class:`Family`."""
        return any(isinstance(s, Family) for s in self._schedules.values())

    def groups(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Per-layer-group entries: ``{name: (hyper, parameter patterns)}``."""
        out = {}
        for name, s in self._schedules.items():
            if s.params is not None or (s.hyper is not None and s.hyper != name):
                patterns = s.params if isinstance(s.params, tuple) else ("*",)
                out[name] = (s.hyper or name, patterns)
        return out

    def layered(self) -> bool:
        """Whether an optimiser hyperparameter is split over layer groups (two or more entries
        set it; class weights do not count)."""
        hypers = [h for h, _ in self.groups().values() if h != "class_weight"]
        return any(hypers.count(h) >= 2 for h in hypers)

    def hypers(self) -> dict[str, str]:
        """The optimiser hyperparameter each entry sets: ``{name: hyper}``."""
        return {name: s.hyper or name for name, s in self._schedules.items()}

    def param_names(self) -> list[str]:
        """Trial parameter names in entry order."""
        return [f"{n}_{spec[0]}" for n, specs in self._specs.items() for spec in specs]

    def distributions(self) -> dict[str, tuple[float, float, bool]]:
        """``{param: (low, high, log)}`` for ``trial.suggest_float``."""
        return {
            f"{n}_{sfx}": (lo, hi, log)
            for n, specs in self._specs.items()
            for sfx, lo, hi, log, _ in specs
        }

    def initial_params(self) -> dict[str, float]:
        """Every trial parameter at its start."""
        return {f"{n}_{s[0]}": s[4] for n, specs in self._specs.items() for s in specs}

    def owner(self, param: str) -> tuple[str, str] | None:
        """``(entry name, local param name)`` of a trial parameter (``None``: not in the space)."""
        for n, specs in self._specs.items():
            for spec in specs:
                if f"{n}_{spec[0]}" == param:
                    return n, spec[0]
        return None

    def parse(self, param: str) -> ParamRef | None:
        """What trial parameter ``param`` stands for (``None``: not in the space).

        Example:
            >>> space = default_family_space("sgd", windows=2)
            >>> space.parse("lr_delta_1")
            ParamRef(entry='lr', local='delta_1', kind='correction', window=1)
            >>> space.parse("momentum_value").kind
            'family'
        """
        owner = self.owner(param)
        if owner is None:
            return None
        entry, local = owner
        schedule = self._schedules[entry]
        if isinstance(schedule, Schedule):
            return ParamRef(entry, local, "window", int(local))
        if isinstance(schedule, Refiner) and local.startswith(DELTA):
            return ParamRef(entry, local, "correction", int(local[len(DELTA) :]))
        return ParamRef(entry, local, "family", None)

    def initial_values(self) -> dict[str, list[float]]:
        """Every schedule at its start, as window values."""
        return {name: s.initial_values() for name, s in self._schedules.items()}

    def validate(self, schedules: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
        """Check that ``schedules`` has exactly this space's names and valid values."""
        unknown = sorted(set(schedules) - set(self._schedules))
        missing = sorted(set(self._schedules) - set(schedules))
        if unknown or missing:
            raise ValueError(
                f"schedules must name exactly {sorted(self._schedules)}, but got "
                f"{sorted(schedules)} (unknown: {unknown}, missing: {missing})."
            )
        return {n: self._schedules[n].validate_values(n, schedules[n]) for n in self._schedules}

    def to_params(self, schedules: Mapping[str, Sequence[float]]) -> dict[str, float]:
        """Window schedules as trial parameters ``{"lr_0": ..., ...}`` (window entries only:
        a family's parameters are not determined by its window values)."""
        families = [n for n, s in self._schedules.items() if isinstance(s, Family)]
        if families:
            raise ValueError(
                f"window values do not determine family parameters ({families}); pass the "
                "family's parameters as trial params instead."
            )
        checked = self.validate(schedules)
        return {f"{n}_{k}": v for n, vals in checked.items() for k, v in enumerate(vals)}

    def _local(self, params: Mapping[str, float]) -> dict[str, list[float]]:
        missing = [p for p in self.param_names() if p not in params]
        if missing:
            raise ValueError(f"trial parameters lack {missing}; got {sorted(params)}.")
        return {
            n: [float(params[f"{n}_{s[0]}"]) for s in specs] for n, specs in self._specs.items()
        }

    def from_params(self, params: Mapping[str, float]) -> dict[str, list[float]]:
        """Trial parameters back to window schedules (families evaluated at the window
        midpoints)."""
        return {n: self._schedules[n].values_of(xs) for n, xs in self._local(params).items()}

    def chain(
        self, params: Mapping[str, float], window_hypergradient: Mapping[str, Sequence[float]]
    ) -> dict[str, float]:
        """The hypergradient with respect to every trial parameter, from an episode's
        hypergradient with respect to the window values (``{name: [dL/d value_k]}``)."""
        out: dict[str, float] = {}
        for n, xs in self._local(params).items():
            entry = self._schedules[n]
            g = window_hypergradient[n]
            if len(g) != entry.windows:
                raise ValueError(
                    f"the hypergradient of `{n}` must have {entry.windows} values, "
                    f"but got {len(g)}."
                )
            grads = entry.pullback(xs, g)
            out.update({f"{n}_{s[0]}": v for s, v in zip(self._specs[n], grads, strict=True)})
        return out
