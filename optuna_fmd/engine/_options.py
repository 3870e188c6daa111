"""An episode's engine options, grouped by engine (:class:`EngineOptions`), each checked once,
where it is made: the engine and its options enter here, and the engine trusts them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ._common import check_discount
from ._compiled import CompileOptions

__all__ = ["ENGINES", "EngineOptions", "ForwardOptions", "PlainOptions", "ReverseOptions"]

#: Engines an episode can run: the exact two, ``"auto"`` between them, and the references.
ENGINES = ("auto", "forward", "reverse", "bptt", "fds")


@dataclass(frozen=True)
class ForwardOptions:
    """Forward mode's options (:func:`~optuna_fmd.engine.run_forward`): the tangent method,
    at most ``chunk_size`` tangent columns at once, and whether it may run one compiled graph
    (``None``: on CUDA without snapshots)."""

    method: str = "auto"
    chunk_size: int | None = None
    compile: bool | CompileOptions | None = None

    def __post_init__(self) -> None:
        size = self.chunk_size
        if size is not None and (isinstance(size, bool) or size < 1):
            raise ValueError(f"`chunk_size` must be a positive int or None, but got {size!r}.")


@dataclass(frozen=True)
class ReverseOptions:
    """Reverse mode's options (:func:`~optuna_fmd.engine.run_reverse`): a checkpoint every
    ``checkpoint_every`` steps, or checkpoints within ``memory_budget`` bytes (neither: every
    state when they fit)."""

    checkpoint_every: int | None = None
    memory_budget: int | float | None = None


@dataclass(frozen=True)
class PlainOptions:
    """Plain training's options (:func:`~optuna_fmd.engine.run_plain`): hand
    ``(steps_done, val_loss)`` to ``on_validation`` every ``validate_every`` steps."""

    validate_every: int | None = None
    on_validation: Callable[[int, float], None] | None = None

    def __post_init__(self) -> None:
        every = self.validate_every
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int) or every < 1
        ):
            raise ValueError(
                f"`validate_every` must be a positive int or None, but got {every!r}."
            )
        if (every is None) != (self.on_validation is None):
            raise ValueError(
                "`validate_every` and `on_validation` must be given together, but got "
                f"validate_every={every!r} and on_validation={self.on_validation!r}."
            )


@dataclass(frozen=True)
class EngineOptions:
    """How an episode runs: the engine (one of :data:`ENGINES`; ``"auto"``: the fastest by the
    cost model of :func:`~optuna_fmd.engine.choose_engine`), each engine's own options, and the
    discount of the tangents (1: exact; forward, reverse and BPTT)."""

    engine: str = "auto"
    forward: ForwardOptions = field(default_factory=ForwardOptions)
    reverse: ReverseOptions = field(default_factory=ReverseOptions)
    plain: PlainOptions = field(default_factory=PlainOptions)
    discount: float = 1.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"`engine` must be one of {ENGINES}, but got {self.engine!r}.")
        object.__setattr__(self, "discount", check_discount(self.discount))
