"""Out-of-domain detection: does the model tell held-out images of its data set from images it has never
seen the like of? AUROC and AUPR of ``test`` (in-domain, label 0) against ``negative`` (out-of-domain,
label 1) images, ranked by a per-image score where larger means "less like the training data": the
negative log-likelihood where the model has one (``tasks/likelihood.py``), the reconstruction error
otherwise (``tasks/reconstruction.py``). scikit-learn computes both (``roc_auc_score``,
``average_precision_score``). 1 is a perfect separator, 0.5 is chance (AUPR's chance level is the share
of negatives); below 0.5 the model explains the out-of-domain images *better* than its own test images.

The metrics need per-image scores of two splits, so their task computes them on the ``negative`` split
from what its ``test`` split left in :attr:`genbench.task.EvalContext.cache`.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import Tensor

from genbench.metrics import Metric
from genbench.registry import register_metric

OOD_AUROC = "ood_auroc"
OOD_AUPR = "ood_aupr"
OOD_METRICS = (OOD_AUROC, OOD_AUPR)


def ood_scores(in_domain: Tensor, out_of_domain: Tensor) -> dict[str, float]:
    """AUROC and AUPR of out-of-domain (positive) against in-domain images, from per-image scores (larger =
    more out-of-domain). Raises ValueError on non-finite scores or an empty side."""
    a = in_domain.detach().double().cpu().numpy().ravel()
    b = out_of_domain.detach().double().cpu().numpy().ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"out-of-domain AUROC needs images on both sides, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("out-of-domain AUROC got a non-finite per-image score")
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    scores = np.r_[a, b]
    return {OOD_AUROC: float(roc_auc_score(labels, scores)), OOD_AUPR: float(average_precision_score(labels, scores))}


register_metric(Metric(OOD_AUROC, "AUROC of negative vs test images by the model's per-image score (1 = perfect, "
                       "0.5 = chance)", higher_is_better=True, unit="1 = perfect, 0.5 = chance", decimals=3,
                       needs="model", ranks_negative=True))
register_metric(Metric(OOD_AUPR, "average precision of negative vs test images by the model's per-image score",
                       higher_is_better=True, unit="1 = perfect", decimals=3, needs="model", ranks_negative=True))
