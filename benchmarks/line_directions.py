"""Which direction should the search's first line take? The loss along candidate directions from
protocol v6's below start on the deep per-layer task.

From every layer's cosine peak at 0.005 (a tenth of the tuned 0.05; `fashion-deep`, the 6 x 128
MLP, T = 600), the start's hypergradient of two seeds (``seed``, ``seed + 1``, the population of
``fmd-pop2``) is taken in the sampler's coordinate units (``Geometry.unit_gradient``, the
first-stage params). Directions (unit length in units):

- ``hypergradient``: its descent direction over every first-stage param (momentum and weight
  decay ride along with the learning rates);
- ``lr-only``: the same over the learning rate's params only (momentum and weight decay held);
- ``peaks-only``: the same over each layer's peak lr only (the cosine's shape held);
- ``signs``: the signs of its log-scale coordinates only (here every lr up: the lr-scale
  direction, with the layers' family shapes held);
- ``sqrt``: the square root of each coordinate's magnitude, with its sign;
- ``per-layer``: the hypergradient normalised within each layer's params;
- ``scale``: every lr coordinate up by the same amount (the ablation's scale search).

Along each, steps of 1, 2, 3 and 4 doublings of the fastest log-scale param, then every half
doubling up to 8 (so a line's minimum between x2^4 and x2^8 is seen); at each the mean
validation loss of the same two seeds' plain episodes (``inf``: an episode diverged) and the
momentum there.

    python benchmarks/line_directions.py                 # seeds 20 and 22, ~70 minutes
    python benchmarks/line_directions.py --seeds 20 --directions lr-only scale

Writes ``benchmarks/results/line_directions.json`` and ``line_directions.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from optuna_fmd.compare import TASKS
from optuna_fmd.episode import run_episode
from optuna_fmd.objective import _flat_hypergradient
from optuna_fmd.outer._geometry import geometry_of

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = (1, 2, 3, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7.5, 8)
DEFAULT = ("hypergradient", "lr-only", "peaks-only", "scale")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(math.fsum(x * x for x in v))
    return [x / n for x in v] if n > 0 else v


def directions(
    g: list[float], names: list[str], logs: list[bool], scale: list[bool], lr: list[bool]
) -> dict:
    """The candidate directions from the unit hypergradient ``g`` (first-stage coordinates);
    ``lr`` marks the learning rate's params."""
    out = {"hypergradient": _unit([-x for x in g])}
    out["lr-only"] = _unit([-x if m else 0.0 for x, m in zip(g, lr, strict=True)])
    out["peaks-only"] = _unit(
        [-x if n.endswith("_peak") else 0.0 for x, n in zip(g, names, strict=True)]
    )
    out["signs"] = _unit(
        [-math.copysign(1.0, x) if lg and x != 0 else 0.0 for x, lg in zip(g, logs, strict=True)]
    )
    out["sqrt"] = _unit([-math.copysign(math.sqrt(abs(x)), x) for x in g])
    layers: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        m = re.match(r"(\w+?_l\d+)_", name)
        layers.setdefault(m.group(1) if m else name, []).append(i)
    per = [0.0] * len(g)
    for idx in layers.values():
        n = math.sqrt(math.fsum(g[i] ** 2 for i in idx))
        for i in idx:
            per[i] = -g[i] / n if n > 0 else 0.0
    out["per-layer"] = _unit(per)
    out["scale"] = _unit([1.0 if s else 0.0 for s in scale])
    return out


