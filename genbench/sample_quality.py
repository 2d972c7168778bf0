"""Statistics of sample quality between real and generated images, given their features (N, d):

- **FID** (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to the two feature sets,
  computed by torchmetrics' ``FrechetInceptionDistance`` fed our features (a pass-through feature
  module), so the matrix square root is theirs. Biased by sample size: the counts are fixed per run and
  recorded in every row.
- **KID** (Bińkowski et al. 2018): the unbiased squared MMD with the cubic polynomial kernel, by
  torchmetrics' ``KernelInceptionDistance``, averaged over ``subsets`` random subsets of ``subset_size``
  (seeded here: torchmetrics draws them from torch's global generator).
- **precision / recall** (Kynkäänniemi et al., NeurIPS 2019) and **density / coverage** (Naeem et al.,
  ICML 2020) from k-nearest-neighbour balls, k = 5 for all four as in Naeem et al.'s reference code
  (``prdc``): precision = share of generated points inside some real point's ball (radius: distance to its
  k-th real neighbour), recall = share of real points inside some generated point's ball; density = mean
  number of real balls holding a generated point, over k; coverage = share of real balls holding one.
- **mode coverage** from a classifier's labels of the samples: ``classes_covered`` (classes receiving at
  least ``COVER_SHARE`` of the share the test labels give them), ``label_entropy`` (nats) and
  ``label_kl`` = KL(samples' label histogram || test labels' histogram, half a count added per class),
  nats; 0 for a model whose samples fall in the classes as often as the test images do (Wu et al. 2017's "missing modes").

Example::

    >>> fid(phi_test, phi_samples), kid(phi_test, phi_samples, seed=0)
    >>> prdc(phi_test, phi_samples)             # {"precision": ..., "recall": ..., ...}
    >>> mode_coverage(labels_of_samples, test_labels, n_classes=10)
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

NEAREST_K = 5
#: a class is covered when the samples give it at least this fraction of the test images' share; half,
#: because the classifier itself sends up to ~5 % of one class's images to one other class (mnist5k), so a
#: sampler of one class must not be seen to cover the classes it is confused with
COVER_SHARE = 0.5


class _Given(nn.Module):
    """A pass-through "feature network": torchmetrics computes its statistics on features we give it."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def _check(real: Tensor, fake: Tensor, least: int = 2) -> tuple[Tensor, Tensor]:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, d) with one d, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if len(real) < least or len(fake) < least:
        raise ValueError(f"need at least {least} real and {least} generated images, got {len(real)} and {len(fake)}")
    return real.double().cpu(), fake.double().cpu()


def fid(real: Tensor, fake: Tensor) -> float:
    """FID between feature sets (N, d) and (M, d) (torchmetrics, float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _check(real, fake)
    metric = FrechetInceptionDistance(feature=_Given(real.shape[1])).double()
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kid(real: Tensor, fake: Tensor, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """KID (mean over ``subsets`` subsets of ``min(subset_size, N, M)``; torchmetrics, float64)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _check(real, fake)
    size = min(subset_size, len(real), len(fake))
    if size == len(real) == len(fake):
        subsets = 1  # every subset is the whole of both sets: one gives the same mean
    with warnings.catch_warnings():  # "will save all extracted features in buffer": they are ours already
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Given(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, _ = metric.compute()
    return float(mean)


def _kth_radius(points: Tensor, k: int) -> Tensor:
    """Distance of each point to its k-th nearest other point of the same set."""
    return torch.cdist(points, points).kthvalue(k + 1, dim=1).values  # k + 1: the point itself is at 0


def prdc(real: Tensor, fake: Tensor, k: int = NEAREST_K) -> dict[str, float]:
    """Precision, recall, density and coverage with ``k``-nearest-neighbour balls (see the module)."""
    real, fake = _check(real, fake, least=k + 1)
    real_radius, fake_radius = _kth_radius(real, k), _kth_radius(fake, k)
    d = torch.cdist(real, fake)  # (N, M)
    inside_real = d <= real_radius[:, None]  # fake j inside real i's ball
    return {"precision": float(inside_real.any(0).double().mean()),
            "recall": float((d <= fake_radius[None, :]).any(1).double().mean()),
            "density": float(inside_real.sum(0).double().mean() / k),
            "coverage": float((d.min(1).values <= real_radius).double().mean())}


def mode_coverage(sample_labels: Tensor, test_labels: Tensor, n_classes: int) -> dict[str, float]:
    """Classes covered, label entropy (nats) and KL(samples || test) (nats) of the samples' labels."""
    q = torch.bincount(sample_labels.long().cpu(), minlength=n_classes).double()
    counts = torch.bincount(test_labels.long().cpu(), minlength=n_classes).double()
    if q.sum() == 0 or counts.sum() == 0:
        raise ValueError("mode coverage needs at least one sample and one test label")
    q, p = q / q.sum(), counts / counts.sum()
    # the KL's reference: the test histogram with half a count added to every class (Krichevsky-Trofimov), so a
    # class the test images happen to lack gives a finite KL; with 1000 test images it moves KL by < 0.005
    smoothed = (counts + 0.5) / (counts.sum() + 0.5 * n_classes)
    present = q > 0
    entropy = -float((q[present] * q[present].log()).sum())
    kl = float((q[present] * (q[present] / smoothed[present]).log()).sum())
    covered = int(((q >= COVER_SHARE * p) & (p > 0)).sum())
    return {"classes_covered": float(covered), "label_entropy": entropy + 0.0, "label_kl": max(kl, 0.0)}
