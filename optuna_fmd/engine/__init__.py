"""The engine: exact hypergradients of window schedules through a functional training loop.

Pure torch.func; imports neither Optuna nor the tasks.
"""

from .._imbalanced import matched_classes
from ._auto import PLAIN, Choice, choose_engine
from ._common import EngineResult, check_discount
from ._compiled import CompileOptions
from ._dispatch import run_hypergradient
from ._forward import run_forward, run_plain
from ._functional import FunctionalModel, unsupported_reason
from ._loss import LOSS_HYPERS, LossSide, make_loss_side, split_groups
from ._optim import SGD, Adam, InnerOptimizer
from ._options import ENGINES, EngineOptions, ForwardOptions, PlainOptions, ReverseOptions
from ._problem import HyperTable, InnerProblem, make_partitions
from ._reference import run_bptt, run_fds
from ._registry import OPTIMIZERS, make_optimizer
from ._reverse import plan_checkpoints, run_reverse
from ._schedule import window_index, window_start
from ._schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from ._snapshot import Snapshot, Snapshots

__all__ = [
    "ENGINES",
    "LOSS_HYPERS",
    "OPTIMIZERS",
    "PLAIN",
    "SGD",
    "Adam",
    "Choice",
    "CompileOptions",
    "EngineOptions",
    "EngineResult",
    "ForwardOptions",
    "FunctionalModel",
    "HyperTable",
    "InnerOptimizer",
    "InnerProblem",
    "LossSide",
    "PlainOptions",
    "ReverseOptions",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "Snapshot",
    "Snapshots",
    "check_discount",
    "choose_engine",
    "make_loss_side",
    "make_optimizer",
    "make_partitions",
    "matched_classes",
    "plan_checkpoints",
    "run_bptt",
    "run_fds",
    "run_forward",
    "run_hypergradient",
    "run_plain",
    "run_reverse",
    "split_groups",
    "unsupported_reason",
    "window_index",
    "window_start",
]
