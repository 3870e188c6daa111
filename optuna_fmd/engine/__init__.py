"""The engine: exact hypergradients of window schedules through a functional training loop.

Pure torch.func; imports neither Optuna nor the tasks.
"""

from ._auto import Choice, choose_engine
from ._compiled import CompiledResult, CompileOptions, run_compiled
from ._forward import EngineResult, run_forward, run_plain
from ._functional import FunctionalModel, unsupported_reason
from ._optim import SGD, Adam, InnerOptimizer, make_optimizer
from ._problem import HyperTable, InnerProblem, Partition, make_partitions
from ._reference import run_bptt, run_fds
from ._reverse import run_reverse
from ._schedule import Schedule, ScheduleSpace, window_index, window_start
from ._snapshot import Snapshot, Snapshots

__all__ = [
    "SGD",
    "Adam",
    "Choice",
    "CompileOptions",
    "CompiledResult",
    "EngineResult",
    "FunctionalModel",
    "HyperTable",
    "InnerOptimizer",
    "InnerProblem",
    "Partition",
    "Schedule",
    "ScheduleSpace",
    "Snapshot",
    "Snapshots",
    "choose_engine",
    "make_optimizer",
    "make_partitions",
    "run_bptt",
    "run_compiled",
    "run_fds",
    "run_forward",
    "run_plain",
    "run_reverse",
    "unsupported_reason",
    "window_index",
    "window_start",
]
