"""FMD against black-box search on equal terms (``optuna-fmd compare``; each protocol is a
preset of :func:`preset`).

Every method gets the same start where it takes one, the same task and seeds, and the same
budget in plain-episode equivalents (PEE): a trial's cost is its CPU time over the CPU time of a
plain episode of the same task measured in the same process around the same time, and the
methods of one (task, seed) run in lock-step, so machine load bends no method's budget. The
summary holds each method's best validation loss and retrained test accuracy per seed, one-sided
Wilcoxon tests of the primary FMD method against each baseline with Holm's correction, effect
sizes with 95% confidence intervals and the time FMD needs to reach each baseline's final best.

Micaelli & Storkey, "Gradient-based Hyperparameter Optimization Over Long Horizons" (NeurIPS
2021).

Example:
    >>> from optuna_fmd import compare
    >>> cfg = compare.CompareConfig(**compare.preset("quick"))
    >>> cfg.tasks, cfg.budgets
    (('digits-sgd', 'digits-adamw'), {'short': 10.0, 'long': 30.0})
"""

from ._budget import CostUnit, LockStep
from ._cli import add_arguments, load_results, write_outputs
from ._cli import main as cli_main
from ._config import TASKS, CompareConfig, TaskSpec, preset
from ._methods import METHODS, FamilyObjective, Method
from ._provenance import provenance
from ._report import format_markdown, plot_results, summarize
from ._runner import read_units, run_compare
from ._unit import run_unit

__all__ = [
    "METHODS",
    "TASKS",
    "CompareConfig",
    "CostUnit",
    "FamilyObjective",
    "LockStep",
    "Method",
    "TaskSpec",
    "add_arguments",
    "cli_main",
    "format_markdown",
    "load_results",
    "plot_results",
    "preset",
    "provenance",
    "read_units",
    "run_compare",
    "run_unit",
    "summarize",
    "write_outputs",
]
