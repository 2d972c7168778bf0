"""One Bernoulli-Bernoulli RBM layer and its training by contrastive divergence (CD-k / PCD-k),
the building block of :class:`baselines.rbm.RBM` and :class:`baselines.dbn.DBN` (the model,
its recovery and the measurements are documented in :mod:`baselines.rbm`).

**The layer.** Visible units v in [0, 1]^D, hidden units h in {0, 1}^H, weight W (H, D), visible
bias b (D,), hidden bias c (H,)::

    E(v, h) = -b.v - c.h - h.W v,   p(h_j = 1 | v) = sig(W v + c)_j,   p(v_i = 1 | h) = sig(W^T h + b)_i
    F(v)    = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus((W v + c)_j)   (the free energy)

:func:`up` and :func:`down` are the mean-field passes through a stack of layers (a DBN).

**Training** (:func:`train_layer`; Hinton, "A practical guide to training restricted Boltzmann
machines", UTML TR 2010-003; PCD: Tieleman, ICML 2008): per mini-batch, the positive statistics
v0 p(h|v0)^T against the negative ones of k Gibbs steps from h ~ p(h|v0) (CD) or from persistent
chains (PCD); batch-mean updates with momentum and L2 weight decay on W; an ``impute`` callback
supplies each batch's visibles when the images are not fully observed (stochastic EM's E-step).

**Speed.** At small batches the cost is torch's per-call overhead (~1 us per elementwise call,
~2.5 us per tiny matmul on CPU), so a mini-batch makes few calls (:class:`_PackedCD`): W, b and c
are packed in one matrix so that biases ride along in the products and one rank-B update per
phase changes all three; the monitor's reconstructions share a product with the chains' down
pass; one uniform draw per batch serves every sample (u < p); buffers and views are made once,
the shuffled data is gathered once per block of batches, and nothing syncs with the host
inside an epoch. The steps are exactly the plain rule's with the same random numbers
(tests/test_rbm.py). Measured against BernoulliRBM (``python benchmarks/rbm_vs_sklearn.py``,
1 thread each, PCD-1, batch 10): digits 64 hidden 2.2x, mnist5k 100 hidden 2.5x faster per
epoch at equal or better held-out reconstruction error and pseudo-likelihood; batch 10 costs
about 30 us per mini-batch on digits, of which ~10 the three small matmuls, ~5 the two
updates, ~5 the uniforms (torch.rand ~3 ns/float) and the rest one call each for sigmoids,
samples and the monitor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from genbench.model import check_finite, progress

if TYPE_CHECKING:
    from baselines.rbm import RBMConfig


@dataclass
class RBMLayer:
    """One Bernoulli-Bernoulli RBM: weight (H, D), visible_bias (D,), hidden_bias (H,)."""

    weight: Tensor
    visible_bias: Tensor
    hidden_bias: Tensor

    @classmethod
    def init(cls, v: Tensor, n_hidden: int, visible_bias_init: str = "data") -> RBMLayer:
        """W ~ N(0, 0.01^2), c = 0, b = logit(mean of v) (Hinton's guide, Sec. 8) or 0."""
        p = v.mean(0).clamp(1e-3, 1 - 1e-3)
        b = torch.logit(p) if visible_bias_init == "data" else torch.zeros_like(p)
        return cls(0.01 * torch.randn(n_hidden, v.shape[1], device=v.device), b,
                   torch.zeros(n_hidden, device=v.device))

    def hidden_probs(self, v: Tensor) -> Tensor:
        return torch.sigmoid(v @ self.weight.T + self.hidden_bias)  # (B, H)

    def visible_probs(self, h: Tensor) -> Tensor:
        return torch.sigmoid(h @ self.weight + self.visible_bias)   # (B, D)

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -b.v - sum_j softplus((W v + c)_j), shape (B,)."""
        return -v @ self.visible_bias - F.softplus(v @ self.weight.T + self.hidden_bias).sum(1)

    def gibbs(self, h: Tensor, steps: int, sample_visibles: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``steps`` Gibbs steps h -> v -> h: the last visibles, p(h|v) and hidden sample."""
        for _ in range(steps):
            v = self.visible_probs(h)
            v = torch.bernoulli(v) if sample_visibles else v
            ph = self.hidden_probs(v)
            h = torch.bernoulli(ph)
        return v, ph, h

    def pseudo_likelihood(self, v: Tensor, index: Tensor) -> Tensor:
        """scikit-learn's ``score_samples``: D log sig(F(v~) - F(v)) with v~ = v with unit
        ``index[i]`` of row i flipped (v -> 1 - v), shape (B,)."""
        rows = torch.arange(len(v), device=v.device)
        flipped = v.clone()
        flipped[rows, index] = 1 - flipped[rows, index]
        return v.shape[1] * F.logsigmoid(self.free_energy(flipped) - self.free_energy(v))

    def state(self) -> dict[str, Tensor]:
        return {"weight": self.weight, "visible_bias": self.visible_bias, "hidden_bias": self.hidden_bias}


Imputer = Callable[[RBMLayer, Tensor], Tensor]  # (layer, batch indices) -> imputed visibles (B, D)

_CHUNK = 1 << 20  # training visibles gathered per epoch in blocks of about this many floats (4 MiB)


class _PackedCD:
    """CD-k / PCD-k updates of one layer with few torch calls per mini-batch (module docstring).

    The parameters live in one packed matrix theta = [[W, c], [b, *]] of shape (H + 1, D + 1);
    with a constant 1 appended to visibles and hiddens, ``[v, 1] @ theta[:H].T = v W^T + c``,
    ``[h, 1] @ theta[:, :D] = h W + b`` and the rank-B update ``theta += s [h, 1]^T [v, 1]``
    changes W, b and c at once (the corner * is never read). ``layer``'s tensors are views of
    theta, so an imputer sees the current parameters. Scratch buffers are allocated once:

    - ``hid`` (2B, H + 1): rows :B p(h | v0), rows B: the negative chains' hidden states, so one
      product gives the monitor's mean-field reconstructions and the chains' visibles;
    - ``vis`` (2B, D + 1): those reconstructions (rows :B) and the negative visibles (rows B:);
    - ``neg_hid`` (B, H + 1): p(h | v_neg); ``noise``: the batch's uniforms, drawn in one call,
      a sample being ``u < p`` (torch.bernoulli costs several times more per call on CPU);
    - ``err`` (B, D + 1): squared reconstruction errors summed over the epoch (one host sync
      per epoch, in :func:`train_layer`).
    """

    def __init__(self, layer: RBMLayer, cfg: RBMConfig, n: int) -> None:
        """``n``: the number of training visibles (sizes the gather buffer)."""
        (h, d), b, dev = layer.weight.shape, cfg.batch_size, layer.weight.device
        self.cfg, self.h, self.d, self.b = cfg, h, d, b
        self.lr, self.decay, self.persistent = cfg.lr, cfg.weight_decay, cfg.persistent
        self.theta = torch.zeros(h + 1, d + 1, device=dev)
        self.layer = RBMLayer(self.theta[:h, :d], self.theta[h, :d], self.theta[:h, d])
        for live, init in zip(self.layer.state().values(), layer.state().values()):
            live.copy_(init)
        self.to_hidden, self.to_visible = self.theta[:h].T, self.theta[:, :d]  # (D+1, H), (H+1, D)
        momentum_used = cfg.momentum > 0 or (cfg.final_momentum > 0 and cfg.n_epochs > cfg.momentum_switch_epoch)
        self.velocity = torch.zeros_like(self.theta) if momentum_used else None
        self.velocity_w = None if self.velocity is None else self.velocity[:h, :d]
        self.hid = torch.ones(2 * b, h + 1, device=dev)
        self.hid[b:, :h] = 0                                            # PCD chains start at h = 0
        self.vis = torch.ones(2 * b, d + 1, device=dev)
        self.vis_d = self.vis[:, :d]
        self.neg_hid = torch.ones(b, h + 1, device=dev)
        self.err, self.diff = torch.zeros(b, d + 1, device=dev), torch.zeros(b, d + 1, device=dev)
        n_vis_noise = cfg.cd_k if cfg.sample_visibles else 0
        self.noise = torch.empty(b, cfg.cd_k * h + n_vis_noise * d, device=dev)
        self.data = torch.ones(min(max(1, _CHUNK // (b * (d + 1))), -(-n // b)) * b, d + 1, device=dev)
        self._views: dict[int, tuple] = {}

    def views(self, m: int) -> tuple:
        """The buffers' views for a batch of m <= B rows (built once per m)."""
        if m not in self._views:
            h, d, b, k = self.h, self.d, self.b, self.cfg.cd_k
            mc = b if self.cfg.persistent else m                        # negative chains
            noise = self.noise[:mc]
            u_hid = [noise[:, i * h:(i + 1) * h] for i in range(k)]
            u_vis = [noise[:, k * h + i * d:k * h + (i + 1) * d] for i in range(k if self.cfg.sample_visibles else 0)]
            self._views[m] = (self.hid[:m, :h], self.hid[:m].T, self.vis[:m], self.diff[:m], self.err[:m],
                              self.hid[b:b + mc], self.hid[b:b + mc, :h], self.vis[b:b + mc],
                              self.vis[b:b + mc, :d], self.neg_hid[:mc, :h], self.neg_hid[:mc].T,
                              u_hid, u_vis, -self.lr / mc)
        return self._views[m]

    def step(self, va: Tensor, momentum: float) -> None:
        """One CD-k / PCD-k update from the visibles va (m, D + 1) whose last column is 1."""
        mm, k, m = torch.mm, self.cfg.cd_k, va.shape[0]  # shape, not len(): len() is a Python-level call
        (pos, pos_t, recon, diff, err, chain_a, chain, neg_a, neg, neg_hid, neg_hid_t, u_hid, u_vis,
         s_neg) = self._views.get(m) or self.views(m)
        self.noise.uniform_()
        mm(va, self.to_hidden, out=pos).sigmoid_()                      # p(h | v0)
        if not self.persistent:                                          # CD: chains start at h ~ p(h | v0)
            torch.lt(u_hid[-1], pos, out=chain)
        mm(self.hid, self.to_visible, out=self.vis_d).sigmoid_()       # reconstructions and p(v | h_chain)
        torch.sub(recon, va, out=diff)
        err.addcmul_(diff, diff)
        for i in range(k):
            if i > 0:
                mm(chain_a, self.to_visible, out=neg).sigmoid_()
            if u_vis:                                                    # sampled negative visibles
                neg.gt_(u_vis[i])
            mm(neg_a, self.to_hidden, out=neg_hid).sigmoid_()           # p(h | v_neg)
            if i < k - 1 or self.persistent:
                torch.lt(u_hid[i], neg_hid, out=chain)
        # theta += lr (<h v>_data - <h v>_chains - weight_decay W), through the velocity if any
        s_pos, target = self.lr / m, self.theta if self.velocity is None else self.velocity.mul_(momentum)
        if self.decay and self.velocity is None:
            self.layer.weight.mul_(1 - self.lr * self.decay)
        target.addmm_(pos_t, va, alpha=s_pos).addmm_(neg_hid_t, neg_a, alpha=s_neg)
        if self.velocity is not None:
            if self.decay:
                self.velocity_w.add_(self.layer.weight, alpha=-self.lr * self.decay)
            self.theta.add_(self.velocity)

    def epoch(self, v: Tensor, impute: Imputer | None, momentum: float) -> Tensor:
        """One pass over v (N, D) in random mini-batches; returns the summed squared
        reconstruction error (a 0-d tensor, not synced)."""
        self.err.zero_()
        perm = torch.randperm(len(v), device=v.device)
        if impute is None:  # gather the shuffled visibles once per block, the batches are views
            for idx in perm.split(len(self.data)):
                block = self.data[:len(idx)]
                torch.index_select(v, 0, idx, out=block[:, :self.d])
                for va in block.split(self.b):
                    self.step(va, momentum)
        else:
            for idx in perm.split(self.b):
                va = self.data[:len(idx)]
                va[:, :self.d] = impute(self.layer, idx)
                self.step(va, momentum)
        return self.err.sum()

    def unpack(self) -> RBMLayer:
        """The trained layer with contiguous copies of W, b and c."""
        return RBMLayer(*(t.clone(memory_format=torch.contiguous_format) for t in self.layer.state().values()))


def train_layer(v: Tensor, n_hidden: int, cfg: RBMConfig, *, impute: Imputer | None = None,
                desc: str = "rbm") -> tuple[RBMLayer, list[float]]:
    """Train one RBM on visibles v (N, D) in [0, 1] by CD-k / PCD-k (module docstring); with
    ``impute`` each batch's visibles come from ``impute(layer, idx)`` (stochastic EM's E-step).
    Returns the layer and the per-epoch mean squared mean-field reconstruction error."""
    cd = _PackedCD(RBMLayer.init(v, n_hidden, cfg.visible_bias_init), cfg, len(v))
    history: list[float] = []
    with torch.no_grad():  # the gradients are the CD statistics, computed by hand
        for epoch in progress(range(cfg.n_epochs), desc=desc):
            momentum = cfg.momentum if epoch < cfg.momentum_switch_epoch else cfg.final_momentum
            error = cd.epoch(v, impute, momentum)
            check_finite(error, f"{desc} reconstruction error at epoch {epoch + 1}")
            history.append(error.item() / v.numel())
    return cd.unpack(), history


def up(layers: list[RBMLayer], v: Tensor) -> Tensor:
    """Mean-field up pass: hidden probabilities of the top layer."""
    for layer in layers:
        v = layer.hidden_probs(v)
    return v


def down(layers: list[RBMLayer], h: Tensor) -> Tensor:
    """Mean-field down pass: visible probabilities of the bottom layer."""
    for layer in reversed(layers):
        h = layer.visible_probs(h)
    return h
