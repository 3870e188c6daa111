"""Training tasks: offline datasets, models and the inner optimiser, as small configs."""

from ._base import (
    Dataset,
    Digits,
    Synthetic,
    Task,
    long_tailed_counts,
    long_tailed_split,
    random_split,
)
from ._custom import Custom
from ._models import MODELS, build_model, check_model, layer_groups
from ._vision import CIFAR10, MNIST, DatasetNotFoundError, FashionMNIST, data_cache_dir

__all__ = [
    "CIFAR10",
    "MNIST",
    "MODELS",
    "Custom",
    "Dataset",
    "DatasetNotFoundError",
    "Digits",
    "FashionMNIST",
    "Synthetic",
    "Task",
    "build_model",
    "check_model",
    "data_cache_dir",
    "layer_groups",
    "long_tailed_counts",
    "long_tailed_split",
    "random_split",
]
