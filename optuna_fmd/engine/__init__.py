"""The engine: exact hypergradients of window schedules through a functional training loop.

Pure torch.func; imports neither Optuna nor the tasks.
"""

from ._auto import ENGINES, PLAIN, Choice, choose_engine
from ._common import EngineResult, check_discount, state_nbytes
from ._compiled import CompiledResult, CompileOptions, run_compiled
from ._dispatch import run_hypergradient
from ._forward import run_forward, run_plain, tangent_step
from ._functional import FunctionalModel, unsupported_reason
from ._loss import LOSS_HYPERS, LossSide, make_loss_side, matched_classes, split_groups
from ._optim import SGD, Adam, InnerOptimizer
from ._problem import HyperTable, InnerProblem, Partition, make_partitions
from ._reference import fds_step, run_bptt, run_fds
from ._registry import OPTIMIZERS, make_optimizer
from ._reverse import CheckpointPlan, plan_checkpoints, run_reverse
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
    "CheckpointPlan",
    "Choice",
    "CompileOptions",
    "CompiledResult",
    "EngineResult",
    "FunctionalModel",
    "HyperTable",
    "InnerOptimizer",
    "InnerProblem",
    "LossSide",
    "Partition",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "Snapshot",
    "Snapshots",
    "check_discount",
    "choose_engine",
    "fds_step",
    "make_loss_side",
    "make_optimizer",
    "make_partitions",
    "matched_classes",
    "plan_checkpoints",
    "run_bptt",
    "run_compiled",
    "run_fds",
    "run_forward",
    "run_hypergradient",
    "run_plain",
    "run_reverse",
    "split_groups",
    "state_nbytes",
    "tangent_step",
    "unsupported_reason",
    "window_index",
    "window_start",
]
