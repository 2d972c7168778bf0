"""The feature space sample quality is measured in: a small LeNet-style classifier trained on the run's
training split (``lenet``), or, where the data has no labels, the same network randomly initialised
(``lenet-random``: Naeem et al., ICML 2020, propose random embeddings for data unlike ImageNet; a
weaker feature space than a trained one, and named in every row that uses it).

Inception-v3 features, the field's default for FID, are trained on ImageNet photographs at 299 x 299;
on 28 x 28 grey digits they measure the resizing more than the digits, and they cannot be downloaded
here. A classifier trained on the data's own classes sees what makes a digit a digit, and its labels
also give the mode-coverage metrics (which classes the samples fall in).

The network is a property of the data and the seed, like a fit: trained once per (data settings,
seed, training settings), kept in memory for every cell of the run and, when the run keeps
checkpoints, in ``checkpoints/features__<hash>.pt`` (a resume loads it; numbers are unchanged).
Its test accuracy is recorded in the rows' messages.

Example::

    >>> net = train_lenet(x_train, y_train, epochs=5, seed=0)
    >>> accuracy(net, x_test, y_test)
    0.98
    >>> phi = net.features(x)          # (N, 128)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from genbench.fsutil import atomic_write

N_FEATURES = 128
TRAINED, RANDOM = "lenet", "lenet-random"


class LeNet(nn.Module):
    """Two 5x5 conv + max-pool stages (32 and 64 channels), pooled to 4 x 4 for any image size, a
    128-unit feature layer (the features: post-ReLU) and a linear classifier over ``n_classes``."""

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc = nn.Linear(64 * 16, N_FEATURES)
        self.head = nn.Linear(N_FEATURES, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """(N, 128) features of images (N, C, H, W) in [-1, 1]."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.adaptive_avg_pool2d(h, 4).flatten(1)
        return F.relu(self.fc(h))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@dataclass
class FeatureNet:
    """A feature network, its name (``lenet`` or ``lenet-random``) and its test accuracy (NaN: no labels)."""

    net: LeNet
    name: str
    test_accuracy: float = float("nan")
    n_classes: int = 0  # 0: no classifier (random features)
    key: str = ""  # names the net within a run (data settings, seed, training settings)

    def describe(self) -> str:
        if self.name == RANDOM:
            return f"features {RANDOM} (the data has no labels: a randomly initialised LeNet)"
        return f"features {self.name} (test accuracy {self.test_accuracy:.3f})"

    @torch.no_grad()
    def embed(self, x: Tensor, batch_size: int = 500) -> Tensor:
        """Features (N, 128), float64 on the CPU, of images in [-1, 1]; batch size changes no value
        beyond float rounding."""
        self.net.eval()
        device = next(self.net.parameters()).device
        return torch.cat([self.net.features(x[i:i + batch_size].to(device)).double().cpu()
                          for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, N_FEATURES)

    @torch.no_grad()
    def classify(self, x: Tensor, batch_size: int = 500) -> Tensor:
        """Predicted class per image (N,), on the CPU; only for a trained classifier."""
        if not self.n_classes:
            raise ValueError(f"{self.name} is not a classifier")
        self.net.eval()
        device = next(self.net.parameters()).device
        return torch.cat([self.net(x[i:i + batch_size].to(device)).argmax(1).cpu()
                          for i in range(0, len(x), batch_size)])


def train_lenet(x: Tensor, y: Tensor, *, epochs: int, seed: int, batch_size: int = 64,
                lr: float = 1e-3) -> LeNet:
    """A LeNet trained by Adam on images ``x`` (N, C, H, W) in [-1, 1] with labels ``y`` (N,) for
    ``epochs`` epochs; every draw (init, order) from ``seed``."""
    n_classes = int(y.max()) + 1
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = LeNet(x.shape[1], n_classes).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    y = y.to(x.device)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: LeNet, x: Tensor, y: Tensor) -> float:
    fn = FeatureNet(net, TRAINED, n_classes=int(y.max()) + 1)
    return float((fn.classify(x) == y.cpu()).double().mean())


def feature_net(train: Tensor, train_labels: Tensor | None, test: Tensor, test_labels: Tensor | None, *,
                epochs: int, seed: int, cache: dict[Any, Any] | None = None, key: Any = None,
                folder: Path | None = None, file_key: str = "") -> FeatureNet:
    """The run's feature net for this data and seed: from ``cache`` (memory), from
    ``folder/features__<file_key>.pt`` or trained now (and kept in both). No labels (or one class
    only): a random LeNet seeded by ``seed``."""
    if cache is not None and key in cache:
        return cache[key]
    labelled = train_labels is not None and test_labels is not None and int(train_labels.max()) > 0
    path = folder / f"features__{file_key}.pt" if folder is not None and file_key else None
    if not labelled:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            result = FeatureNet(LeNet(train.shape[1], 2).to(train.device).eval(), RANDOM)
    else:
        n_classes = int(max(train_labels.max(), test_labels.max())) + 1
        result = _load(path, train, n_classes) if path is not None and path.exists() else None
        if result is None:
            net = train_lenet(train, train_labels, epochs=epochs, seed=seed)
            result = FeatureNet(net, TRAINED, accuracy(net, test, test_labels), n_classes)
            if path is not None:
                blob = {"state_dict": net.state_dict(), "test_accuracy": result.test_accuracy, "n_classes": n_classes}
                atomic_write(path, lambda tmp: torch.save(blob, tmp))
    result.key = file_key or repr(key)
    if cache is not None:
        cache[key] = result
    return result


def _load(path: Path, train: Tensor, n_classes: int) -> FeatureNet | None:
    from genbench.model import safe_load

    try:
        blob = safe_load(path, map_location=train.device)
        net = LeNet(train.shape[1], int(blob["n_classes"])).to(train.device)
        net.load_state_dict(blob["state_dict"])
    except (OSError, ValueError, KeyError, RuntimeError):
        return None  # unreadable or of another shape: train again (and overwrite it)
    if int(blob["n_classes"]) != n_classes:
        return None
    return FeatureNet(net.eval(), TRAINED, float(blob["test_accuracy"]), n_classes)
