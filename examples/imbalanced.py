"""Class-weight schedules on a long-tailed training set, tuned by exact hypergradients.

The training split keeps class c's examples in the ratio ``imbalance ** (-c / (C - 1))`` (the
profile of CIFAR-10-LT); validation and test stay balanced, and the objective is the balanced
validation loss. The space holds a cosine lr, momentum and weight decay, and one deferred
re-weighting step per class (weight 1 early, then towards the class's effective-number weight:
its ``switch`` and ``strength``). One reverse-mode hypergradient gives every class's pull at the
cost of about two plain episodes, however many classes there are. Fashion-MNIST when its data
is on disk (``apt-get install dataset-fashion-mnist``), otherwise scikit-learn's Digits.

    python examples/imbalanced.py                     # ~10 minutes on 2 CPU cores
    OPTUNA_FMD_TINY=1 python examples/imbalanced.py   # a few seconds (smoke test)
    optuna-dashboard sqlite:///fmd.db                 # then look at the study
"""

from __future__ import annotations

import os

import optuna

import optuna_fmd as fmd
from optuna_fmd.space import imbalanced_space

TINY = os.environ.get("OPTUNA_FMD_TINY") == "1"
STORAGE = os.environ.get("OPTUNA_FMD_STORAGE", "sqlite:///fmd.db")


def make_task() -> fmd.tasks.Task:
    if TINY:
        return fmd.tasks.Digits(model="mlp", steps=30, batch_size=32, imbalance=10.0)
    try:
        task = fmd.tasks.FashionMNIST(model="mlp", steps=800, batch_size=128, imbalance=100.0)
        task.data()  # raises when the dataset is not on disk (nothing is downloaded)
        return task
    except Exception as err:  # no Fashion-MNIST here: fall back to the bundled Digits
        print(f"Fashion-MNIST unavailable ({type(err).__name__}); using Digits")
        return fmd.tasks.Digits(model="mlp", steps=200, batch_size=32, imbalance=10.0)


def main() -> None:
    task = make_task()
    counts = task.class_counts(0)
    print("training examples per class:", counts)
    space = imbalanced_space(counts, windows=2 if TINY else 10)
    study = optuna.create_study(
        storage=STORAGE,
        study_name=f"imbalanced-{type(task).__name__.lower()}",
        sampler=fmd.FMDSampler(space, seed=0),
        load_if_exists=True,
    )
    study.optimize(
        fmd.HypergradientObjective(task, space),
        n_trials=3 if TINY else 24,
        show_progress_bar=not TINY,
    )
    best = study.best_trial
    print(f"best balanced validation loss {best.value:.4f} (trial {best.number})")
    start = fmd.evaluate_schedule(task, space.initial_params(), seeds=(0,), space=space)
    tuned = fmd.evaluate_schedule(task, best.params, seeds=(0,), space=space)
    for name, res in (("start", start), ("tuned", tuned)):
        per_class = " ".join(f"{a:.2f}" for a in res.test_class_accuracy or ())
        print(f"{name}: balanced test accuracy {res.test_accuracy:.3f}; per class {per_class}")
    print(f"view it: optuna-dashboard {STORAGE}")


if __name__ == "__main__":
    main()
