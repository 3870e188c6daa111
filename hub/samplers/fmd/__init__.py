"""OptunaHub entry of optuna-fmd: the sampler and what a study with it needs."""

from optuna_fmd import FMDSampler, HypergradientObjective, tasks
from optuna_fmd.space import default_family_space, per_layer_space

__all__ = [
    "FMDSampler",
    "HypergradientObjective",
    "default_family_space",
    "per_layer_space",
    "tasks",
]
