"""Loss-side hyperparameters: a weight per class in the training loss, and label smoothing.

They are columns of the hyperparameter table like the optimiser's, so every engine
differentiates them: the training loss of a step reads them from the step's hyperparameter
vector. With class weights ``w`` and label smoothing ``eps``, the training loss of a batch is

    mean_i  w_{y_i} * ((1 - eps) * CE_i + eps * mean_c(-log p_{i,c}))

(``CE_i = -log p_{i, y_i}``): a class's weight scales its examples' share of the mean, and
``eps`` moves the target from the label towards the uniform distribution. A class that no
schedule names keeps weight 1; without label smoothing ``eps = 0``.

Class groups: ``groups`` entries ``{name: ("class_weight", patterns)}`` give the classes whose
index, written in decimal, matches a pattern (``fnmatch``: ``"3"``, ``"[5-9]"``, ``"*"``) the
weight schedule ``name`` (the last matching group wins), as layer groups do for parameters;
:func:`~optuna_fmd.engine.matched_classes` is that rule, defined without torch so that the
class-weight plot reads it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._imbalanced import matched_classes

__all__ = ["LOSS_HYPERS", "LossSide", "make_loss_side", "split_groups"]

#: The loss-side hyperparameters a schedule may set, with the value they take when none does.
LOSS_HYPERS: Mapping[str, float] = {"class_weight": 1.0, "label_smoothing": 0.0}

Groups = Mapping[str, tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class LossSide:
    """Where the training loss reads its hyperparameters in a step's hyperparameter vector.

    Attributes:
        weights: For each class, the index of its weight in the vector (``None``: weight 1).
        smoothing: The index of the label smoothing in the vector (``None``: no smoothing).
    """

    weights: tuple[int | None, ...]
    smoothing: int | None

    @property
    def n_classes(self) -> int:
        return len(self.weights)

    def loss(self, output: Tensor, target: Tensor, hypers: Tensor) -> Tensor:
        """The training loss of ``output`` (logits, ``(B, C)``) for class labels ``target``."""
        logp = torch.log_softmax(output, dim=1)
        per = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
        if self.smoothing is not None:
            eps = hypers[self.smoothing]
            per = (1 - eps) * per - eps * logp.mean(dim=1)
        if any(j is not None for j in self.weights):
            one = hypers.new_ones(())
            w = torch.stack([one if j is None else hypers[j] for j in self.weights])
            per = per * w[target]
        return per.mean()


def split_groups(groups: Groups | None) -> tuple[dict[str, tuple[str, tuple[str, ...]]], ...]:
    """``groups`` split into (parameter groups, class groups): class groups set a loss-side
    hyperparameter, parameter groups an optimiser's."""
    params: dict[str, tuple[str, tuple[str, ...]]] = {}
    classes: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, (hyper, patterns) in (groups or {}).items():
        (classes if hyper in LOSS_HYPERS else params)[name] = (hyper, tuple(patterns))
    return params, classes


def make_loss_side(
    table_names: Sequence[str], groups: Groups | None, n_classes: int | None
) -> LossSide | None:
    """The :class:`LossSide` of a table with columns ``table_names`` (``None`` when no name sets a
    loss-side hyperparameter: the model's own loss is then used, unchanged).

    Raises:
        ValueError: A loss-side hyperparameter on a task without class labels, a group of
            label smoothing, or a class group that matches no class.
    """
    _, classes = split_groups(groups)
    if not classes and not any(n in LOSS_HYPERS for n in table_names):
        return None
    if n_classes is None or n_classes < 2:
        raise ValueError(
            "class weights and label smoothing need a classification task (integer class "
            f"labels, at least 2 classes), but the task has n_classes={n_classes!r}."
        )
    base = table_names.index("class_weight") if "class_weight" in table_names else None
    weights: list[int | None] = [base] * n_classes
    for name, (hyper, patterns) in classes.items():
        if hyper != "class_weight":
            raise ValueError(
                f"group `{name}` sets `{hyper}`, which has one value for every class; only "
                "`class_weight` takes class groups."
            )
        hit = matched_classes(patterns, n_classes)
        if not hit:
            raise ValueError(
                f"class group `{name}` matches no class with {list(patterns)}; classes are "
                f"0 ... {n_classes - 1} (patterns match the index written in decimal)."
            )
        for c in hit:
            weights[c] = table_names.index(name)
    smoothing = table_names.index("label_smoothing") if "label_smoothing" in table_names else None
    return LossSide(tuple(weights), smoothing)
