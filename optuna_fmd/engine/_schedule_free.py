"""Schedule-free AdamW and SGD (Defazio et al., "The Road Less Scheduled", NeurIPS 2024) as
functional inner optimisers: the ``schedulefree`` package's ``AdamWScheduleFree`` /
``SGDScheduleFree`` step for step, with their hyperparameters as tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from ._optim import Hypers, InnerOptimizer, UpdateCotangents, _dot, _safe_sqrt

__all__ = ["ScheduleFreeAdamW", "ScheduleFreeSGD"]


class _Average(NamedTuple):
    """One schedule-free step's scalars (:func:`_schedule_free_average`), kept for its vjp."""

    ramping: Tensor  # the warm-up is still ramping: warmup > t + 1
    ramp: Tensor  # min(1, (t + 1) / warmup)
    lr_t: Tensor  # lr * ramp
    took_lr: Tensor  # lr_t >= the previous lr_max
    lr_max: Tensor
    weight: Tensor
    weight_sum: Tensor
    c: Tensor  # weight / weight_sum, the step's weight in the average x


def _schedule_free_average(
    hypers: Hypers, lr_max: Tensor, weight_sum: Tensor, step: int, r: float, power: float
) -> _Average:
    """The warmed-up lr and the averaging weight of a schedule-free step, as the package has them.

    ``lr_t = lr * min(1, (t + 1) / warmup)`` (no warm-up where ``warmup <= t + 1``);
    ``lr_max = max(lr_max, lr_t)``; ``w = (t + 1) ** r * lr_max ** power``;
    ``weight_sum += w``; ``c = w / weight_sum`` (0 while ``weight_sum`` is 0). At an integer
    ``warmup`` this is the package's ``(k + 1) / warmup_steps if k < warmup_steps else 1``; its
    continuous extension makes the warm-up a hyperparameter with a derivative (one-sided where
    ``warmup`` is an integer ``<= t + 1``, the ramp's corner).

    ``step`` may be a 0-d tensor (the compiled forward mode passes one).
    """
    k1 = step + 1
    warmup = hypers["warmup"]
    ramping = warmup > k1
    ramp = torch.where(ramping, k1 / torch.where(ramping, warmup, 1.0), 1.0)
    lr_t = hypers["lr"] * ramp
    took_lr = lr_t >= lr_max
    lr_max = torch.where(took_lr, lr_t, lr_max)
    weight = lr_max**power if r == 0 else k1**r * lr_max**power
    weight_sum = weight_sum + weight
    positive = weight_sum > 0
    c = torch.where(positive, weight / torch.where(positive, weight_sum, 1.0), 0.0)
    return _Average(ramping, ramp, lr_t, took_lr, lr_max, weight, weight_sum, c)


