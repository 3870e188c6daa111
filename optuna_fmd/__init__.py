"""optuna-fmd: exact hypergradients of hyperparameter schedules through whole training runs.

Forward-mode differentiation with hyperparameter sharing (FDS; Micaelli & Storkey, NeurIPS 2021),
made automatic with torch.func, as an Optuna sampler.
"""

import warnings as _warnings

from . import baselines, tasks, visualization
from .engine import Schedule, ScheduleSpace
from .episode import EpisodeResult, run_episode
from .evaluation import EvaluationResult, evaluate_schedule
from .objective import HypergradientObjective
from .sampler import FMDSampler

# torch's first jvp warns about torch.jit.script internals; it is not actionable for users.
_warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

__version__ = "0.1.0"

__all__ = [
    "EpisodeResult",
    "EvaluationResult",
    "FMDSampler",
    "HypergradientObjective",
    "Schedule",
    "ScheduleSpace",
    "baselines",
    "evaluate_schedule",
    "run_episode",
    "tasks",
    "visualization",
]
