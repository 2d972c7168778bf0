"""Shared fixtures: tiny real data (scikit-learn's 8x8 digits) and a results folder per test."""

from __future__ import annotations

from pathlib import Path

import pytest

import genbench.data
import torch
from PIL import Image

from genbench.data import DataConfig, DataSplits, load_data
from genbench.model import LatentModel, ModelConfig
from genbench.operators import Observations


@pytest.fixture(scope="session")
def tiny() -> DataSplits:
    """200 train / 50 test real 8x8 digits in [-1, 1] (no network)."""
    return load_data(DataConfig(name="digits", n_train=200, n_test=50, n_negative=20))


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (ms per tiny matmul on a busy 2-core
    machine once scikit-learn's OpenMP is loaded too), so a test using this runs single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)  # tests are the edge: they seed, library code does not


@pytest.fixture(autouse=True)
def _conv_path():
    """A runner sets the process's convolution path from its config (a run's default is im2col): each test
    starts from the process default, native, even after a module- or session-scoped fixture ran a runner, and
    leaves the path it found."""
    from genbench.backbone import get_conv_path, set_conv_path

    before = get_conv_path()
    set_conv_path("native")
    yield
    set_conv_path(before)


def benchmark_module(name: str):
    """``benchmarks/<name>.py`` imported as ``benchmarks.<name>`` (the scripts are not part of the package)."""
    import importlib
    import sys

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"benchmarks.{name}")


def make_fake_celeba(root: Path, parts: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny CelebA-shaped tree under ``root/celeba`` (one image per entry of ``parts``: 0 train,
    1 valid, 2 test); only torchvision's md5 check of the list files is bypassed."""
    from torchvision.datasets import CelebA
    monkeypatch.setattr(CelebA, "_check_integrity", lambda self: True)
    base = Path(root) / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, len(parts) + 1)]
    for i, fname in enumerate(names):
        Image.new("RGB", (178, 218), (30 * i % 256, 100, 200)).save(base / "img_align_celeba" / fname,
                                                                    quality=100)
    (base / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(names, parts)))
    (base / "identity_CelebA.txt").write_text("".join(f"{f} 1\n" for f in names))
    for fname, header in (("list_bbox_celeba.txt", "x_1 y_1"), ("list_landmarks_align_celeba.txt", "a b"),
                          ("list_attr_celeba.txt", "Smiling Young")):
        (base / fname).write_text(f"{len(names)}\n{header}\n" + "".join(f"{f} 1 -1\n" for f in names))


class MeanModel(LatentModel):
    """Null test double: every recovery is one mean image (by default the mean of the observed
    training data; a subclass overrides :meth:`mean_image`). Register it per test."""

    Config = ModelConfig

    def mean_image(self, obs: Observations) -> torch.Tensor:
        return obs.y.mean(0, keepdim=True)

    def fit(self, obs: Observations) -> MeanModel:
        self._check_obs(obs, fitting=True)
        self._set_fitted(obs)
        self.mean_ = self.mean_image(obs)
        return self

    def infer(self, obs: Observations) -> torch.Tensor:
        self._check_obs(obs)
        return torch.zeros(len(obs), self.config.latent_dim, device=obs.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.mean_.expand(len(z), *self.image_shape_)

    def state_dict(self) -> dict:
        return {"mean": self.mean_, "image_shape": torch.tensor(self.image_shape_, device="cpu")}

    def load_state_dict(self, state: dict) -> None:
        self.mean_, self.device_ = state["mean"], state["mean"].device
        self.image_shape_ = tuple(int(v) for v in state["image_shape"])


class _TestSplitRead(AssertionError):
    pass


@pytest.fixture
def no_test_images(monkeypatch):
    """load_data whose test and negative splits raise when read: the tuner may touch the training split only."""
    real = genbench.data.load_data

    def guarded(config):
        data = real(config)

        class Guarded:
            name, train, train_labels = data.name, data.train, data.train_labels

            @property
            def test(self):
                raise _TestSplitRead("the test images were read")

            negative = test_labels = test

        return Guarded()

    monkeypatch.setattr(genbench.data, "load_data", guarded)
