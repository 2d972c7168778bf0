"""Restricted Boltzmann machine with Bernoulli visible and hidden units, trained by contrastive
divergence (Hinton, "A practical guide to training restricted Boltzmann machines", UTML TR
2010-003; PCD: Tieleman, ICML 2008). :mod:`baselines.dbn` stacks these layers into a DBN.

**Model.** Pixel intensities v = (x + 1) / 2 in [0, 1]^D are the visible units' probabilities,
h in {0, 1}^H the hidden units (H = ``latent_dim``), W (H, D), visible bias b (D,), hidden bias
c (H,)::

    E(v, h) = -b.v - c.h - h.W v,   p(h_j = 1 | v) = sig(W v + c)_j,   p(v_i = 1 | h) = sig(W^T h + b)_i
    F(v)    = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus((W v + c)_j)   (the free energy)

**Learning** (CD-k, or PCD-k with ``persistent``): per mini-batch, the positive statistics
v0 p(h|v0)^T against the negative ones of k Gibbs steps started from h ~ p(h|v0) (CD) or from the
persistent chains (PCD, ``batch_size`` chains); the negative visibles are probabilities (Hinton's
advice) or, with ``sample_visibles``, binary samples (scikit-learn's ``BernoulliRBM``). Updates
are batch means with momentum (``momentum`` for the first ``momentum_switch_epoch`` epochs, then
``final_momentum``) and L2 weight decay on W; W ~ N(0, 0.01^2), c = 0, b = logit of the mean
training intensity (``visible_bias_init="data"``) or 0. ``history_`` holds the per-epoch mean
squared mean-field reconstruction error of each layer (the guide's training monitor).

**Recovery** (``infer`` = p(h|v) of the recovered v; ``reconstruct`` = the recovered image):

- all pixels observed (identity): the mean-field down pass p(v | p(h|v)) (one pass, 0 steps);
- masks: observed pixels clamped, missing ones started at the training mean image and updated
  ``recovery_iters`` times by v_miss <- p(v | p(h|v))_miss (mean-field, no sampling, so the
  observed pixels never change and inference is deterministic);
- any other operator (random projections): ``projection_iters`` steps of projected gradient
  descent on  J(v) = ||y - A(2v - 1)||^2 / (2 sigma^2) + F(v)  over [0, 1]^D, from the naive
  inverse clipped to [0, 1], with a per-image step that grows by 1.25 after a step that lowers J
  and halves (rejecting the step) otherwise, so J never increases. The likelihood is the shared
  :func:`~genbench.operators.gaussian_nll`.

**Learning from incomplete or indirect data** (stochastic EM): every training image keeps a
persistent imputation, started as above (masks: missing pixels at the observed per-pixel
mean; projections: the clipped naive inverse). Before each CD step the batch's imputations are
refined by ``em_iters`` recovery iterations with the current model (E-step, warm-started) and
the CD step learns from the imputed visibles (M-step); a last E-step of the full recovery gives
the images the next layer of a DBN learns from. ``sample(n)`` runs ``sample_steps`` Gibbs steps
from uniform random binary visibles and returns the last p(v|h). ``infer_steps`` reports the
iterations of the latest recovery (0 when fully observed).

**Measured** (embedded MNIST, 3500 training / 500 validation digits split off the training
images, one seed, 1 CPU thread; validation mae on the [0, 1] scale, PCA's in brackets):
reconstruction 0.111 (0.091) at d = 10, 0.089 (0.072) at d = 20, 0.045 (0.030) at d = 100; 50 %
missing pixels, clean-trained, 0.133 (0.096), 0.098 (0.078), 0.057 (0.047); fit 2-7 s. Learned
from the 50 %-masked images (stochastic EM) at d = 20: 0.103 on the occluded validation pixels
(with em_iters = 0, i.e. learning from the mean-filled images: 0.117). Random projections
(K = 200 of 784, clean-trained, d = 20): 0.016 against PCA's 0.075 (F's visible biases act as a
weighted L1 prior on the non-negative digits); K = 50: 0.17 against 0.086. The defaults were
picked there: CD-3 and weight decay 3e-3 inpaint better than CD-1 and 2e-4 at d = 10-20 and
more epochs help only d = 100; mean-field inpainting converges in about 10 iterations; sigma =
0.3 beat 0.1 and 1.0 at K = 200. PCD with momentum 0.9 and lr 0.1 diverges (use momentum 0 or a
smaller lr, as scikit-learn does).

Limitation: a projection shared by all images never shows the data in A's null space, so
learning from projections (K = 200) stays near the naive inverse (validation mae 0.34); learn
from clean or masked images and recover projections with the learned prior instead.

Reference check (tests/test_rbm.py): under scikit-learn's update rule (``persistent=True``,
``cd_k=1``, ``sample_visibles=True``, no momentum or weight decay, ``visible_bias_init="zero"``)
the held-out reconstruction error and pseudo-likelihood match ``sklearn.neural_network.BernoulliRBM``
within a few per cent at equal hidden units, epochs, batch size and learning rate.

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

Shapes: layers hold ``weight`` (H, D), ``visible_bias`` (D,), ``hidden_bias`` (H,) in float32 on
the observations' device; ``infer`` -> (N, H), ``decode`` (N, H) -> (N, C, H, W) in [-1, 1].

Example::

    >>> from genbench.operators import PixelMask
    >>> op = PixelMask(p=0.5, seed=0)
    >>> model = RBM(RBMConfig(latent_dim=100)).fit(op.observe(x_train))
    >>> x_hat = model.reconstruct(op.observe(x_test))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from genbench.model import LatentModel, ModelConfig, check_finite, progress
from genbench.operators import Observations, gaussian_nll
from genbench.registry import register_model


@dataclass(frozen=True)
class RBMConfig(ModelConfig):
    """RBM hyper-parameters. lr, batch size and the momentum schedule are Hinton & Salakhutdinov's
    MNIST settings; CD-3, weight decay 3e-3, 50 epochs and sigma were chosen on a validation split
    of the embedded training digits (module docstring)."""

    latent_dim: int = 10              # hidden units (of the top layer for a DBN)
    lr: float = 0.1                   # on batch-mean gradients (= scikit-learn's learning_rate)
    n_epochs: int = 50
    batch_size: int = 100
    cd_k: int = 3                     # Gibbs steps per update (CD-k / PCD-k)
    persistent: bool = False          # PCD: negative chains persist across updates
    sample_visibles: bool = False     # negative-phase visibles: binary samples instead of probabilities
    momentum: float = 0.5
    final_momentum: float = 0.9
    momentum_switch_epoch: int = 5    # epochs at ``momentum`` before ``final_momentum``
    weight_decay: float = 3e-3        # L2 on W only
    visible_bias_init: Literal["data", "zero"] = "data"
    recovery_iters: int = 20          # mean-field iterations for masks (converged by ~10)
    projection_iters: int = 200       # projected-gradient steps for other operators
    projection_step_size: float = 0.01  # initial per-image step (then adapted)
    sigma: float = 0.3                # observation noise std in the projection objective
    em_iters: int = 3                 # E-step recovery iterations per batch when learning from corrupted data
    sample_steps: int = 1000          # Gibbs steps of sample()
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lr", "sigma", "projection_step_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{type(self).__name__} {name} must be > 0, got {getattr(self, name)}")
        for name in ("n_epochs", "batch_size", "cd_k", "sample_steps", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{type(self).__name__} {name} must be >= 1, got {getattr(self, name)}")
        for name in ("recovery_iters", "projection_iters", "em_iters", "momentum_switch_epoch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{type(self).__name__} {name} must be >= 0, got {getattr(self, name)}")
        for name in ("momentum", "final_momentum", "weight_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{type(self).__name__} {name} must be in [0, 1), got {getattr(self, name)}")
        if self.visible_bias_init not in ("data", "zero"):
            raise ValueError(f"visible_bias_init must be 'data' or 'zero', got {self.visible_bias_init!r}")


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


def clamped_mean_field(layers: list[RBMLayer], v: Tensor, v_obs: Tensor, keep: Tensor, iters: int) -> Tensor:
    """Inpainting: ``iters`` rounds of v_miss <- down(up(v))_miss with the observed entries
    (keep = 1) clamped to v_obs. All (B, D)."""
    v = keep * v_obs + (1 - keep) * v
    for _ in range(iters):
        v = keep * v_obs + (1 - keep) * down(layers, up(layers, v))
    return v


def projection_objective(layer: RBMLayer, obs: Observations, v: Tensor, sigma: float) -> Tensor:
    """J(v) = ||y - A(2v - 1)||^2 / (2 sigma^2) + F(v), shape (B,)."""
    x_hat = (2 * v - 1).view(len(v), *obs.image_shape)
    return gaussian_nll(obs, x_hat, sigma) + layer.free_energy(v)


def projected_gradient(layer: RBMLayer, obs: Observations, v: Tensor, step: Tensor, *, sigma: float,
                       iters: int) -> tuple[Tensor, Tensor]:
    """``iters`` projected-gradient steps on :func:`projection_objective` over [0, 1]^D with
    per-image steps (B,): accepted steps grow by 1.25, rejected ones halve, so J never rises.
    Returns the new v (B, D) and steps (B,)."""
    for _ in range(iters):
        with torch.enable_grad():
            v_ = v.detach().requires_grad_(True)
            j = projection_objective(layer, obs, v_, sigma)
            (grad,) = torch.autograd.grad(j.sum(), v_)
        with torch.no_grad():
            candidate = (v - step[:, None] * grad).clamp(0, 1)
            accept = projection_objective(layer, obs, candidate, sigma) <= j
            v = torch.where(accept[:, None], candidate, v)
            step = torch.where(accept, 1.25 * step, 0.5 * step)
    return v.detach(), step


def _fully_observed(obs: Observations) -> bool:
    """No mask, image-shaped y and A(y) = y: the observations are the images themselves."""
    if obs.mask is not None or tuple(obs.y.shape[1:]) != tuple(obs.image_shape):
        return False
    return torch.equal(obs.apply(obs.y[:8]), obs.y[:8])


def _keep(obs: Observations) -> Tensor:
    """(B, D) float, 1 = observed (the mask shared by the channels)."""
    return obs.mask.expand(-1, obs.image_shape[0], -1, -1).flatten(1).to(obs.y.dtype)


@register_model("rbm", description="Bernoulli RBM, CD-k (k=3) with momentum (Hinton 2010); clamped mean-field "
                                   "inpainting, free-energy projection recovery, stochastic EM")
class RBM(LatentModel):
    """Bernoulli-Bernoulli RBM; :class:`baselines.dbn.DBN` is the same model with more layers."""

    Config = RBMConfig
    dry_run_overrides = {"n_epochs": 1, "recovery_iters": 1, "projection_iters": 1, "em_iters": 1,
                         "sample_steps": 1}
    tiny_overrides = {"n_epochs": 100, "batch_size": 20, "lr": 0.1, "weight_decay": 0.0}
    config: RBMConfig

    def hidden_sizes(self) -> tuple[int, ...]:
        """Hidden units per layer, bottom to top (the last is ``latent_dim``)."""
        return (self.config.latent_dim,)

    # -- learning ---------------------------------------------------------------------------
    def fit(self, obs: Observations) -> RBM:
        self._check_obs(obs, fitting=True)
        self._set_fitted(obs)
        cfg = self.config
        v, impute = self._initial_visibles(obs)
        self.layers_: list[RBMLayer] = []
        self.history_: list[list[float]] = []
        for i, n_hidden in enumerate(self.hidden_sizes()):
            layer, history = train_layer(v, n_hidden, cfg, impute=impute if i == 0 else None,
                                         desc=f"{type(self).__name__.lower()} layer {i + 1} (CD-{cfg.cd_k})")
            if i == 0:
                if impute is not None:  # final E-step with the trained layer, as at test time
                    v = self._complete_all([layer], obs, v)
                self.pixel_mean_ = v.mean(0)
            self.layers_.append(layer)
            self.history_.append(history)
            v = layer.hidden_probs(v)  # greedy: the next layer learns from these probabilities
        return self

    def _initial_visibles(self, obs: Observations) -> tuple[Tensor, Imputer | None]:
        """Training visibles (N, D) and, unless fully observed, stochastic EM's E-step."""
        if _fully_observed(obs):
            return (obs.y.flatten(1) + 1) / 2, None
        if obs.mask is not None:  # missing pixels start at the observed per-pixel mean
            keep, v_obs = _keep(obs), (obs.y.flatten(1) + 1) / 2
            fill = (keep * v_obs).sum(0) / keep.sum(0).clamp_min(1.0)
            v = keep * v_obs + (1 - keep) * fill
        else:
            v = self._naive_start(obs)
        step = torch.full((len(v),), self.config.projection_step_size, device=v.device)

        def impute(layer: RBMLayer, idx: Tensor) -> Tensor:
            v[idx], step[idx] = self._complete([layer], obs[idx], v[idx], step[idx], self.config.em_iters)
            return v[idx]

        return v, impute

    @staticmethod
    def _naive_start(obs: Observations) -> Tensor:
        return ((obs.naive_inverse().flatten(1) + 1) / 2).clamp(0, 1)

    def _complete(self, layers: list[RBMLayer], obs: Observations, v: Tensor, step: Tensor,
                  iters: int | None = None) -> tuple[Tensor, Tensor]:
        """Recover the visibles (B, D) of a batch that is not fully observed, starting from v:
        clamped mean-field for masks, projected gradient (per-image steps (B,)) otherwise.
        ``iters`` defaults to ``recovery_iters`` / ``projection_iters``."""
        cfg = self.config
        if obs.mask is not None:
            v_obs = (obs.y.flatten(1) + 1) / 2
            iters = cfg.recovery_iters if iters is None else iters
            return clamped_mean_field(layers, v, v_obs, _keep(obs), iters), step
        iters = cfg.projection_iters if iters is None else iters
        return projected_gradient(layers[0], obs, v, step, sigma=cfg.sigma, iters=iters)

    def _complete_all(self, layers: list[RBMLayer], obs: Observations, v: Tensor) -> Tensor:
        """:meth:`_complete` with the default iterations, in batches of ``eval_batch_size``."""
        step = torch.full((len(v),), self.config.projection_step_size, device=v.device)
        return torch.cat([self._complete(layers, obs[b], v[b], step[b])[0]
                          for b in self._batches(len(obs), self.config.eval_batch_size)])

    # -- recovery ---------------------------------------------------------------------------
    @torch.no_grad()
    def _recover(self, obs: Observations) -> tuple[Tensor, bool]:
        """The recovered visibles (N, D) and whether the images were fully observed."""
        self._check_obs(obs)
        if _fully_observed(obs):
            self._last_infer_steps = 0
            return (obs.y.flatten(1) + 1) / 2, True
        if obs.mask is not None:
            self._last_infer_steps = self.config.recovery_iters
            v = self.pixel_mean_.expand(len(obs), -1)
        else:
            self._last_infer_steps = self.config.projection_iters
            v = self._naive_start(obs)
        v = self._complete_all(self.layers_, obs, v)
        check_finite(v, f"{type(self).__name__} recovered images")
        return v, False

    @torch.no_grad()
    def infer(self, obs: Observations) -> Tensor:
        v, _ = self._recover(obs)
        return up(self.layers_, v)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        self._check_fitted()
        return (2 * down(self.layers_, z.to(self.device_)) - 1).view(-1, *self.image_shape_)

    @torch.no_grad()
    def reconstruct(self, obs: Observations) -> Tensor:
        """Fully observed: the mean-field down pass of p(h|v); otherwise the recovered image
        (masks: the observed pixels are returned exactly as observed)."""
        v, whole = self._recover(obs)
        v = down(self.layers_, up(self.layers_, v)) if whole else v
        x_hat = (2 * v - 1).view(-1, *self.image_shape_).clamp(-1.0, 1.0)
        if obs.mask is not None:
            x_hat = torch.where(obs.mask.expand_as(x_hat) > 0, obs.y, x_hat)
        return x_hat

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``sample_steps`` Gibbs steps of the top RBM from uniform binary visibles, then the
        last p(v|h) passed down the lower layers (mean-field)."""
        self._check_fitted()
        top = self.layers_[-1]
        v = torch.bernoulli(torch.full((n, top.weight.shape[1]), 0.5, device=self.device_))
        _, _, h = top.gibbs(torch.bernoulli(top.hidden_probs(v)), self.config.sample_steps, True)
        return self._pass_down(top.visible_probs(h))

    def _pass_down(self, v_top: Tensor) -> Tensor:
        """Top-layer visibles (n, D_top) passed down to images in [-1, 1]."""
        return (2 * down(self.layers_[:-1], v_top) - 1).view(-1, *self.image_shape_).clamp(-1.0, 1.0)

    @property
    def infer_steps(self) -> int:
        """Iterations of the latest recovery: 0 fully observed, ``recovery_iters`` for masks,
        ``projection_iters`` otherwise (``recovery_iters`` before any)."""
        return getattr(self, "_last_infer_steps", self.config.recovery_iters)

    @property
    def deterministic_inference(self) -> bool:
        return True  # mean-field and gradient descent only: no sampling at inference

    # -- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {f"layer{i}.{k}": t for i, layer in enumerate(self.layers_)
                                 for k, t in layer.state().items()}
        return {**state, "pixel_mean": self.pixel_mean_,
                "image_shape": torch.tensor(self.image_shape_, device="cpu"),  # host metadata
                "history": torch.tensor(self.history_, dtype=torch.float64, device="cpu")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sizes = self.hidden_sizes()
        found = tuple(state[f"layer{i}.weight"].shape[0] for i in range(len(sizes)) if f"layer{i}.weight" in state)
        if found != sizes:
            raise ValueError(f"{type(self).__name__} state has hidden layers {found}, the config asks for {sizes}")
        self.layers_ = [RBMLayer(**{k: state[f"layer{i}.{k}"] for k in ("weight", "visible_bias", "hidden_bias")})
                        for i in range(len(sizes))]
        self.pixel_mean_ = state["pixel_mean"]
        self.image_shape_ = tuple(int(s) for s in state["image_shape"])
        self.history_ = state["history"].tolist()
        self.device_ = self.pixel_mean_.device
