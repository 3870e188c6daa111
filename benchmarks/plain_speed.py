"""Plain training speed: our functional loop (``run_plain``) vs an idiomatic torch.optim.SGD loop.

Both train the same model (MLP 784-64-10 by default) from the same initial weights on the same
minibatches (batch 128) with SGD + momentum + weight decay, no hypergradient. Each repeat times a
block of ``--steps`` steps; the two loops alternate (interleaved repeats, after a warm-up) and
the median per-step time is reported with their ratio (functional / torch; target <= 1.3). Both
blocks end with the same validation pass. Results: benchmarks/results/plain_speed_<device>.json.

    python benchmarks/plain_speed.py
    python benchmarks/plain_speed.py --device cuda --model wrn-16-1 --shape 3 32 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import optuna_fmd as fmd
from optuna_fmd.engine import run_plain
from optuna_fmd.episode import build_episode

RESULTS = Path(__file__).parent / "results"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _torch_loop(
    task: fmd.tasks.Task, steps: int, lr: float, momentum: float, wd: float
) -> Callable[[], float]:
    """The idiomatic loop: model(x), loss.backward(), opt.step() on build_episode's batches."""
    problem, _, _ = build_episode(task, {}, seed=0, steps=steps)
    model = task.make_model(0).train()
    loss_fn = task.make_loss()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    batch_at = problem.batch_at
    val_batches = problem.val_batches

    def run() -> float:
        model.train()
        loss = torch.zeros(())
        for t in range(steps):
            x, y = batch_at(t)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if not torch.isfinite(loss):
                break
        model.eval()
        with torch.no_grad():
            total = sum(float(loss_fn(model(x), y)) * y.shape[0] for x, y in val_batches)
        return total

    return run


def _functional_loop(
    task: fmd.tasks.Task, steps: int, lr: float, momentum: float, wd: float
) -> Callable[[], float]:
    schedules = {"lr": [lr], "momentum": [momentum], "weight_decay": [wd]}
    problem, table, state0 = build_episode(task, schedules, seed=0, steps=steps)

    def run() -> float:
        return run_plain(problem, table, state0).val_loss

    return run


def _step_loop(
    task: fmd.tasks.Task, steps: int, lr: float, momentum: float, wd: float
) -> Callable[[], float]:
    """For reference: ``problem.step`` (``torch.func.grad``) under ``problem.rng``, the step the
    forward engine differentiates; run_plain used it before it took the autograd shortcut."""
    schedules = {"lr": [lr], "momentum": [momentum], "weight_decay": [wd]}
    problem, table, state0 = build_episode(task, schedules, seed=0, steps=steps)

    def run() -> float:
        state = [s.detach() for s in state0]
        with torch.no_grad():
            for t in range(steps):
                with problem.rng(t):
                    state, loss = problem.step(
                        state, table.values_at(t, state[0]), t, problem.batch_at(t)
                    )
                float(loss)
            return float(problem.val_loss(state)[0])

    return run


def measure(task: fmd.tasks.Task, steps: int, repeats: int, device: str) -> dict[str, object]:
    lr, momentum, wd = 0.05, 0.9, 5e-4
    fns = {
        "functional": _functional_loop(task, steps, lr, momentum, wd),
        "torch": _torch_loop(task, steps, lr, momentum, wd),
        "func_grad_step": _step_loop(task, steps, lr, momentum, wd),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
    for _ in range(repeats):
        for k, f in fns.items():  # interleaved: drifts of a shared machine hit both alike
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            times[k].append((time.perf_counter() - t0) * 1e3 / steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "ms_per_step_functional": med["functional"],
        "ms_per_step_torch": med["torch"],
        "ratio_functional_over_torch": med["functional"] / med["torch"],
        "ms_per_step_func_grad_step": med["func_grad_step"],
        "ratio_func_grad_step_over_torch": med["func_grad_step"] / med["torch"],
        "all_ms_per_step": times,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--shape", type=int, nargs="+", default=[784])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=100, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task = fmd.tasks.Synthetic(
        model=args.model,
        shape=tuple(args.shape),
        batch_size=args.batch_size,
        steps=args.steps,
        device=args.device,
    )
    res = measure(task, args.steps, args.repeats, args.device)
    dev_name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or platform.machine()
    )
    record = {
        "benchmark": "plain_speed",
        "what": "ms per plain training step (no hypergradient), median of interleaved repeats; "
        "functional = optuna_fmd run_plain, torch = model(x); loss.backward(); SGD.step(), "
        "func_grad_step = problem.step (torch.func.grad) under problem.rng, for reference",
        "model": args.model,
        "input_shape": args.shape,
        "batch_size": args.batch_size,
        "steps_per_block": args.steps,
        "repeats": args.repeats,
        "device": args.device,
        "device_name": dev_name,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": "python " + " ".join(sys.argv),
        "target_ratio": 1.3,
        **res,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = "cuda" if args.device.startswith("cuda") else "cpu"
    out = Path(args.out) if args.out else RESULTS / f"plain_speed_{tag}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"functional {res['ms_per_step_functional']:.3f} ms/step, "
        f"torch {res['ms_per_step_torch']:.3f} ms/step, "
        f"ratio {res['ratio_functional_over_torch']:.2f} "
        f"(problem.step with torch.func.grad: {res['ratio_func_grad_step_over_torch']:.2f}) "
        f"-> {out}"
    )


if __name__ == "__main__":
    main()
