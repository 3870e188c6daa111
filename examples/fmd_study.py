"""An FMD study: refine lr / momentum / weight-decay schedules by exact hypergradient steps.

FDS outer loop (Micaelli & Storkey, NeurIPS 2021) as an Optuna study: every trial trains one
episode and stores dL_val/d(schedule) in ``user_attrs["hypergradient"]``; FMDSampler steps the
schedules against it. Fashion-MNIST when its data is on disk (``apt-get install
dataset-fashion-mnist``), otherwise scikit-learn's Digits.

    python examples/fmd_study.py                     # ~10-20 minutes on 2 CPU cores
    OPTUNA_FMD_TINY=1 python examples/fmd_study.py   # a few seconds (smoke test)
    optuna-dashboard sqlite:///fmd.db                # then look at the study
"""

from __future__ import annotations

import os

import optuna

import optuna_fmd as fmd

TINY = os.environ.get("OPTUNA_FMD_TINY") == "1"
STORAGE = os.environ.get("OPTUNA_FMD_STORAGE", "sqlite:///fmd.db")


def make_task() -> fmd.tasks.Task:
    if TINY:
        return fmd.tasks.Digits(model="mlp", steps=30, batch_size=32)
    try:
        task = fmd.tasks.FashionMNIST(model="mlp", steps=1000, batch_size=128)
        task.data()  # raises when the dataset is not on disk (nothing is downloaded)
        return task
    except Exception as err:  # no Fashion-MNIST here: fall back to the bundled Digits
        print(f"Fashion-MNIST unavailable ({type(err).__name__}); using Digits")
        return fmd.tasks.Digits(model="mlp", steps=400, batch_size=64)


def main() -> None:
    windows = 2 if TINY else 5
    space = fmd.ScheduleSpace(
        {
            "lr": fmd.Schedule(windows=windows, low=1e-3, high=1.0, log=True, init=0.05),
            "momentum": fmd.Schedule(windows=windows, low=0.0, high=0.99, init=0.9),
            "weight_decay": fmd.Schedule(windows=windows, low=0.0, high=1e-2, init=5e-4),
        }
    )
    task = make_task()
    study = optuna.create_study(
        storage=STORAGE,
        study_name=f"fmd-{type(task).__name__.lower()}",
        sampler=fmd.FMDSampler(space, seed=0),
        load_if_exists=True,
    )
    study.optimize(
        fmd.HypergradientObjective(task, space),
        n_trials=3 if TINY else 15,
        show_progress_bar=not TINY,
    )
    best = study.best_trial
    print(
        f"best validation loss {best.value:.4f} (trial {best.number}, "
        f"accuracy {best.user_attrs['val_accuracy']:.3f})"
    )
    for name, values in space.from_params(best.params).items():
        print(f"  {name}: " + ", ".join(f"{v:.4g}" for v in values))
    print(f"view it: optuna-dashboard {STORAGE}")


if __name__ == "__main__":
    main()
