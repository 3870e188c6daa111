"""Reverse mode's step: ordinary autograd against ``torch.func.grad`` inside the step.

``run_reverse`` runs the plain step (``InnerProblem.step_plain``) in its forward sweep and
recomputation and differentiates ``InnerProblem.step_graph`` (the gradient taken with
``create_graph=True``) in its vjp. The earlier code ran ``InnerProblem.step`` (``torch.func.grad``)
in all three places; it is restored here for the comparison by pointing those two methods at
``step``. Whole episodes of plain training, the old and the new reverse mode, interleaved in one
process, median of ``--repeats``; the two hypergradients must be bitwise equal. Also: every state
kept (``checkpoint_every=1``, no recomputation).

    python benchmarks/reverse_vjp.py    # writes benchmarks/results/reverse_vjp_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import optuna_fmd as fmd
from optuna_fmd.engine import InnerProblem, run_plain, run_reverse
from optuna_fmd.episode import build_episode

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--windows", type=int, default=10, help="per hyper (N = 3 x windows)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "reverse_vjp_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = fmd.tasks.Synthetic(model="mlp", steps=args.steps, batch_size=128)
    k = args.windows
    problem, table, state0 = build_episode(
        task, {"lr": [0.05] * k, "momentum": [0.9] * k, "weight_decay": [5e-4] * k}
    )
    new_plain, new_graph = InnerProblem.step_plain, InnerProblem.step_graph

    def old_graph(self, state, h, t, batch):  # type: ignore[no-untyped-def]
        return self.step(state, h, t, batch)[0]

    def episode(kind: str) -> tuple[float, torch.Tensor | None]:
        if kind == "old":
            InnerProblem.step_plain, InnerProblem.step_graph = InnerProblem.step, old_graph  # type: ignore[method-assign,assignment]
        try:
            start = time.perf_counter()
            if kind == "plain":
                res = run_plain(problem, table, state0)
            else:
                res = run_reverse(
                    problem, table, state0, checkpoint_every=1 if kind == "every" else None
                )
            return time.perf_counter() - start, res.hypergradient
        finally:
            InnerProblem.step_plain, InnerProblem.step_graph = new_plain, new_graph  # type: ignore[method-assign]

    kinds = ("plain", "old", "new", "every")
    episode("new")  # warm-up
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    grads: dict[str, torch.Tensor | None] = {}
    for _ in range(args.repeats):
        for kind in kinds:
            seconds, grads[kind] = episode(kind)
            times[kind].append(seconds)
    med = {kind: statistics.median(v) for kind, v in times.items()}
    assert grads["old"] is not None and grads["new"] is not None
    report = {
        "command": "python benchmarks/reverse_vjp.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "steps": args.steps,
        "columns": table.n_columns,
        "median_seconds": med,
        "old_over_new": med["old"] / med["new"],
        "new_over_plain": med["new"] / med["plain"],
        "old_over_plain": med["old"] / med["plain"],
        "every_state_over_plain": med["every"] / med["plain"],
        "bitwise_equal": bool(torch.equal(grads["old"], grads["new"])),
        "seconds": times,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "seconds"}, indent=2))


if __name__ == "__main__":
    main()
