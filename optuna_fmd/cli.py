"""The ``optuna-fmd`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(_: argparse.Namespace) -> int:
    import optuna_fmd as fmd

    task = fmd.tasks.Digits(steps=300, batch_size=64)
    schedules = {"lr": [0.05] * 3, "momentum": [0.9] * 3, "weight_decay": [5e-4] * 3}
    print(f"Digits, MLP, {task.steps} steps, schedules {schedules}")
    res = fmd.run_episode(task, schedules, seed=0, progress=True)
    print(f"validation loss {res.val_loss:.4f}, accuracy {res.val_accuracy:.3f}, "
          f"{res.seconds:.1f} s")
    assert res.hypergradient is not None
    for name, values in res.hypergradient.items():
        print(f"  dL/d{name}: " + ", ".join(f"{v:+.4g}" for v in values))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="optuna-fmd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run one real episode and print its hypergradient")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
