"""A budget that load cannot bend: costs in plain-episode equivalents, methods in lock-step.

A trial's cost is its clock time divided by the time of a plain episode of the same task
measured in the same process around the same time (:class:`CostUnit`), so a busy machine makes
the trial and its yardstick slower alike. The methods of one (task, seed) take turns
(:class:`LockStep`): the one that has used the least budget runs next, so every method sees the
same load at the same point of its budget.

Example:
    >>> unit = CostUnit(window=3)
    >>> unit.observe(2.0); unit.observe(4.0); unit.observe(3.0)
    >>> unit.value, unit.to_pee(6.0)
    (3.0, 2.0)
    >>> lock = LockStep(["a", "b"], budget=2.0)
    >>> lock.next()
    'a'
    >>> lock.charge("a", 1.5)
    >>> lock.next(), lock.spans("a")
    ('b', [(0.0, 1.5, True)])
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence

from .._checks import positive, positive_int

__all__ = ["CostUnit", "LockStep"]


class CostUnit:
    """The plain-episode yardstick: the median of the last ``window`` plain-episode times.

    While the run goes on, :attr:`value` (a short window, so it follows a change of load
    within a reading or two) decides whose turn it is and what may start; the final charge of
    each trial uses :meth:`around`, the readings on both sides of it. The median keeps a single
    outlier out.

    Args:
        window: How many recent plain episodes the median is over.
    """

    def __init__(self, window: int = 3) -> None:
        self._recent: deque[float] = deque(maxlen=positive_int("window", window))
        self.observed: list[float] = []

    def observe(self, seconds: float) -> None:
        """One more plain episode of the task took ``seconds``."""
        positive("seconds", seconds)
        self._recent.append(float(seconds))
        self.observed.append(float(seconds))

    @property
    def value(self) -> float:
        """Seconds of one plain episode now."""
        if not self._recent:
            raise RuntimeError("no plain episode has been observed yet.")
        return float(statistics.median(self._recent))

    def to_pee(self, seconds: float) -> float:
        """``seconds`` in plain-episode equivalents (at the current reading)."""
        return float(seconds) / self.value

    def around(self, seq: int, k: int = 2) -> float:
        """The yardstick around an event that happened after ``seq`` readings: the median of the
        ``k`` readings before it and the ``k`` after it (fewer at the ends of the run).

        Charging each trial at the readings on both sides of it, once the run is over, takes a
        change of load into account wherever in the run it happened.
        """
        near = self.observed[max(0, seq - k) : seq + k]
        if not near:
            return self.value
        return float(statistics.median(near))

    def spread(self) -> dict[str, float]:
        """Min, median and max of every observed plain episode, and max / min."""
        if not self.observed:
            return {}
        lo, hi = min(self.observed), max(self.observed)
        return {
            "n": len(self.observed),
            "min": lo,
            "median": float(statistics.median(self.observed)),
            "max": hi,
            "max_over_min": hi / lo,
        }


class LockStep:
    """Methods sharing one budget each, run in turns.

    :meth:`next` names the method with the least budget used (ties: the order given) among
    those that may start another trial: a method whose used budget plus its last trial's cost
    would pass ``budget`` is done (the trial that would overrun is not started). Costs are
    re-read from the yardstick at every turn, so a trial charged high at a step in the load is
    charged right once the readings after it arrive; a trial that ends past the budget anyway
    is not counted (:meth:`spans` says so).

    Args:
        methods: Method names, in tie-break order.
        budget: Budget per method in plain-episode equivalents (or in the unit of the costs
            given to :meth:`charge` without a yardstick).
        unit: The yardstick; ``None``: :meth:`charge` receives costs in budget units.
    """

    def __init__(
        self, methods: Sequence[str], budget: float, unit: CostUnit | None = None
    ) -> None:
        if not methods or len(set(methods)) != len(methods):
            raise ValueError(f"`methods` must be distinct and non-empty, but got {methods!r}.")
        positive("budget", budget)
        self.order = list(methods)
        self.budget = float(budget)
        self.unit = unit
        self._trials: dict[str, list[tuple[float, int]]] = {m: [] for m in self.order}
        self.done: dict[str, str] = {}

    def costs(self, method: str) -> list[float]:
        """Each trial's cost in budget units, from the readings available now."""
        if self.unit is None:
            return [s for s, _ in self._trials[method]]
        return [s / self.unit.around(seq) for s, seq in self._trials[method]]

    def used(self, method: str) -> float:
        """Budget used by ``method`` so far."""
        return math.fsum(self.costs(method))

    def spans(self, method: str) -> list[tuple[float, float, bool]]:
        """``(start, end, counted)`` of each trial of ``method`` on its budget."""
        out, t = [], 0.0
        for c in self.costs(method):
            out.append((t, t + c, t + c <= self.budget + 1e-9))
            t += c
        return out

    def next(self) -> str | None:
        """The method to run next, or ``None`` when every method is done."""
        used = {m: self.used(m) for m in self.order if m not in self.done}
        for m in sorted(used, key=lambda m: (used[m], self.order.index(m))):
            costs = self.costs(m)
            if used[m] + (costs[-1] if costs else 0.0) > self.budget + 1e-9:
                self.done[m] = "budget"
                continue
            return m
        return None

    def charge(self, method: str, seconds: float, seq: int | None = None) -> None:
        """Record a finished trial: its ``seconds`` (with a yardstick: on the yardstick's clock,
        ``seq`` = how many readings were taken before it) or its cost (without one)."""
        positive("seconds", seconds, allow_zero=True)
        if self.unit is not None and seq is None:
            raise ValueError("with a yardstick, `seq` (readings before the trial) is needed.")
        self._trials[method].append((float(seconds), 0 if seq is None else int(seq)))

    def finish(self, method: str, reason: str) -> None:
        """``method`` stops before its budget is spent (converged, grid done)."""
        self.done.setdefault(method, reason)