def _average_vjp(
    avg: _Average,
    hypers: Hypers,
    step: int,
    weighting: tuple[float, float],
    bars: tuple[Tensor, Tensor],
    lr_max_bar: Tensor,
    sum_bar: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The vjp of :func:`_schedule_free_average`: from the cotangents ``bars = (c_bar,
    lr_t_bar)`` and those of the new ``lr_max`` and ``weight_sum``, the cotangents of ``lr``,
    ``warmup`` and of the previous ``lr_max`` and ``weight_sum``; ``weighting`` is ``(r,
    weight_lr_power)``.

    ``c = w / S``, ``S = S_prev + w``, ``w = (t + 1) ** r lr_max ** power``,
    ``lr_max = max(lr_max_prev, lr_t)``, ``lr_t = lr ramp`` with ``ramp = (t + 1) / warmup``
    while it ramps: each backwards in turn.
    """
    c_bar, lr_t_bar = bars
    r, power = weighting
    positive = avg.weight_sum > 0
    total = torch.where(positive, avg.weight_sum, 1.0)
    weight_bar = torch.where(positive, c_bar / total, 0.0)
    sum_bar = sum_bar - torch.where(positive, c_bar * avg.weight / total**2, 0.0)
    weight_bar = weight_bar + sum_bar
    if power != 0:
        scale = 1.0 if r == 0 else float(step + 1) ** r
        lr_max_bar = lr_max_bar + weight_bar * scale * power * avg.lr_max ** (power - 1)
    lr_t_bar = lr_t_bar + torch.where(avg.took_lr, lr_max_bar, 0.0)
    prev_lr_max_bar = torch.where(avg.took_lr, 0.0, lr_max_bar)
    warmup = torch.where(avg.ramping, hypers["warmup"], 1.0)
    ramp_bar = torch.where(avg.ramping, -avg.ramp / warmup, 0.0)  # d ramp / d warmup
    lr_bar = lr_t_bar * avg.ramp
    return lr_bar, lr_t_bar * hypers["lr"] * ramp_bar, prev_lr_max_bar, sum_bar


@dataclass(frozen=True)
class _ScheduleFree(InnerOptimizer):
    """Schedule-free learning (Defazio et al., "The Road Less Scheduled", NeurIPS 2024) as the
    ``schedulefree`` package implements it: gradients at ``y``, a base sequence ``z``, and the
    evaluated average ``x`` kept implicit in ``y = (1 - beta) z + beta x``.

    One step at ``t`` with the direction ``d`` of the subclass (weight decay at ``y`` included)
    and ``lr_t``, ``c`` of :func:`_schedule_free_average`:
    ``y <- y + c (z - y) + lr_t (beta (1 - c) - 1) d``; ``z <- z - lr_t d``. The model is
    evaluated at ``x = y + (1 - 1 / beta) (z - y)`` (the package's ``eval()``), with the
    ``beta`` of the last step.

    State, one entry per parameter tensor in each slot: ``z``, the subclass's slots, then 0-d
    ``lr_max``, ``weight_sum`` and the last step's ``beta``. The package keeps the three scalars
    once per parameter group; here every tensor of a group (a partition of the engine) carries
    the same values, read from the group's first tensor. The step reads them from the state, so
    the averaging weights' dependence on the lr is differentiated too.

    Attributes:
        r: Polynomial weighting of the average, ``(t + 1) ** r`` (the package's ``r``).
        weight_lr_power: The average's weights are ``lr_max ** weight_lr_power``.
    """

    #: The averaging weights and warm-up couple every coordinate of a group.
    elementwise: ClassVar[bool] = False
    #: The hyperparameter that plays ``beta`` (``"beta1"``, ``"momentum"``).
    beta_name: ClassVar[str] = "beta1"
    #: Slots of the subclass's own state per tensor, after ``z``.
    extra_slots: ClassVar[int] = 0
    r: float = 0.0
    weight_lr_power: float = 2.0

    def init(self, params: Sequence[Tensor]) -> list[Tensor]:
        """``z = y``, the subclass's zeros, ``lr_max = -1``, ``weight_sum = 0``, ``beta = 1``
        (``x = y`` before the first step)."""
        zs = [p.clone() for p in params]
        extra = [torch.zeros_like(p) for _ in range(self.extra_slots) for p in params]
        scalars = [p.new_full((), value) for value in (-1.0, 0.0, 1.0) for p in params]
        return zs + extra + scalars

    def _direction(
        self, y: Tensor, g: Tensor, slots: Sequence[Tensor], hypers: Hypers, step: int
    ) -> tuple[Tensor, list[Tensor]]:
        """The step direction at ``y`` (weight decay included) and the new extra slots."""
        raise NotImplementedError

    def update(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        state: Sequence[Tensor],
        hypers: Hypers,
        step: int,
    ) -> tuple[list[Tensor], list[Tensor]]:
        n = len(params)
        zs = state[:n]
        extra = [state[(1 + j) * n : (2 + j) * n] for j in range(self.extra_slots)]
        base = (1 + self.extra_slots) * n
        avg = _schedule_free_average(
            hypers, state[base], state[base + n], step, self.r, self.weight_lr_power
        )
        lr_t, c = avg.lr_t, avg.c
        beta = hypers[self.beta_name]
        y_coef = lr_t * (beta * (1 - c) - 1)
        new_y, new_z = [], []
        new_extra: list[list[Tensor]] = [[] for _ in range(self.extra_slots)]
        for i, (y, g, z) in enumerate(zip(params, grads, zs, strict=True)):
            d, slots = self._direction(y, g, [e[i] for e in extra], hypers, step)
            new_y.append(y + c * (z - y) + y_coef * d)
            new_z.append(z - lr_t * d)
            for j, s in enumerate(slots):
                new_extra[j].append(s)
        # one tensor per slot, none aliased (a compiled step guards on aliasing between calls)
        scalars = [x.clone() for x in (avg.lr_max, avg.weight_sum, beta) for _ in range(n)]
        return new_y, [*new_z, *(s for slot in new_extra for s in slot), *scalars]

    def _direction_vjp(
        self,
        y: Tensor,
        g: Tensor,
        slots: Sequence[Tensor],
        hypers: Hypers,
        step: int,
        d_bar: Tensor,
        slots_bar: Sequence[Tensor],
    ) -> tuple[Tensor, Tensor, Tensor, list[Tensor], dict[str, Tensor]]:
        """:meth:`_direction` and its vjp: ``(d, y_bar, g_bar, slots_bar, {hyper: bar})`` from
        the cotangents of the direction and of the new extra slots."""
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
        """:meth:`InnerOptimizer.update_vjp` in closed form: one elementwise pass and a few dot
        products per tensor, then the scalars' chain (averaging weight, lr_max, warm-up).

        With ``a = lr_t (beta (1 - c) - 1)``: ``d_bar = a y'_bar - lr_t z'_bar``,
        ``y_bar = (1 - c) y'_bar + (d's share)``, ``z_bar = c y'_bar + z'_bar``,
        ``c_bar = <y'_bar, z - y> - a_bar lr_t beta``, ``a_bar = <y'_bar, d>``,
        ``lr_t_bar = -<z'_bar, d> + a_bar (beta (1 - c) - 1) (+ lr_max's share)``,
        ``beta_bar = a_bar lr_t (1 - c) + beta'_bar``; then ``c = w / S``, ``S = S_prev + w``,
        ``w = (t + 1) ** r lr_max ** power``, ``lr_max = max(lr_max_prev, lr_t)``,
        ``lr_t = lr ramp`` backwards.
        """
        n = len(params)
        e = self.extra_slots
        base = (1 + e) * n
        avg = _schedule_free_average(
            hypers, state[base], state[base + n], step, self.r, self.weight_lr_power
        )
        lr_t, c = avg.lr_t, avg.c
        beta = hypers[self.beta_name]
        keep = 1 - c
        a = lr_t * (beta * keep - 1)
        zero = lr_t.new_zeros(())
        c_bar, a_bar, lr_t_bar = zero, zero, zero
        bars = {h: zero for h in self.hypers}
        y_bars, g_bars, z_bars = [], [], []
        extra_bars: list[list[Tensor]] = [[] for _ in range(e)]
        for i, (y, g, z, yb, zb) in enumerate(
            zip(params, grads, state[:n], params_bar, state_bar[:n], strict=True)
        ):
            slots = [state[(1 + j) * n + i] for j in range(e)]
            slots_bar = [state_bar[(1 + j) * n + i] for j in range(e)]
            d_bar = a * yb - lr_t * zb
            d, y_bar, g_bar, s_bars, own = self._direction_vjp(
                y, g, slots, hypers, step, d_bar, slots_bar
            )
            c_bar = c_bar + _dot(yb, z - y)
            a_bar = a_bar + _dot(yb, d)
            lr_t_bar = lr_t_bar - _dot(zb, d)
            y_bars.append(y_bar + keep * yb)
            z_bars.append(c * yb + zb)
            g_bars.append(g_bar)
            for j, sb in enumerate(s_bars):
                extra_bars[j].append(sb)
            for h, b in own.items():
                bars[h] = bars[h] + b
        lr_max_bar = torch.stack(list(state_bar[base : base + n])).sum()
        sum_bar = torch.stack(list(state_bar[base + n : base + 2 * n])).sum()
        beta_bar = torch.stack(list(state_bar[base + 2 * n : base + 3 * n])).sum()
        lr_t_bar = lr_t_bar + a_bar * (beta * keep - 1)
        beta_bar = beta_bar + a_bar * lr_t * keep
        c_bar = c_bar - a_bar * lr_t * beta
        lr_bar, warmup_bar, prev_lr_max_bar, sum_bar = _average_vjp(
            avg,
            hypers,
            step,
            (self.r, self.weight_lr_power),
            (c_bar, lr_t_bar),
            lr_max_bar,
            sum_bar,
        )
        bars["lr"] = bars["lr"] + lr_bar
        bars["warmup"] = bars["warmup"] + warmup_bar
        bars[self.beta_name] = bars[self.beta_name] + beta_bar
        scalar_bars = [torch.zeros_like(x) for x in state[base:]]
        scalar_bars[0] = prev_lr_max_bar
        scalar_bars[n] = sum_bar
        state_bars = [*z_bars, *(b for slot in extra_bars for b in slot), *scalar_bars]
        return y_bars, g_bars, state_bars, bars

    def eval_params(self, params: Sequence[Tensor], state: Sequence[Tensor]) -> list[Tensor]:
        """``x = y + (1 - 1 / beta) (z - y)``: the package's ``eval()``."""
        n = len(params)
        first = (3 + self.extra_slots) * n
        betas = state[first : first + n]
        return [
            y + (1 - 1 / b) * (z - y) for y, z, b in zip(params, state[:n], betas, strict=True)
        ]


@dataclass(frozen=True)
class ScheduleFreeAdamW(_ScheduleFree):
    """Schedule-free AdamW (``schedulefree.AdamWScheduleFree``; Defazio et al., NeurIPS 2024).

    Hyperparameters: ``lr``, ``beta1`` (the interpolation ``beta``), ``beta2``,
    ``weight_decay`` and ``warmup`` (steps of the linear warm-up, the package's
    ``warmup_steps``); defaults are the package's. The direction at ``y``:
    ``v <- beta2 v + (1 - beta2) g^2``;
    ``d = g / (sqrt(v / (1 - beta2 ** (t + 1))) + eps) + weight_decay y``; see
    :class:`_ScheduleFree` for the step. With a ``warmup`` that is not an integer the ramp is
    ``min(1, (t + 1) / warmup)``.

    Example:
        >>> import torch
        >>> opt = ScheduleFreeAdamW()
        >>> p = [torch.ones(3)]
        >>> state = opt.init(p)
        >>> h = {k: torch.tensor(v) for k, v in opt.defaults.items()}
        >>> p, state = opt.update(p, [torch.ones(3)], state, h, 0)
        >>> [round(v, 4) for v in opt.eval_params(p, state)[0].tolist()]
        [0.9975, 0.9975, 0.9975]
    """

    extra_slots: ClassVar[int] = 1
    eps: float = 1e-8
    defaults: Mapping[str, float] = field(
        default_factory=lambda: {
            "lr": 0.0025,
            "beta1": 0.9,
            "beta2": 0.999,
            "weight_decay": 0.0,
            "warmup": 0.0,
        }
    )

    def _direction(
        self, y: Tensor, g: Tensor, slots: Sequence[Tensor], hypers: Hypers, step: int
    ) -> tuple[Tensor, list[Tensor]]:
        b2 = hypers["beta2"]
        v = b2 * slots[0] + (1 - b2) * (g * g)
        denom = _safe_sqrt(v / (1 - b2 ** (step + 1))) + self.eps
        return g / denom + hypers["weight_decay"] * y, [v]

    def _direction_vjp(
        self,
        y: Tensor,
        g: Tensor,
        slots: Sequence[Tensor],
        hypers: Hypers,
        step: int,
        d_bar: Tensor,
        slots_bar: Sequence[Tensor],
    ) -> tuple[Tensor, Tensor, Tensor, list[Tensor], dict[str, Tensor]]:
        b2, wd = hypers["beta2"], hypers["weight_decay"]
        k1 = step + 1
        gg = g * g
        v = b2 * slots[0] + (1 - b2) * gg
        correction = 1 - b2**k1
        q = v / correction
        positive = q > 0
        root = torch.where(positive, torch.sqrt(torch.where(positive, q, 1.0)), 1.0)
        denom = torch.where(positive, root, 0.0) + self.eps
        normalized = g / denom
        q_bar = torch.where(positive, -d_bar * normalized / denom * 0.5 / root, 0.0)
        v_bar = slots_bar[0] + q_bar / correction
        correction_bar = -_dot(q_bar, q) / correction
        b2_bar = correction_bar * (-k1 * b2 ** (k1 - 1)) + _dot(v_bar, slots[0] - gg)
        g_bar = d_bar / denom + 2 * (1 - b2) * g * v_bar
        own = {"beta2": b2_bar, "weight_decay": _dot(d_bar, y)}
        return normalized + wd * y, wd * d_bar, g_bar, [b2 * v_bar], own


@dataclass(frozen=True)
class ScheduleFreeSGD(_ScheduleFree):
    """Schedule-free SGD (``schedulefree.SGDScheduleFree``; Defazio et al., NeurIPS 2024).

    Hyperparameters: ``lr``, ``momentum`` (the interpolation ``beta``), ``weight_decay`` and
    ``warmup`` (steps, as :class:`ScheduleFreeAdamW`); defaults are the package's. The direction
    at ``y`` is ``d = g + weight_decay y``; see :class:`_ScheduleFree` for the step.
    """

    beta_name: ClassVar[str] = "momentum"
    defaults: Mapping[str, float] = field(
        default_factory=lambda: {"lr": 1.0, "momentum": 0.9, "weight_decay": 0.0, "warmup": 0.0}
    )

    def _direction(
        self, y: Tensor, g: Tensor, slots: Sequence[Tensor], hypers: Hypers, step: int
    ) -> tuple[Tensor, list[Tensor]]:
        return g + hypers["weight_decay"] * y, []

    def _direction_vjp(
        self,
        y: Tensor,
        g: Tensor,
        slots: Sequence[Tensor],
        hypers: Hypers,
        step: int,
        d_bar: Tensor,
        slots_bar: Sequence[Tensor],
    ) -> tuple[Tensor, Tensor, Tensor, list[Tensor], dict[str, Tensor]]:
        wd = hypers["weight_decay"]
        return g + wd * y, wd * d_bar, d_bar, [], {"weight_decay": _dot(d_bar, y)}
