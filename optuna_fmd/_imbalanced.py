"""What the package says of an imbalanced task's classes, without torch: which classes a class
group sets (:func:`matched_classes`, the engine's rule, which the class-weight plot reads too) and
where a study keeps the training examples per class (:data:`COUNTS_ATTR`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

__all__ = ["COUNTS_ATTR", "matched_classes"]

#: The study user attr with the training examples per class of an imbalanced task.
COUNTS_ATTR = "class_counts"


def matched_classes(patterns: Sequence[str], n_classes: int) -> list[int]:
    """The classes of ``0 ... n_classes - 1`` whose index, written in decimal, matches one of
    the ``fnmatch`` patterns: the classes a class group sets."""
    return [c for c in range(n_classes) if any(fnmatch.fnmatchcase(str(c), p) for p in patterns)]
