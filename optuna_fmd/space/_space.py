"""The search space of a study: :class:`ScheduleSpace`, a named set of window schedules and
families, and the one place that converts trial params to schedules and window hypergradients
to param hypergradients.

Import it from :mod:`optuna_fmd.space`, which re-exports it beside its entries (``_windows``;
``_family`` and the families of ``_families``, ``_refiner`` and ``_loss_families``), the params'
names (``_names``) and the default spaces (``_defaults``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from ._family import Family
from ._names import ParamRef
from ._refiner import DELTA, Refiner
from ._windows import Schedule

__all__ = ["ScheduleSpace"]

#: An entry of a space: free window values or a family.
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
