"""optuna-fmd: exact hypergradients of hyperparameter schedules through whole training runs.

Forward-mode differentiation with hyperparameter sharing (FDS; Micaelli & Storkey, NeurIPS 2021),
made automatic with torch.func, as an Optuna sampler.

The public names are imported on first use, so that ``import optuna_fmd.sampler`` or
``optuna_fmd.space`` (the parts that need no torch) does not import torch.
"""

from __future__ import annotations

import importlib
import warnings as _warnings
from typing import TYPE_CHECKING, Any

# torch's first jvp warns about torch.jit.script internals; it is not actionable for users.
_warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

__version__ = "0.1.0"

#: Public name -> the module that defines it (a module itself where the name is the module's).
_WHERE = {
    "EngineOptions": "engine",
    "EpisodeResult": "episode",
    "EvaluationResult": "evaluation",
    "FMDSampler": "sampler",
    "ForwardOptions": "engine",
    "HypergradientObjective": "objective",
    "PlainOptions": "engine",
    "ReverseOptions": "engine",
    "Schedule": "space",
    "ScheduleSpace": "space",
    "SnapshotOptions": "episode",
    "evaluate_schedule": "evaluation",
    "run_episode": "episode",
    "baselines": None,
    "outer": None,
    "space": None,
    "tasks": None,
    "visualization": None,
}

__all__ = [
    "EngineOptions",
    "EpisodeResult",
    "EvaluationResult",
    "FMDSampler",
    "ForwardOptions",
    "HypergradientObjective",
    "PlainOptions",
    "ReverseOptions",
    "Schedule",
    "ScheduleSpace",
    "SnapshotOptions",
    "baselines",
    "evaluate_schedule",
    "outer",
    "run_episode",
    "space",
    "tasks",
    "visualization",
]

if TYPE_CHECKING:
    from . import baselines, outer, space, tasks, visualization
    from .engine import EngineOptions, ForwardOptions, PlainOptions, ReverseOptions
    from .episode import EpisodeResult, SnapshotOptions, run_episode
    from .evaluation import EvaluationResult, evaluate_schedule
    from .objective import HypergradientObjective
    from .sampler import FMDSampler
    from .space import Schedule, ScheduleSpace


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'optuna_fmd' has no attribute {name!r}")
    module = _WHERE[name]
    value: Any = importlib.import_module(f".{module or name}", __name__)
    if module is not None:
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
