"""Training tasks: offline datasets, models and the inner optimiser, as small configs."""

from ._base import Dataset, Digits, Synthetic, Task
from ._models import build_model

__all__ = ["Dataset", "Digits", "Synthetic", "Task", "build_model"]
