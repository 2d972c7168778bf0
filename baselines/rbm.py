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
  ``infer_steps`` times by v_miss <- p(v | p(h|v))_miss (mean-field, no sampling, so the
  observed pixels never change and inference is deterministic);
- any other operator (random projections): ``infer_projection_steps`` steps of projected gradient
  descent on  J(v) = ||y - A(2v - 1)||^2 / (2 sigma^2) + F(v)  over [0, 1]^D, from the naive
  inverse clipped to [0, 1], with a per-image step (initially ``infer_step_size``) that grows
  by 1.25 after a step that lowers J and halves (rejecting the step) otherwise, so J never
  increases. The likelihood is the shared
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

**Speed**: the layer and its CD training, packed to make few torch calls per mini-batch, are in
:mod:`baselines.rbm_layer` (measured there against scikit-learn's ``BernoulliRBM``).

Shapes: layers hold ``weight`` (H, D), ``visible_bias`` (D,), ``hidden_bias`` (H,) in float32 on
the observations' device; ``infer`` -> (N, H), ``decode`` (N, H) -> (N, C, H, W) in [-1, 1].

Example::

    >>> from genbench.operators import PixelMask
    >>> op = PixelMask(p=0.5, seed=0)
    >>> model = RBM(RBMConfig(latent_dim=100)).fit(op.observe(x_train))
    >>> x_hat = model.reconstruct(op.observe(x_test))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from baselines.rbm_layer import Imputer, RBMLayer, down, train_layer, up
from genbench.model import Capabilities, LatentModel, ModelConfig, check_finite
from genbench.operators import Observations, gaussian_nll
from genbench.space import Choice, FloatRange, IntRange
from genbench.registry import register_model

__all__ = ["RBM", "RBMConfig", "RBMLayer", "clamped_mean_field", "projected_gradient", "projection_objective",
           "train_layer"]  # RBMLayer and train_layer live in baselines.rbm_layer


@dataclass(frozen=True)
class RBMConfig(ModelConfig):
    """RBM hyper-parameters. lr, batch size and the momentum schedule are Hinton & Salakhutdinov's
    MNIST settings; CD-3, weight decay 3e-3, 50 epochs and sigma were chosen on a validation split
    of the embedded training digits (module docstring)."""

    renamed_fields = {"recovery_iters": "infer_steps", "projection_iters": "infer_projection_steps",
                      "projection_step_size": "infer_step_size"}

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
    infer_steps: int = 20             # mean-field iterations for masks (converged by ~10)
    infer_projection_steps: int = 200  # projected-gradient steps for other operators
    infer_step_size: float = 0.01     # initial per-image projected-gradient step (then adapted)
    sigma: float = 0.3                # observation noise std in the projection objective
    em_iters: int = 3                 # E-step recovery iterations per batch when learning from corrupted data
    sample_steps: int = 1000          # Gibbs steps of sample()
    eval_batch_size: int = 1000

    # what the tuner searches (genbench.tuning; the default lies inside every range; DBNConfig inherits it)
    search_space = {"lr": FloatRange(0.01, 0.3, log=True), "n_epochs": IntRange(20, 100, step=10),
                    "cd_k": IntRange(1, 10), "weight_decay": FloatRange(1e-4, 1e-2, log=True),
                    "persistent": Choice((False, True))}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lr", "sigma", "infer_step_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{type(self).__name__} {name} must be > 0, got {getattr(self, name)}")
        for name in ("n_epochs", "batch_size", "cd_k", "sample_steps", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{type(self).__name__} {name} must be >= 1, got {getattr(self, name)}")
        for name in ("infer_steps", "infer_projection_steps", "em_iters", "momentum_switch_epoch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{type(self).__name__} {name} must be >= 0, got {getattr(self, name)}")
        for name in ("momentum", "final_momentum", "weight_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{type(self).__name__} {name} must be in [0, 1), got {getattr(self, name)}")
        if self.visible_bias_init not in ("data", "zero"):
            raise ValueError(f"visible_bias_init must be 'data' or 'zero', got {self.visible_bias_init!r}")


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
    capabilities = Capabilities(learns_null_space=False)  # mean-field and gradient descent only: no sampling at inference
    loss_name = "mean-field reconstruction error (per layer)"  # what history_ holds, per epoch
    dry_run_overrides = {"n_epochs": 1, "infer_steps": 1, "infer_projection_steps": 1, "em_iters": 1,
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
        step = torch.full((len(v),), self.config.infer_step_size, device=v.device)

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
        ``iters`` defaults to ``infer_steps`` / ``infer_projection_steps``."""
        cfg = self.config
        if obs.mask is not None:
            v_obs = (obs.y.flatten(1) + 1) / 2
            iters = cfg.infer_steps if iters is None else iters
            return clamped_mean_field(layers, v, v_obs, _keep(obs), iters), step
        iters = cfg.infer_projection_steps if iters is None else iters
        return projected_gradient(layers[0], obs, v, step, sigma=cfg.sigma, iters=iters)

    def _complete_all(self, layers: list[RBMLayer], obs: Observations, v: Tensor) -> Tensor:
        """:meth:`_complete` with the default iterations, in batches of ``eval_batch_size``."""
        step = torch.full((len(v),), self.config.infer_step_size, device=v.device)
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
            self._last_infer_steps = self.config.infer_steps
            v = self.pixel_mean_.expand(len(obs), -1)
        else:
            self._last_infer_steps = self.config.infer_projection_steps
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

    def density(self) -> Any:
        """A binary density (:class:`~genbench.density.Density` ``binary``): log p of binarised images,
        the top RBM's log Z by AIS (Salakhutdinov & Murray 2008; :mod:`baselines.rbm_ais`), exact for
        the RBM given log Z, the importance-weighted lower bound for the DBN. log Z is estimated once per
        fitted model and setting, from the first call's generator."""
        from baselines.rbm_ais import binarize_images, stack_log_likelihood, top_log_z
        from genbench.density import Density

        self._check_fitted()
        memo: dict[tuple[int, int], Any] = self.__dict__.setdefault("_log_z_memo", {})

        @torch.no_grad()
        def binary(x: Tensor, generator: torch.Generator, *, n_steps: int, n_runs: int, n_samples: int) -> Tensor:
            if (n_steps, n_runs) not in memo:
                memo[n_steps, n_runs] = top_log_z(self.layers_, self.pixel_mean_, generator=generator,
                                                  n_steps=n_steps, n_runs=n_runs)
            return stack_log_likelihood(self.layers_, binarize_images(x.to(self.device_)),
                                        memo[n_steps, n_runs].log_z, generator=generator, n_samples=n_samples)

        how = "exact given log Z" if len(self.layers_) == 1 else "an importance-weighted lower bound"
        return Density(binary=binary, note=f"it models binary pixels: log p of binarised images (pixel > 0.5), "
                                           f"log Z by AIS, {how}")

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
        """Iterations of the latest recovery: 0 fully observed, ``infer_steps`` for masks,
        ``infer_projection_steps`` otherwise (``infer_steps`` before any)."""
        return getattr(self, "_last_infer_steps", self.config.infer_steps)

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
