"""Models usable by the engine: ``mlp``, ``lenet`` and wide ResNets ``wrn-<depth>-<width>``."""

from __future__ import annotations

import re

import torch
from torch import nn

__all__ = ["MODELS", "build_model", "check_model", "layer_groups"]

#: The model names :func:`build_model` takes, in words (for messages and ``--help``).
MODELS = (
    "mlp (one hidden layer of 64), mlp-<widths> (a hidden layer per width, e.g. mlp-256-128), "
    "lenet (images), wrn-<depth>-<width> (a wide ResNet on images, depth 6n + 4, e.g. wrn-16-1)"
)


def _mlp(in_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...] = (64,)) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = 1
    for d in in_shape:
        width *= d
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def _lenet(in_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    channels, height, width = in_shape
    body = nn.Sequential(
        nn.Conv2d(channels, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    with torch.no_grad():
        flat = body(torch.zeros(1, channels, height, width)).shape[1]
    return nn.Sequential(
        body,
        nn.Linear(flat, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, n_classes),
    )


class _WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(torch.relu(self.bn2(y)))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    """WRN-depth-width (Zagoruyko & Komodakis, 2016): pre-activation blocks, BatchNorm."""

    def __init__(self, depth: int, width: int, in_channels: int, n_classes: int) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n + 4 (10, 16, 22, 28, ...), but got {depth}.")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for group, stride in zip(range(1, 4), (1, 2, 2), strict=True):
            for i in range(n):
                blocks.append(_WideBlock(c_in, widths[group], stride if i == 0 else 1))
                c_in = widths[group]
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(y.mean(dim=(2, 3)))


def check_model(name: object, in_shape: tuple[int, ...] | None = None, n_classes: int = 10) -> str:
    """``name`` if :func:`build_model` takes it; with ``in_shape``, also checked to fit inputs
    of that shape (the model is built on PyTorch's ``meta`` device: no memory, no data).

    Raises:
        ValueError: An unknown name (the message lists :data:`MODELS`), a WRN depth that is not
            6n + 4, or a model that does not fit ``in_shape`` (e.g. ``lenet`` on flat inputs).

    Example:
        >>> check_model("mlp-32-16")
        'mlp-32-16'
    """
    if not isinstance(name, str) or not _parse(name):
        raise ValueError(f"`model` must be one of: {MODELS}; but got {name!r}.")
    if m := re.fullmatch(r"wrn-(\d+)-(\d+)", name):
        depth = int(m.group(1))
        if (depth - 4) % 6 != 0 or depth < 10 or int(m.group(2)) < 1:
            raise ValueError(
                "`model` wrn-<depth>-<width> needs a depth 6n + 4 (10, 16, 22, 28, ...) and a "
                f"width >= 1, but got {name!r}."
            )
    if in_shape is not None:
        try:
            with torch.device("meta"):
                net = build_model(name, in_shape, n_classes)
                net(torch.zeros((2, *in_shape)))
        except (RuntimeError, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"`model` {name!r} does not fit this task's inputs of shape {in_shape}: {reason}"
            ) from None
    return name


def _parse(name: str) -> bool:
    """Whether ``name`` has the form of a model name (sizes unchecked)."""
    return bool(
        name in ("mlp", "lenet")
        or re.fullmatch(r"mlp(?:-[1-9]\d*)+", name)
        or re.fullmatch(r"wrn-\d+-\d+", name)
    )


def build_model(name: str, in_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """A fresh model called ``name`` for inputs of ``in_shape`` (C, H, W or D) and ``n_classes``.

    Names: ``"mlp"`` (one hidden layer of 64), ``"mlp-<h1>-<h2>..."``, ``"lenet"``,
    ``"wrn-<depth>-<width>"`` (e.g. ``"wrn-16-1"``, as in the FDS paper).
    """
    if not isinstance(name, str):
        raise TypeError(f"`model` must be a string, but got {name!r}.")
    if name == "mlp":
        return _mlp(in_shape, n_classes)
    if m := re.fullmatch(r"mlp((?:-\d+)+)", name):
        return _mlp(in_shape, n_classes, tuple(int(h) for h in m.group(1)[1:].split("-")))
    if name == "lenet":
        if len(in_shape) != 3:
            raise ValueError(f"model 'lenet' needs image inputs (C, H, W), but got {in_shape}.")
        return _lenet(in_shape, n_classes)
    if m := re.fullmatch(r"wrn-(\d+)-(\d+)", name):
        if len(in_shape) != 3:
            raise ValueError(f"model {name!r} needs image inputs (C, H, W), but got {in_shape}.")
        return WideResNet(int(m.group(1)), int(m.group(2)), in_shape[0], n_classes)
    raise ValueError(f"`model` must be one of: {MODELS}; but got {name!r}.")


def layer_groups(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """One parameter group per module that holds parameters of its own (a ``Linear``, a
    ``Conv2d``, a ``BatchNorm``), in the model's order: ``{"l0": ("1.*",), "l1": ...}``, the
    ``params=`` globs of a per-layer space (:func:`optuna_fmd.space.per_layer_space`).

    Example:
        >>> layer_groups(build_model("mlp-32", (4,), 3))
        {'l0': ('1.*',), 'l1': ('3.*',)}
    """
    out: dict[str, tuple[str, ...]] = {}
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            out[f"l{len(out)}"] = (f"{name}.*" if name else "*",)
    return out
