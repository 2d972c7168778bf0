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
   Gradients are taken with respect to z only; W is untouched.
2. **Learning back-propagation**: one optimiser step on W for the loss
   mean_i ||y_i - A(g(z_i; W))||^2 / (2 sigma^2) at the current latents.

Because A sits inside the likelihood, the same code learns from clean (identity), incomplete
(masks) and indirect (random projection) data.

Inference on new observations starts from z = 0 (the prior mode: deterministic and unbiased
towards any training image) and runs ``test_steps`` steps of the same dynamics with step size
``test_step_size``; the generator is in eval mode, so each image's inference is independent of the
batch it is in. The lab's code used about 400 small steps at test time; on the embedded digits
100 steps of size 0.1 reach the same error as 300 steps of 0.05 at a third of the cost
(docs/abp_tuning.md, measured on a validation split of the training images).

Example::

    >>> from genbench.operators import Identity
    >>> model = ABP(ABPConfig(latent_dim=8, n_epochs=2)).fit(Identity().observe(x_train))
    >>> x_hat = model.reconstruct(Identity().observe(x_test))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genbench.backbone import Generator, recalibrate_batchnorm
from genbench.model import (GeneratorConfig, GeneratorModel, autocast, check_finite, frozen, progress,
                            require, state_device)
from genbench.operators import Observations, gaussian_nll
from genbench.registry import register_model


@dataclass(frozen=True)
class ABPConfig(GeneratorConfig):
    """ABP hyper-parameters; defaults tuned on a validation split of the embedded 28x28 MNIST
    training digits (docs/abp_tuning.md: the grid tried, the errors and the costs)."""

    langevin_steps: int = 5       # l: Langevin steps per learning step (5 matched 10 at ~60% of the cost)
    step_size: float = 0.1        # delta: Langevin step size during training (0.05 and 0.3 were worse)
    langevin_noise: bool = True   # False: gradient descent on z ("abp-gd")
    n_epochs: int = 40            # ~150 s on 2 CPU cores for 4000 digits
    lr: float = 3e-3              # Adam on W (beat 1e-3 and 2e-3 at equal epochs)
    test_steps: int = 100         # inference steps on new observations, from z = 0 (~0.02 s/image on CPU)
    test_step_size: float = 0.1   # converges in ~100 steps; 0.05 needs 300

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("step_size", "test_step_size"), at_least_one=("langevin_steps",),
                non_negative=("test_steps",))


def langevin(g: torch.nn.Module, obs: Observations, z: Tensor, *, sigma: float, steps: int,
             step_size: float, noise: bool, amp: bool = False) -> Tensor:
    """Run ``steps`` Langevin (or, without noise, gradient) steps on z (B, d) for p(z | y).

    Only z receives gradients (``torch.autograd.grad``): the generator's weights are untouched
    (callers also freeze them, :func:`~genbench.model.frozen`, so no weight-gradient graph is
    kept). ``amp``: g's forward pass in bf16 autocast on CUDA; z and the energy stay float32.
    """
    half_step = 0.5 * step_size * step_size
    with torch.enable_grad():
        for _ in range(steps):
            z = z.detach().requires_grad_(True)
            with autocast(z.device, amp):
                x_hat = g(z)
            energy = gaussian_nll(obs, x_hat.float(), sigma).sum() + 0.5 * z.pow(2).sum()
            (grad,) = torch.autograd.grad(energy, z)
            z = z - half_step * grad
            if noise:
                z = z + step_size * torch.randn_like(z)
    return z.detach()


@register_model("abp", description="Alternating back-propagation, Langevin inference (Han et al. 2017)")
@register_model("abp-gd", description="Alternating back-propagation, gradient-descent inference (no noise)",
                langevin_noise=False)
class ABP(GeneratorModel):
    """Alternating Back-Propagation on the shared :class:`~genbench.backbone.Generator`."""

    Config = ABPConfig
    dry_run_overrides = {"n_epochs": 1, "langevin_steps": 1, "test_steps": 1}
    tiny_overrides = {"n_epochs": 40, "width": 8, "batch_size": 50, "lr": 1e-2, "langevin_steps": 5,
                      "step_size": 0.3, "test_steps": 50, "test_step_size": 0.1}
    config: ABPConfig
    inference_fields = ("test_steps", "test_step_size", "eval_batch_size")

    def fit(self, obs: Observations) -> ABP:
        self._check_obs(obs, fitting=True)
        self._set_fitted(obs)
        cfg = self.config
        n = len(obs)
        g = Generator(cfg.latent_dim, obs.image_shape, cfg.width, device=obs.device)
        g_fast = self._fast(g)  # torch.compile'd with --compile (shares g's weights)
        optimizer = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        z = torch.randn(n, cfg.latent_dim, device=obs.device)  # persistent latents, one per image
        self.history_: list[float] = []
        g.train()
        for epoch in progress(range(cfg.n_epochs), desc=f"abp fit (l={cfg.langevin_steps})"):
            total = torch.zeros((), device=obs.device)
            perm = torch.randperm(n, device=obs.device)
            for batch in self._batches(n, cfg.batch_size):
                idx = perm[batch]
                obs_b = obs[idx]
                with frozen(g):  # inferential back-propagation: gradients w.r.t. z only
                    z_b = langevin(g_fast, obs_b, z[idx], sigma=cfg.sigma, steps=cfg.langevin_steps,
                                   step_size=cfg.step_size, noise=cfg.langevin_noise, amp=cfg.amp)
                z[idx] = z_b
                with self._autocast():
                    x_hat = g_fast(z_b)
                loss = gaussian_nll(obs_b, x_hat.float(), cfg.sigma).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(idx)
            check_finite(total, f"ABP training loss at epoch {epoch + 1}")
            self.history_.append(total.item() / n)
        recalibrate_batchnorm(g, z, cfg.eval_batch_size)
        g.eval()
        self.generator_ = g
        self.z_train_ = z
        return self

    def infer(self, obs: Observations) -> Tensor:
        self._check_obs(obs)
        cfg = self.config
        zs = []
        g = self._fast(self.generator_)
        with frozen(self.generator_):  # inference needs gradients w.r.t. z only
            for batch in progress(self._batches(len(obs), cfg.eval_batch_size), desc="abp infer"):
                obs_b = obs[batch]
                z0 = torch.zeros(len(obs_b), cfg.latent_dim, device=obs.device)
                zs.append(langevin(g, obs_b, z0, sigma=cfg.sigma, steps=cfg.test_steps,
                                   step_size=cfg.test_step_size, noise=cfg.langevin_noise, amp=cfg.amp))
        z = torch.cat(zs)
        check_finite(z, "ABP inferred latents")
        return z

    @property
    def infer_steps(self) -> int:
        return self.config.test_steps

    @property
    def deterministic_inference(self) -> bool:
        return not self.config.langevin_noise

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator_.state_dict(), "image_shape": list(self.image_shape_),
                "history": torch.tensor(self.history_, device="cpu")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.image_shape_ = tuple(int(s) for s in state["image_shape"])
        g = Generator(self.config.latent_dim, self.image_shape_, self.config.width,
                      device=state_device(state["generator"]))
        g.load_state_dict(state["generator"])
        self.generator_ = g.eval()
        self.device_ = next(g.parameters()).device
        self.history_ = state["history"].tolist()
