"""Tune a cosine with TPE, then refine its best schedule with FMD on the mean of 4 seeds.

TPE searches the cosine family's few parameters (peak lr, warm-up and final fractions,
momentum, weight decay) with plain episodes; FMD then starts from TPE's best
(``FMDSampler(start=...)``) in the same family times 10 per-window lr corrections, and
compares its iterates on the mean validation loss of 4 seeds. On the project's comparison this
refinement lowered the validation loss on unseen seeds on 9 of 10 seeds with AdamW
(benchmarks/README.md, "What is left above the tuned cosine").

    python examples/refine_tpe.py
    OPTUNA_FMD_TINY=1 python examples/refine_tpe.py   # a few seconds (smoke test)
"""

from __future__ import annotations

import os
import time

import optuna

import optuna_fmd as fmd
from optuna_fmd.space import default_family_space

TINY = os.environ.get("OPTUNA_FMD_TINY") == "1"
STORAGE = os.environ.get("OPTUNA_FMD_STORAGE", "sqlite:///fmd.db")


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    windows = 2 if TINY else 10
    task = fmd.tasks.Digits(model="mlp", optimizer="adamw", steps=30 if TINY else 300)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    family = default_family_space("adamw", windows, refine=False)
    tpe = optuna.create_study(
        storage=STORAGE,
        study_name=f"digits-cosine-tpe-{stamp}",
        sampler=optuna.samplers.TPESampler(seed=0, multivariate=True),
    )
    tpe.optimize(
        fmd.HypergradientObjective(task, family, hypergradient=False),
        n_trials=4 if TINY else 40,
    )
    print(f"tpe: best validation loss {tpe.best_value:.4f} (seed 0), {tpe.best_params}")

    refined = default_family_space("adamw", windows)  # the same family x lr corrections
    sampler = fmd.FMDSampler(refined, population=4, start=tpe.best_params)
    study = optuna.create_study(
        storage=STORAGE, study_name=f"digits-cosine-refined-{stamp}", sampler=sampler
    )
    study.optimize(fmd.HypergradientObjective(task, refined), n_trials=8 if TINY else 80)
    best = sampler.best_iterate(study)
    assert best is not None
    first = [t.value for t in study.trials[:4] if t.value is not None]
    print(
        f"fmd: best mean validation loss {best.value:.4f} over seeds 0-3 (trials "
        f"{list(best.trials)}), from {sum(first) / len(first):.4f} at TPE's best"
    )
    lr = refined.from_params(best.params)["lr"]
    print("refined lr schedule: " + " ".join(f"{v:.3g}" for v in lr))
    print(f"view both: optuna-dashboard {STORAGE}")


if __name__ == "__main__":
    main()
