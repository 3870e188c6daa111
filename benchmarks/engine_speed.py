"""ms per inner step: plain training, our forward mode, and the FDS-style double-backward loop.

Every figure is measured in the same run on the same model, batch and state, with all N tangent
columns active (the last window, the steady state of an episode), as the median of interleaved
repeats after a warm-up. Results: benchmarks/results/engine_speed_<device>.json.

    python benchmarks/engine_speed.py                      # CPU: MLP 784-64-10, batch 128
    python benchmarks/engine_speed.py --device cuda --model wrn-16-1 --shape 3 32 32
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import optuna_fmd as fmd
from optuna_fmd.engine import InnerProblem, run_reverse
from optuna_fmd.engine._forward import tangent_step
from optuna_fmd.engine._reference import fds_step
from optuna_fmd.episode import build_episode

RESULTS = Path(__file__).parent / "results"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_ms(
    fns: dict[str, Callable[[], object]], repeats: int, device: str
) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
        f()
    for _ in range(repeats):
        for k, f in fns.items():  # interleaved, so drifts of a shared machine hit all alike
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(
    task: fmd.tasks.Task, windows: int, repeats: int, device: str, with_reverse: bool = True
) -> dict[str, float]:
    """Median ms per step of each engine at K windows per hyper (N = 3K), all columns active;
    reverse mode as a whole episode of ``task.steps`` steps divided by the steps."""
    schedules = {h: [0.05] * windows for h in ("lr", "momentum", "weight_decay")}
    schedules["momentum"] = [0.9] * windows
    schedules["weight_decay"] = [1e-4] * windows
    problem, table, state = build_episode(task, schedules)
    t = task.steps - 1
    n = table.n_columns
    assert table.n_active(t) == n
    gen = torch.Generator(device="cpu").manual_seed(0)
    tangents = [1e-3 * torch.randn((n, *s.shape), generator=gen).to(s) for s in state]
    h = table.values_at(t, state[0])
    batch = problem.batch_at(t)
    params, velocity, _ = problem.unpack(state)
    n_p = len(params)
    z = [x.clone() for x in tangents[:n_p]]
    c = [x.clone() for x in tangents[n_p : 2 * n_p]]
    fns: dict[str, Callable[[], object]] = {
        "plain": lambda: _plain(problem, state, h, t, batch),
        "forward_jvp": lambda: tangent_step(problem, table, state, tangents, t, method="jvp"),
        "fds_loop": lambda: fds_step(problem, table, t, params, velocity, z, c),
    }
    if not problem.model.stat_names:
        fns["forward_hvp"] = lambda: tangent_step(problem, table, state, tangents, t, method="hvp")
    if with_reverse:  # a whole reverse-mode episode (its cost per step does not depend on N)
        fns["reverse_episode"] = lambda: run_reverse(problem, table, state)
    out = _median_ms(fns, repeats, device)
    out["forward"] = min(out.get("forward_hvp", float("inf")), out["forward_jvp"])
    if with_reverse:
        out["reverse"] = out.pop("reverse_episode") / task.steps
    return out


def _plain(problem: InnerProblem, state: list, h: torch.Tensor, t: int, batch: tuple) -> object:
    with torch.no_grad():
        return problem.step(state, h, t, batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--shape", type=int, nargs="+", default=[784])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument(
        "--windows", type=int, nargs="+", default=[1, 3, 10], help="K per hyper (N=3K)"
    )
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-reverse", action="store_true", help="skip reverse-mode episodes")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for k in args.windows:
        task = fmd.tasks.Synthetic(
            model=args.model,
            shape=tuple(args.shape),
            steps=max(3 * k, 30),
            batch_size=args.batch_size,
            device=args.device,
            n_train=max(2048, 4 * args.batch_size),
        )
        ms = measure(task, k, args.repeats, args.device, not args.no_reverse)
        row = {"N": 3 * k, **{f"{key}_ms": round(v, 3) for key, v in ms.items()}}
        row["forward_vs_plain"] = round(ms["forward"] / ms["plain"], 2)
        row["fds_loop_vs_forward"] = round(ms["fds_loop"] / ms["forward"], 2)
        if "reverse" in ms:
            row["forward_vs_reverse"] = round(ms["forward"] / ms["reverse"], 2)
            row["fds_loop_vs_reverse"] = round(ms["fds_loop"] / ms["reverse"], 2)
        rows.append(row)
        print(json.dumps(row))
    device_name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or platform.machine()
    )
    report = {
        "command": " ".join(["python benchmarks/engine_speed.py", *sys.argv[1:]]),
        "device": args.device,
        "device_name": device_name,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": args.model,
        "input_shape": args.shape,
        "batch_size": args.batch_size,
        "rows": rows,
    }
    out = (
        Path(args.out) if args.out else RESULTS / f"engine_speed_{args.device.split(':')[0]}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
