"""Alternating Back-Propagation (ABP): Han, Lu, Zhu, Wu, "Alternating Back-Propagation for
Generator Network", AAAI 2017.

Model: x = g(z; W) + eps, eps ~ N(0, sigma^2 I), z ~ N(0, I_d), observed through an operator A:
y = A(x). The joint log-density, up to a constant, is

    log p(y, z; W) = -||y - A(g(z; W))||^2 / (2 sigma^2) - ||z||^2 / 2.

Training alternates, for each mini-batch of training observations:

1. **Inferential back-propagation**: l steps of Langevin dynamics on the batch's persistent
   latents (one per training image, warm-started from the previous epoch)::

       z <- z + (delta^2 / 2) * d/dz log p(y, z; W) + delta * N(0, I)

   (``langevin_noise=False`` drops the noise: alternating gradient descent, model ``abp-gd``).
   Gradients are taken with respect to z only; W is untouched
   (:func:`~genbench.inference.langevin`, on :func:`~genbench.inference.neg_log_joint`).
2. **Learning back-propagation**: one optimiser step on W for the loss
   mean_i ||y_i - A(g(z_i; W))||^2 / (2 sigma^2) at the current latents.

The loop itself (shuffle, batches, finiteness, history, BN recalibration) is
:class:`~genbench.generator_model.GeneratorModel`'s; ABP adds the persistent latents ``z_train_``
and the per-batch step above (:meth:`ABP._train_step`).

Because A sits inside the likelihood, the same code learns from clean (identity), incomplete
(masks) and indirect (random projection) data.

Inference on new observations starts from z = 0 (the prior mode: deterministic and unbiased
towards any training image) and runs ``infer_steps`` steps of the same dynamics with step size
``infer_step_size``; the generator is in eval mode, so each image's inference is independent of the
batch it is in. The lab's code used about 400 small steps at test time; on the embedded digits
100 steps of size 0.1 reach the same error as 300 steps of 0.05 at a third of the cost
(docs/abp_tuning.md, measured on a validation split of the training images). ``infer_init="prior"``
starts from a draw of N(0, I) instead, and ``restarts=R`` runs R chains per image (the first from
``infer_init``, the others from prior draws) and keeps the one of lowest final energy. They matter for
gradient-descent inference (``abp-gd``): from z = 0 alone it never moves on a generator that maps a
neighbourhood of z = 0 to a blank image with a near-zero gradient, as the generators learned from heavy
occlusion do; Langevin's noise leaves it (docs/fair_comparison.md, "Where inference starts").

Example::

    >>> from genbench.operators import Identity
    >>> model = ABP(ABPConfig(latent_dim=8, n_epochs=2)).fit(Identity().observe(x_train))
    >>> x_hat = model.reconstruct(Identity().observe(x_test))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.backbone import Generator
from genbench.generator_model import FitState, GeneratorConfig, GeneratorModel
from genbench.inference import langevin, langevin_restarts
from genbench.model import Capabilities, check_finite, frozen, progress, require
from genbench.operators import ImageShape, Observations, gaussian_nll
from genbench.space import FloatRange, IntRange
from genbench.registry import register_model

__all__ = ["ABP", "ABPConfig", "langevin"]  # langevin lives in genbench.inference


#: where inference on new observations starts (ABPConfig.infer_init)
INFER_INITS = ("zero", "prior")


@dataclass(frozen=True)
class ABPConfig(GeneratorConfig):
    """ABP hyper-parameters; defaults tuned on a validation split of the embedded 28x28 MNIST
    training digits (docs/abp_tuning.md: the grid tried, the errors and the costs)."""

    renamed_fields = {"test_steps": "infer_steps", "test_step_size": "infer_step_size"}
    added_fields = {"langevin_bn": "train", "infer_init": "zero", "restarts": 1}

    langevin_steps: int = 5       # l: Langevin steps per learning step (5 matched 10 at ~60% of the cost)
    step_size: float = 0.1        # delta: Langevin step size during training (0.05 and 0.3 were worse)
    langevin_noise: bool = True   # False: gradient descent on z ("abp-gd")
    n_epochs: int = 40            # ~150 s on 2 CPU cores for 4000 digits
    lr: float = 3e-3              # Adam on W (beat 1e-3 and 2e-3 at equal epochs)
    infer_steps: int = 100        # inference steps on new observations, from z = 0 (~0.02 s/image on CPU)
    infer_step_size: float = 0.1  # converges in ~100 steps; 0.05 needs 300
    # BatchNorm during the training-time Langevin steps: "train" (batch statistics, as the lab's code
    # and common practice: the chains of a batch are coupled through them) or "eval" (running
    # statistics: each image's chain is the per-image posterior Langevin of the paper's model).
    # The learning step always uses batch statistics. docs/abp_tuning.md measures both.
    langevin_bn: str = "train"
    # Where inference on new observations starts: "zero" (z = 0, the mode of the prior) or "prior" (a draw
    # of z ~ N(0, I) from the seeded random stream). A generator learned from heavily occluded images can
    # map z = 0 to a blank image with a near-zero gradient there: gradient descent (abp-gd) then never leaves
    # it, while Langevin's noise does (docs/fair_comparison.md, "Where inference starts").
    infer_init: str = "zero"
    # Starts per image at inference: the first from infer_init, the others from prior draws; the chain with the
    # lowest final -log p(y, z) is kept (as DCGAN's CSGM inversion keeps its best restart). Cost: x restarts.
    restarts: int = 1

    # what the tuner searches (genbench.tuning; the default lies inside every range)
    search_space = {"lr": FloatRange(1e-3, 1e-2, log=True), "n_epochs": IntRange(10, 60, step=10),
                    "langevin_steps": IntRange(1, 10), "step_size": FloatRange(0.03, 0.3, log=True),
                    "infer_step_size": FloatRange(0.03, 0.3, log=True), "restarts": IntRange(1, 4)}

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("step_size", "infer_step_size"), at_least_one=("langevin_steps", "restarts"),
                non_negative=("infer_steps",))
        if self.langevin_bn not in ("train", "eval"):
            raise ValueError(f"langevin_bn must be 'train' or 'eval', got {self.langevin_bn!r}")
        if self.infer_init not in INFER_INITS:
            raise ValueError(f"infer_init must be one of {list(INFER_INITS)}, got {self.infer_init!r}")


@contextmanager
def _bn_mode(net: nn.Module, mode: str) -> Iterator[None]:
    """BatchNorm layers in eval mode inside the block when ``mode == "eval"`` (running statistics,
    which the block does not update), restored to train mode after; a no-op for ``"train"``."""
    if mode == "train":
        yield
        return
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m in norms:
            m.train()


@register_model("abp", description="Alternating back-propagation, Langevin inference (Han et al. 2017)")
@register_model("abp-gd", description="Alternating back-propagation, gradient-descent inference (no noise)",
                langevin_noise=False, restarts=2)  # z = 0 and a prior draw (docs/fair_comparison.md)
class ABP(GeneratorModel):
    """Alternating Back-Propagation on the shared :class:`~genbench.backbone.Generator`."""

    Config = ABPConfig
    # Langevin noise by default; abp-gd (langevin_noise=False) refines it (deterministic_inference)
    capabilities = Capabilities(deterministic_inference=False, stacks=True)
    dry_run_overrides = {"n_epochs": 1, "n_epochs_by_operator": {}, "langevin_steps": 1, "infer_steps": 1}
    tiny_overrides = {"n_epochs": 40, "width": 8, "batch_size": 50, "lr": 1e-2, "langevin_steps": 5,
                      "step_size": 0.3, "infer_steps": 50, "infer_step_size": 0.1}
    config: ABPConfig
    inference_fields = ("infer_steps", "infer_step_size", "infer_init", "restarts", "eval_batch_size")
    loss_name = "ABP training loss"

    # -- learning: GeneratorModel's epoch loop with these hooks ------------------------------
    def _build_networks(self, image_shape: ImageShape, device: torch.device) -> dict[str, nn.Module]:
        cfg = self.config
        return {"generator": Generator(cfg.latent_dim, image_shape, cfg.width, device=device)}

    def _start_fit(self, obs: Observations) -> FitState:
        state = super()._start_fit(obs)
        state.g = self._fast(self.generator_)  # torch.compile'd with --compile (shares the weights)
        state.optimizer = self._adam(self.generator_.parameters())
        self.z_train_ = torch.randn(len(obs), self.config.latent_dim, device=obs.device)  # one per image
        return state

    def _train_step(self, state: FitState, obs_b: Observations, idx: Tensor) -> Tensor:
        """Langevin on the batch's persistent latents (warm start), then one Adam step on W."""
        cfg = self.config
        with frozen(self.generator_), _bn_mode(self.generator_, cfg.langevin_bn):  # gradients w.r.t. z only
            z_b = langevin(state.g, obs_b, self.z_train_[idx], sigma=cfg.sigma, steps=cfg.langevin_steps,
                           step_size=cfg.step_size, noise=cfg.langevin_noise, amp=cfg.amp)
        self.z_train_[idx] = z_b
        with self._autocast():
            x_hat = state.g(z_b)
        loss = gaussian_nll(obs_b, x_hat.float(), cfg.sigma).mean()  # learning back-propagation
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        return loss.detach()

    def _calibration_inputs(self, name: str, obs: Observations) -> Tensor:
        return self.z_train_  # the generator was trained on the persistent latents

    def _fit_desc(self) -> str:
        return f"abp fit (l={self.config.langevin_steps})"

    @classmethod
    def fit_stacked(cls, config: ABPConfig, obs: Sequence[Observations],
                    generators: Sequence[torch.Generator]) -> list[ABP]:
        """M fits of one config as one stacked ensemble (:func:`genbench.stacked.fit_stacked`)."""
        from genbench.model import MissingCapabilityError
        from genbench.stacked import fit_stacked  # the stacked loop imports this module

        if cls is not ABP:  # the stacked loop is ABP's own step: it would ignore a subclass's overrides
            raise MissingCapabilityError(f"{cls.__name__} subclasses ABP; the stacked loop would ignore its "
                                         f"overrides: define {cls.__name__}.fit_stacked to stack it")
        return fit_stacked(config, obs, generators)

    # -- inference --------------------------------------------------------------------------
    def infer(self, obs: Observations) -> Tensor:
        self._check_obs(obs)
        cfg = self.config
        zs = []
        g = self._fast(self.generator_)
        with frozen(self.generator_):  # inference needs gradients w.r.t. z only
            for batch in progress(self._batches(len(obs), cfg.eval_batch_size), desc="abp infer"):
                obs_b = obs[batch]
                shape = (len(obs_b), cfg.latent_dim)
                starts = [torch.zeros(shape, device=obs.device) if cfg.infer_init == "zero" else
                          torch.randn(shape, device=obs.device)]
                starts += [torch.randn(shape, device=obs.device) for _ in range(cfg.restarts - 1)]
                zs.append(langevin_restarts(g, obs_b, torch.stack(starts), sigma=cfg.sigma, steps=cfg.infer_steps,
                                            step_size=cfg.infer_step_size, noise=cfg.langevin_noise, amp=cfg.amp))
        z = torch.cat(zs)
        check_finite(z, "ABP inferred latents")
        return z

    @property
    def infer_steps(self) -> int:
        return self.config.infer_steps * self.config.restarts

    @property
    def deterministic_inference(self) -> bool:
        cfg = self.config
        return not cfg.langevin_noise and cfg.infer_init == "zero" and cfg.restarts == 1
