"""FMDSampler on scikit-learn's digits: a cosine lr with corrections and two constants, two
seeds per outer iterate, exact hypergradients through each 200-step training run.

Run it from a checkout of optuna-fmd (``pip install`` it first), offline: this folder is loaded as
the registry loads it, with ``optunahub.load_local_module``::

    python hub/samplers/fmd/example.py            # 24 trials of 200 steps
    python hub/samplers/fmd/example.py --trials 6 --steps 20
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import optuna


def main(fmd: ModuleType, trials: int = 24, steps: int = 200) -> float:
    space = fmd.space.default_family_space("sgd", windows=10)
    task = fmd.tasks.Digits(steps=steps, batch_size=64)
    sampler = fmd.FMDSampler(space, seed=0, population=2)
    study = optuna.create_study(sampler=sampler)
    study.optimize(fmd.HypergradientObjective(task, space, seed=0), n_trials=trials)
    best = sampler.best_iterate(study)
    assert best is not None
    print(f"best: trials {list(best.trials)}, mean validation loss {best.value:.4f}")
    print(f"params {dict(best.params)}")
    return float(best.value)


if __name__ == "__main__":
    import optunahub

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="trials (default: 24)")
    parser.add_argument("--steps", type=int, default=200, help="steps per run (default: 200)")
    args = parser.parse_args()
    # The registry's root is two folders up (hub/ here, package/ in optunahub-registry), so the
    # module loads from disk; `optunahub.load_module(package="samplers/fmd")` fetches it instead.
    root = Path(__file__).resolve().parents[2]
    fmd = optunahub.load_local_module(package="samplers/fmd", registry_root=str(root))
    main(fmd, trials=args.trials, steps=args.steps)
