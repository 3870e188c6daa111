"""FMDSampler on scikit-learn's digits: a cosine lr with corrections and two constants, two
seeds per outer iterate, exact hypergradients through each 200-step training run."""

from __future__ import annotations

from types import ModuleType

import optuna


def main(fmd: ModuleType, trials: int = 24, steps: int = 200) -> float:
    space = fmd.space.default_family_space("sgd", windows=10)
    task = fmd.tasks.Digits(steps=steps, batch_size=64)
    sampler = fmd.FMDSampler(space, seed=0, population=2)
    study = optuna.create_study(sampler=sampler)
    study.optimize(fmd.HypergradientObjective(task, space, seed=0), n_trials=trials)
    value, params, numbers = sampler.best_iterate(study)
    print(f"best: trials {numbers}, mean validation loss {value:.4f}, params {params}")
    return float(value)


if __name__ == "__main__":
    import optunahub

    main(optunahub.load_module(package="samplers/fmd"))
