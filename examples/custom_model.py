"""Your own network and data: exact hypergradients of an lr schedule for a small CNN.

A CNN with BatchNorm and Dropout on scikit-learn's 8x8 digits, given as plain tensors. The task
checks up front that the engine can differentiate the model (one forward-mode pass on a tiny
batch), so an unsupported layer fails here, with a message, rather than mid-study.

    python examples/custom_model.py
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn

import optuna_fmd as fmd


class SmallCNN(nn.Module):
    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 4 * 4, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def main() -> None:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    train, val, test = perm[:1200], perm[1200:1437], perm[1437:]

    task = fmd.tasks.Custom(
        model=SmallCNN(),  # re-initialised per seed (its layers have reset_parameters)
        train=(x[train], y[train]),
        val=(x[val], y[val]),  # a fixed validation split (val_fraction is then ignored)
        test=(x[test], y[test]),
        steps=40,
        batch_size=32,
    )
    schedules = {"lr": fmd.baselines.cosine(0.1, 2), "momentum": [0.9]}
    for outer in range(2):
        res = fmd.run_episode(task, schedules, seed=0)
        assert res.hypergradient is not None
        print(f"outer step {outer}: val loss {res.val_loss:.4f}, val acc {res.val_accuracy:.3f}")
        # one sign step on every window value (the FDS outer rule), lr kept positive
        for name, grads in res.hypergradient.items():
            step = 0.03 if name == "lr" else 0.02
            schedules[name] = [
                min(max(v - step * (1 if d > 0 else -1), 1e-3), 0.99 if name == "momentum" else 1)
                for v, d in zip(schedules[name], grads, strict=True)
            ]
    print("learned lr schedule:", [round(v, 3) for v in schedules["lr"]])
    final = fmd.evaluate_schedule(task, schedules, seeds=(0, 1))
    print(f"test accuracy {final.test_accuracy:.3f} +- {final.test_accuracy_std:.3f}")


if __name__ == "__main__":
    main()
