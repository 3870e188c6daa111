"""Functional inner optimisers whose hyperparameters are tensors, so tangents flow through them.

Each optimiser is an ``init`` / ``update`` pair over flat lists of tensors. ``update`` receives the
current value of every hyperparameter as a 0-d tensor (the engine looks it up from the window
schedule), so forward- and reverse-mode differentiation see the hyperparameters as ordinary inputs.
The update rules follow ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` exactly; the schedule-free
optimisers are in :mod:`._schedule_free`, and :mod:`._registry` names them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["SGD", "Adam", "Hypers", "InnerOptimizer", "UpdateCotangents"]

Hypers = Mapping[str, Tensor]
#: Cotangents of ``update``'s inputs: ``(params, grads, state, {hyper: 0-d tensor})``.
UpdateCotangents = tuple[list[Tensor], list[Tensor], list[Tensor], dict[str, Tensor]]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """The sum of ``a * b`` over all entries, in one pass."""
    return torch.vdot(a.reshape(-1), b.reshape(-1))


@dataclass(frozen=True)
class InnerOptimizer:
    """Base of the functional optimisers: names of hyperparameters and their defaults."""

    defaults: Mapping[str, float] = field(default_factory=dict)
    #: The update of each coordinate depends on that coordinate's (param, grad, state) only.
    elementwise: ClassVar[bool] = True
    #: The update is affine in (param, grad, state) with coefficients set by the hypers alone.
    constant_jacobian: ClassVar[bool] = False

    @property
    def hypers(self) -> tuple[str, ...]:
        return tuple(self.defaults)

    def init(self, params: Sequence[Tensor]) -> list[Tensor]:
        raise NotImplementedError

    def eval_params(self, params: Sequence[Tensor], state: Sequence[Tensor]) -> list[Tensor]:
        """The parameters the model is evaluated at, given the training ``params`` and the
        optimiser ``state`` (a pure function of both, so the engines differentiate through it).

        The training iterate itself for most optimisers; schedule-free ones evaluate at their
        average ``x`` (:class:`~._schedule_free.ScheduleFreeAdamW`). It reads the state only,
        never the hyperparameters: a hyperparameter it needs is kept in the state by
        :meth:`update`.
        """
        return list(params)

    def update(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        state: Sequence[Tensor],
        hypers: Hypers,
        step: int,
    ) -> tuple[list[Tensor], list[Tensor]]:
        raise NotImplementedError

    def update_vjp(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        state: Sequence[Tensor],
        hypers: Hypers,
        step: int,
        new_state: Sequence[Tensor],
        params_bar: Sequence[Tensor],
        state_bar: Sequence[Tensor],
    ) -> UpdateCotangents:
        """The vector-Jacobian product of :meth:`update` at ``(params, grads, state, hypers)``.

        Args:
            params, grads, state, hypers, step: The inputs of the update.
            new_state: The optimiser state the update returned (closed forms may read it).
            params_bar, state_bar: Cotangents of the new parameters and the new state.

        Returns:
            Cotangents of ``params``, ``grads``, ``state`` and of every hyperparameter.
            This default runs the update again under autograd and takes one reverse pass;
            optimisers with a closed form override it.
        """
        with torch.enable_grad():
            p = [x.detach().requires_grad_() for x in params]
            g = [x.detach().requires_grad_() for x in grads]
            s = [x.detach().requires_grad_() for x in state]
            h = {n: v.detach().requires_grad_() for n, v in hypers.items()}
            new_p, new_s = self.update(p, g, s, h, step)
            bars = torch.autograd.grad(
                [*new_p, *new_s],
                [*p, *g, *s, *h.values()],
                grad_outputs=[*params_bar, *state_bar],
                allow_unused=True,
                materialize_grads=True,
            )
        n, m = len(p), len(s)
        return (
            list(bars[:n]),
            list(bars[n : 2 * n]),
            list(bars[2 * n : 2 * n + m]),
            dict(zip(h, bars[2 * n + m :], strict=True)),
        )


@dataclass(frozen=True)
class SGD(InnerOptimizer):
    """SGD with heavy-ball or Nesterov momentum and L2 weight decay (``torch.optim.SGD``, no
    dampening).

    ``v <- momentum * v + g + weight_decay * p``; ``p <- p - lr * v`` (Nesterov:
    ``p <- p - lr * (g + weight_decay * p + momentum * v)``).
    """

    constant_jacobian: ClassVar[bool] = True
    nesterov: bool = False
    defaults: Mapping[str, float] = field(
        default_factory=lambda: {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}
    )

    def init(self, params: Sequence[Tensor]) -> list[Tensor]:
        return [torch.zeros_like(p) for p in params]

    def update(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        state: Sequence[Tensor],
        hypers: Hypers,
        step: int,
    ) -> tuple[list[Tensor], list[Tensor]]:
        lr, mom, wd = hypers["lr"], hypers["momentum"], hypers["weight_decay"]
        new_params, new_state = [], []
        for p, g, v in zip(params, grads, state, strict=True):
            d = g + wd * p
            v = mom * v + d
            direction = d + mom * v if self.nesterov else v
            new_params.append(p - lr * direction)
            new_state.append(v)
        return new_params, new_state

    def update_vjp(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        state: Sequence[Tensor],
        hypers: Hypers,
        step: int,
        new_state: Sequence[Tensor],
        params_bar: Sequence[Tensor],
        state_bar: Sequence[Tensor],
    ) -> UpdateCotangents:
        """:meth:`InnerOptimizer.update_vjp` in closed form: a few elementwise passes and one
        dot product per hyperparameter and tensor, instead of an autograd pass through the
        update (whose products with a 0-d hyperparameter each cost two passes backwards).

        With ``d = g + wd p``, ``v' = mom v + d``, direction ``r`` (``v'``, or Nesterov's
        ``d + mom v'``) and ``p' = p - lr r``: ``r_bar = -lr p'_bar``, ``lr_bar = -<p'_bar, r>``;
        ``u = v'_bar + r_bar`` (Nesterov: ``v'_bar + mom r_bar``, and ``d`` gets ``r_bar`` too);
        ``mom_bar = <u, v>`` (Nesterov: ``+ <r_bar, v'>``), ``v_bar = mom u``; ``d_bar = u (+
        r_bar)``, ``g_bar = d_bar``, ``wd_bar = <d_bar, p>``, ``p_bar = p'_bar + wd d_bar``.
        """
        lr, mom, wd = hypers["lr"], hypers["momentum"], hypers["weight_decay"]
        lr_bar, mom_bar, wd_bar = [], [], []
        p_bars, g_bars, v_bars = [], [], []
        for p, g, v, v_new, pb, vb in zip(
            params, grads, state, new_state, params_bar, state_bar, strict=True
        ):
            r_bar = pb * -lr
            if self.nesterov:
                d = g + wd * p
                lr_bar.append(_dot(pb, d + mom * v_new))
                mom_bar.append(_dot(r_bar, v_new))
                u = vb + mom * r_bar
                d_bar = u + r_bar
            else:
                lr_bar.append(_dot(pb, v_new))
                u = vb + r_bar
                d_bar = u
            mom_bar.append(_dot(u, v))
            wd_bar.append(_dot(d_bar, p))
            p_bars.append(pb + wd * d_bar)
            g_bars.append(d_bar)
            v_bars.append(mom * u)
        bars = {
            "lr": -torch.stack(lr_bar).sum(),
            "momentum": torch.stack(mom_bar).sum(),
            "weight_decay": torch.stack(wd_bar).sum(),
        }
        return p_bars, g_bars, v_bars, bars


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt with zero (not NaN) derivatives where x == 0, in forward and reverse mode."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


@dataclass(frozen=True)
class Adam(InnerOptimizer):
    """Adam (L2 weight decay) or AdamW (``decoupled=True``), as ``torch.optim.Adam`` / ``AdamW``.

    Bias corrections use the current beta values: ``1 - beta1 ** (t + 1)``.
    """

    decoupled: bool = False
    eps: float = 1e-8
    defaults: Mapping[str, float] = field(
        default_factory=lambda: {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0}
    )

    def init(self, params: Sequence[Tensor]) -> list[Tensor]:
        return [torch.zeros_like(p) for p in params] + [torch.zeros_like(p) for p in params]

    def update(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        state: Sequence[Tensor],
        hypers: Hypers,
        step: int,
    ) -> tuple[list[Tensor], list[Tensor]]:
        lr, b1, b2, wd = hypers["lr"], hypers["beta1"], hypers["beta2"], hypers["weight_decay"]
        n = len(params)
        ms, vs = state[:n], state[n:]
        c1 = 1 - b1 ** (step + 1)
        c2 = 1 - b2 ** (step + 1)
        new_params, new_m, new_v = [], [], []
        for p, g, m, v in zip(params, grads, ms, vs, strict=True):
            if self.decoupled:
                p = p * (1 - lr * wd)
            else:
                g = g + wd * p
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * (g * g)
            denom = _safe_sqrt(v / c2) + self.eps
            new_params.append(p - lr * (m / c1) / denom)
            new_m.append(m)
            new_v.append(v)
        return new_params, new_m + new_v
