"""A torch ``nn.Module`` seen as pure functions of flat tensor lists (parameters, statistics).

BatchNorm: training uses batch statistics; running statistics are carried as part of the state and
updated functionally (the same exponential average as ``torch.nn.BatchNorm*``), so evaluation in
eval mode is an exact, differentiable function of the training trajectory.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["FunctionalModel", "unsupported_reason"]

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


def _cross_entropy(output: Tensor, target: Tensor) -> Tensor:
    return nn.functional.cross_entropy(output, target)


_UNSUPPORTED: dict[type[nn.Module], str] = {
    nn.LSTM: "cuDNN/fused RNN kernels have no forward-mode derivative; write the recurrence "
    "with nn.LSTMCell or nn.Linear layers instead",
    nn.GRU: "fused RNN kernels have no forward-mode derivative; use nn.GRUCell instead",
    nn.RNN: "fused RNN kernels have no forward-mode derivative; use nn.RNNCell instead",
    nn.SyncBatchNorm: "SyncBatchNorm needs a process group; use nn.BatchNorm2d on one device",
    nn.EmbeddingBag: "embedding_bag has no forward-mode derivative; use nn.Embedding followed by "
    "a sum or mean over the bag dimension",
}


def unsupported_reason(module: nn.Module) -> str | None:
    """A message naming the first layer of ``module`` the engine cannot differentiate, if any."""
    for name, sub in module.named_modules():
        for kind, why in _UNSUPPORTED.items():
            if isinstance(sub, kind):
                where = name or type(module).__name__
                return f"layer `{where}` ({kind.__name__}) is not supported: {why}."
        if (
            isinstance(sub, nn.modules.batchnorm._BatchNorm)
            and sub.track_running_stats
            and sub.momentum is None
        ):
            where = name or type(module).__name__
            return (
                f"layer `{where}` uses BatchNorm with momentum=None (cumulative average), "
                "which is not supported; pass a float momentum such as 0.1."
            )
    return None


def _eval_batch_norm(self: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """Eval-mode BatchNorm written out, so it is differentiable in the running statistics."""
    shape = [1, -1] + [1] * (x.dim() - 2)
    assert self.running_mean is not None and self.running_var is not None
    out = (x - self.running_mean.view(shape)) * torch.rsqrt(
        self.running_var.view(shape) + self.eps
    )
    if self.affine:
        out = out * self.weight.view(shape) + self.bias.view(shape)
    return out


class FunctionalModel:
    """Pure-function view of ``module``: ``train_loss(params, stats, batch)`` and ``eval(...)``.

    Args:
        module: The network. It is copied; the original is not modified.
        loss: ``loss(output, target) -> mean loss`` (default cross-entropy).
    """

    def __init__(self, module: nn.Module, loss: LossFn | None = None) -> None:
        reason = unsupported_reason(module)
        if reason is not None:
            raise ValueError(reason)
        self.loss: LossFn = loss or _cross_entropy
        self._eval_module = copy.deepcopy(module).eval()
        self._train_module = copy.deepcopy(module).train()
        self.param_names = [n for n, _ in module.named_parameters()]
        self._bn: list[tuple[str, nn.Module, float]] = []
        self.stat_names: list[str] = []
        for name, sub in self._train_module.named_modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.track_running_stats:
                prefix = f"{name}." if name else ""
                self._bn.append((prefix, sub, float(sub.momentum or 0.1)))
                self.stat_names += [f"{prefix}running_mean", f"{prefix}running_var"]
        torch.func.replace_all_batch_norm_modules_(self._train_module)
        for sub in self._eval_module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.track_running_stats:
                sub.forward = types.MethodType(_eval_batch_norm, sub)  # type: ignore[method-assign]
        self._captured: list[tuple[int, Tensor]] | None = None
        for i, (_, sub, _) in enumerate(self._bn):
            sub.register_forward_pre_hook(self._make_hook(i))
        buffers = dict(module.named_buffers())
        self._other_buffers = {n: b for n, b in buffers.items() if n not in self.stat_names}

    def _make_hook(self, index: int) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            if self._captured is not None:
                self._captured.append((index, args[0]))

        return hook

    def initial_state(self, module: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        """Copies of ``module``'s parameters and BatchNorm running statistics."""
        named_p = dict(module.named_parameters())
        named_b = dict(module.named_buffers())
        params = [named_p[n].detach().clone() for n in self.param_names]
        stats = [named_b[n].detach().clone() for n in self.stat_names]
        return params, stats

    def train_loss(
        self,
        params: Sequence[Tensor],
        stats: Sequence[Tensor],
        batch: Batch,
        loss: LossFn | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Training loss on ``batch`` (batch statistics) and the updated running statistics;
        ``loss`` replaces the model's loss function for this call."""
        x, y = batch
        tensors = dict(zip(self.param_names, params, strict=True))
        tensors.update(self._other_buffers)
        self._captured = [] if self._bn else None
        try:
            out = functional_call(self._train_module, tensors, (x,))
            captured = self._captured or []
        finally:
            self._captured = None
        new_stats = list(stats)
        for index, inp in captured:
            _, _, momentum = self._bn[index]
            dims = [d for d in range(inp.dim()) if d != 1]
            count = inp.numel() // inp.shape[1]
            mean = inp.mean(dim=dims)
            var = inp.var(dim=dims, unbiased=False) * (count / max(count - 1, 1))
            i = 2 * index
            new_stats[i] = (1 - momentum) * new_stats[i] + momentum * mean
            new_stats[i + 1] = (1 - momentum) * new_stats[i + 1] + momentum * var
        return (loss or self.loss)(out, y), new_stats

    def eval_output(self, params: Sequence[Tensor], stats: Sequence[Tensor], x: Tensor) -> Tensor:
        """Network output in eval mode (running statistics, no dropout)."""
        tensors = dict(zip(self.param_names, params, strict=True))
        tensors.update(zip(self.stat_names, stats, strict=True))
        tensors.update(self._other_buffers)
        return functional_call(self._eval_module, tensors, (x,))
