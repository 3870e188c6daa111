"""The user's own network and data as a Task, checked up front for forward-mode support."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..engine import FunctionalModel, unsupported_reason
from ._base import Dataset, Task, long_tailed_split

__all__ = ["Custom"]

LossFn = Callable[[Tensor, Tensor], Tensor]
DataLike = Any  # (x, y) tensor pair or a map-style torch.utils.data.Dataset


def _as_tensors(arg: str, data: DataLike) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from a tensor pair or a map-style dataset of ``(x, y)`` items (stacked)."""
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, Tensor) for t in data)
    ):
        x, y = data
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        n = len(data)
        if n == 0:
            raise ValueError(f"`{arg}` must not be empty, but got a dataset of length 0.")
        items = [data[i] for i in range(n)]
        if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items[:1]):
            raise TypeError(
                f"`{arg}` must yield (input, target) pairs, "
                f"but item 0 is {type(items[0]).__name__}."
            )
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.stack([torch.as_tensor(it[1]) for it in items])
    else:
        raise TypeError(
            f"`{arg}` must be an (x, y) pair of tensors or a map-style torch Dataset, "
            f"but got {type(data).__name__}."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"`{arg}` inputs and targets must have the same length, but got {x.shape[0]} inputs "
            f"and {y.shape[0]} targets."
        )
    if x.shape[0] == 0:
        raise ValueError(f"`{arg}` must not be empty, but got 0 examples.")
    return x, y