def run(seed: int, lr: float, which: tuple[str, ...] = DEFAULT) -> dict[str, Any]:
    spec = TASKS["fashion-deep"]
    task = spec.make_task("cpu")
    space = spec.make_space(lr, task)
    geo = geometry_of(space)
    names = space.param_names()
    init = space.initial_params()
    x0 = [init[n] for n in names]
    groups = space.groups()
    members = (seed, seed + 1)

    def loss(x: list[float], hypergradient: bool = False) -> tuple[float, list[dict]]:
        params = dict(zip(names, x, strict=True))
        schedules = space.from_params(params)
        values, grads = [], []
        for s in members:
            r = run_episode(task, schedules, seed=s, hypergradient=hypergradient, groups=groups)
            values.append(math.inf if r.diverged else float(r.val_loss))
            if hypergradient:
                grads.append(_flat_hypergradient(r, space, params))
        return math.fsum(values) / len(values), grads

    f0, grads = loss(x0, hypergradient=True)
    mean = [math.fsum(g[n] for g in grads) / len(grads) for n in names]
    g = [gi if b else 0.0 for gi, b in zip(geo.unit_gradient(x0, mean), geo.base, strict=True)]
    logs = [c.kind == "log" for c in geo.coords]
    lines = {}
    found = directions(g, names, logs, list(geo.scale), geo.lr_mask)
    for name in which:
        d = found[name]
        lead = max(
            abs(di) * c.unit for c, di in zip(geo.coords, d, strict=True) if c.kind == "log"
        )
        h = math.log(2.0) / lead
        points = []
        for k in STEPS:
            x = geo.along(x0, d, k * h)
            peaks = [v for n, v in zip(names, x, strict=True) if n.endswith("_peak")]
            momentum = dict(zip(names, x, strict=True)).get("momentum_value")
            point = {"doublings": k, "loss": loss(x)[0], "peaks": peaks, "momentum": momentum}
            points.append(point)
            print(f"seed {seed} {name} x2^{k}: {point['loss']:.4f}", flush=True)
        lines[name] = points
    return {"seed": seed, "members": list(members), "start_loss": f0, "lines": lines}


def _momentum(points: list[dict[str, Any]]) -> str:
    """The momentum along a line: at its first and its last step."""
    m = [p.get("momentum") for p in (points[0], points[-1])]
    return "-" if None in m else f"{m[0]:.3f} -> {m[1]:.3f}"


def markdown(out: dict[str, Any]) -> str:
    steps = [p["doublings"] for p in next(iter(out["runs"][0]["lines"].values()))]
    head = (
        "| seed | direction | "
        + " | ".join(f"x2^{k:g}" for k in steps)
        + " | best | peaks at the best (first layer; the others) | momentum (first -> last) |"
    )
    rows = [head, "|" + "---|" * (len(steps) + 5)]
    for r in out["runs"]:
        for name, points in r["lines"].items():
            best = min(points, key=lambda p: p["loss"])
            first, others = best["peaks"][0], best["peaks"][1:]
            peaks = f"{first:.3g}; {min(others):.3g}-{max(others):.3g}"
            losses = " | ".join(
                f"**{p['loss']:.4f}**" if p is best else f"{p['loss']:.4f}" for p in points
            )
            rows.append(
                f"| {r['seed']} | {name} | {losses} | {best['loss']:.4f} | {peaks} "
                f"| {_momentum(points)} |"
            )
    prov = out["provenance"]
    return (
        "# The first line's direction (fashion-deep, every peak at "
        f"{out['lr']:g})\n\nCommit {prov['commit']}{' (dirty)' if prov['dirty'] else ''}, "
        f"`{prov['command']}`. Mean validation loss of two seeds' plain episodes along each "
        "direction (`inf`: diverged; the best in bold); steps in doublings of the fastest lr.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[20, 22])
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument(
        "--directions",
        nargs="+",
        default=list(DEFAULT),
        choices=["hypergradient", "lr-only", "peaks-only", "signs", "sqrt", "per-layer", "scale"],
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    out = {
        "lr": args.lr,
        "provenance": {
            "commit": _git("rev-parse", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "command": "python benchmarks/line_directions.py " + " ".join(sys.argv[1:]),
        },
        "runs": [run(s, args.lr, tuple(args.directions)) for s in args.seeds],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "line_directions.json").write_text(json.dumps(out, indent=1) + "\n")
    (RESULTS / "line_directions.md").write_text(markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