@dataclass(eq=False)
class Custom(Task):
    """Your own ``nn.Module`` and data, trained and differentiated like the built-in tasks.

    Initial weights for episode seed ``s`` (``make_model(s)``):

    - ``model`` a zero-argument factory: it is called under ``torch.manual_seed(s)``;
    - ``model`` an ``nn.Module``: it is deep-copied (the original is never touched) and, when
      ``reinit`` is true (the default), every submodule that has a ``reset_parameters`` method
      (``nn.Linear``, ``nn.Conv2d``, ``nn.BatchNorm2d``, ...) is re-initialised under
      ``torch.manual_seed(s)``, so each seed starts from fresh weights. Parameters owned by a
      module without ``reset_parameters`` keep the values you gave. ``reinit=False`` keeps all
      given weights for every seed (e.g. fine-tuning a pretrained network).

    Validation: with ``val`` given, it is the validation split of every episode and
    ``val_fraction`` is ignored; without it, a random ``val_fraction`` of ``train`` is held out,
    drawn from the episode seed. :func:`optuna_fmd.evaluate_schedule` trains on ``train`` and
    ``val`` together and reports on ``test``.

    Imbalance (``imbalance``, see :class:`Task`): without ``val``, a balanced validation split is
    held out of ``train`` and the rest subsampled to the long-tailed profile, as for the built-in
    tasks; with ``val`` given, only ``train`` is subsampled (``n_max`` is then its smallest
    class's count) and ``val`` is used as is, balanced or not. Either needs integer class labels,
    checked at construction.

    The module is refused up front (``ValueError``) when the engine cannot differentiate it: a
    known-unsupported layer (e.g. ``nn.LSTM``), an op without a forward-mode derivative (found by
    one forward-mode pass on a tiny batch), or a forward that writes parameters in place.

    Args:
        model: An ``nn.Module`` or a zero-argument function returning one.
        train: Training data: an ``(x, y)`` pair of tensors or a map-style torch Dataset of
            ``(x, y)`` items (stacked into tensors once).
        val: Optional fixed validation data (same forms).
        test: Optional test data (same forms), for :func:`optuna_fmd.evaluate_schedule`.
        loss: ``loss(output, target) -> scalar mean loss`` (default cross-entropy). It must be
            differentiable by ``torch.func``.
        metric: Optional ``metric(output, target) -> float`` reported on the test set by
            :func:`optuna_fmd.evaluate_schedule` (accuracy is reported for class labels anyway).
        n_classes: Number of classes (default: inferred from integer labels, else 0).
        reinit: Re-initialise a given module per seed (see above).
        check: Run the forward-mode dry run at construction (on by default).

    Example:
        >>> import torch, optuna_fmd as fmd
        >>> x, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
        >>> net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(),
        ...                           torch.nn.Linear(32, 3))
        >>> task = fmd.tasks.Custom(model=net, train=(x, y), steps=20, batch_size=32)
        >>> res = fmd.run_episode(task, {"lr": [0.1, 0.05]})
    """

    model: Any = None
    train: DataLike = field(default=None, repr=False)
    val: DataLike = field(default=None, repr=False)
    test: DataLike = field(default=None, repr=False)
    loss: LossFn | None = None
    metric: Callable[[Tensor, Tensor], float] | None = None
    n_classes: int | None = None
    reinit: bool = True
    check: bool = True
    _data_cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    name: ClassVar[str] = "custom"

    # -- checks -------------------------------------------------------------------------------
    def validate(self) -> None:
        super().validate()
        m = self.model
        if not isinstance(m, nn.Module) and not callable(m):
            raise TypeError(
                f"`model` must be an nn.Module or a zero-argument function returning one, "
                f"but got {m!r}."
            )
        if self.train is None:
            raise ValueError("`train` is required: an (x, y) pair of tensors or a torch Dataset.")
        if self.loss is not None and not callable(self.loss):
            raise TypeError(f"`loss` must be callable(output, target), but got {self.loss!r}.")
        if self.metric is not None and not callable(self.metric):
            raise TypeError(f"`metric` must be callable(output, target), but got {self.metric!r}.")
        nc = self.n_classes
        if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 0):
            raise ValueError(f"`n_classes` must be a non-negative int or None, but got {nc!r}.")
        # Materialise the data now, so that malformed data is reported before any training.
        self.data()
        if self.imbalance is not None:
            self.split(0)  # labels and class sizes the long-tailed split needs
        if isinstance(m, nn.Module):
            reason = unsupported_reason(m)
            if reason is not None:
                raise ValueError(f"`model`: {reason}")
        module = self.make_model(0)
        self._check_fit(module)
        if self.check:
            self._dry_run(module)
        self.check_batch_size()  # the data is loaded now: its split tells

    def _check_model(self) -> None:
        """The model is the user's own module: checked in :meth:`validate` against the data."""

    def _check_fit(self, module: nn.Module) -> None:
        """One plain forward of two training examples: the inputs fit the model, and with the
        default cross-entropy loss it gives a score for every class the labels name."""
        data = self.data()
        x = data.train_x[:2]
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            try:
                out = module(x)
            except (RuntimeError, TypeError, ValueError) as err:
                raise ValueError(
                    f"`train` inputs of shape {tuple(data.in_shape)} per example do not fit "
                    f"`model`: its forward on {x.shape[0]} of them failed ({_describe(err)}). "
                    "Give inputs of the shape the model's first layer takes (`val` and `test` "
                    "must have the same)."
                ) from None
        if self.loss is not None or not isinstance(out, Tensor) or out.dim() != 2:
            return
        labels = [y for y in (data.train_y, data.test_y) if y is not None and y.dim() == 1]
        if not labels or any(y.is_floating_point() for y in labels):
            return
        top = max(int(y.max()) for y in labels)
        if out.shape[1] <= top:
            raise ValueError(
                f"`model` gives {out.shape[1]} scores per example, but the class labels of "
                f"`train`, `val` and `test` go up to {top}; the default cross-entropy loss "
                "needs a score per class."
            )

    def _dry_run(self, module: nn.Module) -> None:
        """One forward-mode pass (jvp of the training gradient) on a tiny batch."""
        reason = unsupported_reason(module)
        if reason is not None:
            raise ValueError(f"`model`: {reason}")
        data = self.data()
        n = min(4, data.train_x.shape[0])
        batch = (data.train_x[:n], data.train_y[:n])
        fmodel = FunctionalModel(module, self.make_loss())
        params, stats = fmodel.initial_state(module)
        if not params:
            raise ValueError("`model` has no parameters to train.")
        before = [p.clone() for p in params]

        def jvp_of_grad(loss_fn: LossFn) -> None:
            fm = fmodel if loss_fn is fmodel.loss else FunctionalModel(module, loss_fn)

            def loss_of(q: list[Tensor]) -> Tensor:
                return fm.train_loss(q, stats, batch)[0]

            tangents = [torch.ones_like(p) for p in params]
            torch.func.jvp(torch.func.grad(loss_of), (params,), (tangents,))

        def surrogate(out: Tensor, _: Tensor) -> Tensor:
            return (out.double() ** 2).mean()

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            out = fmodel.eval_output(params, stats, batch[0])
            loss = fmodel.loss(out, batch[1])
            if not isinstance(loss, Tensor) or loss.dim() != 0:
                got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
                raise ValueError(f"`loss` must return a scalar (mean) loss, but got {got}.")
            try:
                jvp_of_grad(fmodel.loss)
            except (RuntimeError, NotImplementedError, TypeError) as err:
                # Blame the model or the loss: retry with a plain squared-output loss.
                try:
                    jvp_of_grad(surrogate)
                except (RuntimeError, NotImplementedError, TypeError):
                    culprit = "`model`"
                else:
                    culprit = "`loss`"
                raise ValueError(
                    f"{culprit} cannot be differentiated in forward mode (one jvp of the "
                    f"training gradient on a batch of {n} failed): {_describe(err)}. Replace "
                    "that op or layer by one with a forward-mode derivative (torch.func.jvp), "
                    "e.g. an nn.LSTM by an nn.LSTMCell loop, an in-place op by its "
                    "out-of-place form, F.mse_loss by ((out - y) ** 2).mean()."
                ) from err
        names = fmodel.param_names
        for name, b, p in zip(names, before, params, strict=True):
            if not torch.equal(b, p):
                raise ValueError(
                    f"`model` writes parameter `{name}` in place during forward; the engine "
                    "treats parameters as pure inputs. Compute a new tensor instead "
                    "(e.g. `w = self.weight * s`, not `self.weight.mul_(s)`)."
                )

    # -- pieces ---------------------------------------------------------------------------------
    def _split(self, arg: str, data: DataLike, like: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of split ``arg``: inputs of the shape of ``like`` (the training inputs),
        and with the default loss, targets checked as class labels."""
        x, y = _as_tensors(arg, data)
        if like is not None and x.shape[1:] != like.shape[1:]:
            raise ValueError(
                f"`{arg}` inputs must have the shape of `train` inputs {tuple(like.shape[1:])}, "
                f"but got {tuple(x.shape[1:])}."
            )
        if self.loss is None:
            _check_labels(arg, y, x.shape[0])
        return x, y

    def _load(self) -> Dataset:
        tx, ty = self._split("train", self.train, None)
        n_train = tx.shape[0]
        if self.val is not None:
            vx, vy = self._split("val", self.val, tx)
            tx, ty = torch.cat([tx, vx]), torch.cat([ty, vy])
        self._data_cache["n_train"] = n_train
        test_x = test_y = None
        if self.test is not None:
            test_x, test_y = self._split("test", self.test, tx)
        n_classes = self.n_classes
        if n_classes is None:
            labels = [t for t in (ty, test_y) if t is not None]
            if all(not t.is_floating_point() and t.dim() == 1 for t in labels):
                n_classes = int(max(int(t.max()) for t in labels)) + 1
            else:
                n_classes = 0
        return Dataset(tx, ty, test_x, test_y, n_classes, tuple(tx.shape[1:]))

    def split(self, seed: int) -> tuple[Tensor, Tensor]:
        """The given ``val`` when there is one, else a random ``val_fraction`` of ``train``
        (with ``imbalance``: see the class docstring)."""
        if self.val is None:
            return super().split(seed)
        n = self.data().train_x.shape[0]
        n_train = self._data_cache["n_train"]
        val = torch.arange(n_train, n)
        if self.imbalance is None:
            return torch.arange(n_train), val
        labels = self._class_labels("imbalance")[:n_train]
        n_classes = self.data().n_classes
        train, _ = long_tailed_split(labels, n_classes, self.imbalance, 0.0, seed)
        return train, val

    def make_model(self, seed: int) -> nn.Module:
        """Initial network for ``seed`` (see the class docstring for the rule)."""
        dev = torch.device(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if isinstance(self.model, nn.Module):
                net = copy.deepcopy(self.model)
                if self.reinit:
                    for sub in net.modules():
                        reset = getattr(sub, "reset_parameters", None)
                        if callable(reset):
                            reset()
            else:
                net = self.model()
                if not isinstance(net, nn.Module):
                    raise TypeError(
                        f"`model` factory must return an nn.Module, but returned {net!r}."
                    )
        return net.to(device=dev, dtype=self.dtype)

    def make_loss(self) -> LossFn:
        return self.loss if self.loss is not None else nn.functional.cross_entropy


def _check_labels(arg: str, y: Tensor, n: int) -> None:
    """Targets of split ``arg`` fit the default cross-entropy loss: integer class labels
    ``(N,)`` >= 0, or class probabilities ``(N, C)`` (floats)."""
    rule = (
        f"`{arg}` targets must be integer class labels (a torch.long tensor of shape ({n},)) or "
        "class probabilities (floats of shape (N, classes)) for the default cross-entropy loss"
    )
    if y.is_floating_point() and y.dim() == 2:
        return
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.dim() != 1:
        raise ValueError(
            f"{rule}, but got {y.dtype} of shape {tuple(y.shape)}. Convert class labels with "
            "`y.long()`, or pass `loss=` for other targets (e.g. regression)."
        )
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{rule}, but got a label {int(y.min())} < 0.")


def _describe(err: BaseException) -> str:
    """The failing op (``op `name` has no forward-mode derivative``) or the error's first line."""
    text = str(err).strip()
    m = re.search(r"forward AD with (\w+)", text)
    if m:
        return f"op `{m.group(1)}` has no forward-mode derivative in torch {torch.__version__}"
    lines = text.splitlines()
    return lines[0].rstrip(".") if lines else type(err).__name__
