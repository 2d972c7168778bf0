"""Held-out log-likelihood of decoder models: annealed importance sampling, its BDMC check, exact PPCA.

Every decoder model of genbench shares one density (see :mod:`genbench.inference`): z ~ N(0, I_d),
x = g(z) + eps, eps ~ N(0, sigma^2 I), observed through a linear operator y = A(x). The quantity
reported is the marginal likelihood of an observation over the n observed scalars

    log p(y) = log ∫ N(y; A g(z), sigma^2 I_n) N(z; 0, I_d) dz.

- :func:`gaussian_log_likelihood`: the normalised log N(y; A x_hat, sigma^2 I_n) per image.
- :func:`ais_log_likelihood`: annealed importance sampling (Neal, "Annealed importance sampling",
  Statistics and Computing 2001) from the prior to the posterior along the geometric path

      log f_b(z) = log N(z; 0, I) + b log p(y | z),    0 = b_0 < b_1 < ... < b_T = 1,

  with the sigmoid schedule of b and HMC transitions of Wu, Burda, Salakhutdinov & Grosse, "On the
  Quantitative Analysis of Decoder-Based Generative Models", ICLR 2017 (and their code). One chain
  starts at z_0 ~ N(0, I) and accumulates

      log w = sum_{t=1}^{T} (b_t - b_{t-1}) log p(y | z_{t-1}),   z_t ~ HMC_t(z_{t-1}) leaving f_{b_t} invariant,

  so that E[w] = p(y). The estimate per image is log mean_k w_k over K chains, a stochastic LOWER
  bound (Jensen: E[log mean w] <= log p(y)) that tightens as T grows.
- :func:`reverse_ais_log_likelihood` and :func:`bdmc`: bidirectional Monte Carlo (Grosse, Ghahramani &
  Adams, "Sandwiching the marginal likelihood using bidirectional Monte Carlo", 2015). On data
  simulated from the model, the latent z* that made y is an exact posterior sample; running the
  chain from z* with b from 1 down to 0 gives weights with E[w_rev] = 1 / p(y), hence a stochastic
  UPPER bound -log mean_k w_rev,k. The gap upper - lower bounds the error of forward AIS on such data.
- :func:`ppca_log_likelihood`: the exact value for a linear-Gaussian generator x = W z + mu
  (probabilistic PCA, Tipping & Bishop 1999), the oracle of the AIS code.

HMC (Neal, "MCMC using Hamiltonian dynamics", 2011): momentum p ~ N(0, I), ``leapfrog_steps``
leapfrog steps on U_b(z) = ||z||^2 / 2 - b log p(y | z), Metropolis correction with probability
min(1, exp(H_0 - H_L)); a proposal whose energy is not finite is rejected. The step size is adapted
per chain as in Wu et al.'s code: an exponential average of the acceptance probability (decay 0.9)
above 0.65 multiplies it by 1.02, below by 0.98, clipped to [1e-4, 0.5]. Each transition draws its
step uniformly in eps * [0.5, 1.5] (Neal 2011, sec. 5.4.2.2): on near-Gaussian posteriors a fixed
trajectory length can come back near its start, and the jitter roughly halved the spread of the log
weights on the linear test models (by up to a half). The adaptation looks at the chain's own past,
as in Wu et al.'s code (which adapts on the past acceptance of all chains): strictly, AIS is only
exact for transitions fixed in advance. The effect is small: with 1024 chains on the 2-D tanh test
model the estimates sat 0.009 +- 0.006 nats above the grid value (fixed steps: -0.004 +- 0.005); the
BDMC gap measures whatever is left.

Accuracy: with exact transitions the log weights still spread, std(log w)^2 ~ c / T (c ~ 10 on the
2-D linear test model, more for narrower posteriors and larger d); the estimate of one image then has
a standard error ~ std(log w) / sqrt(K) and a downward bias ~ var(log w) / (2K). ``log_w`` is
returned so that callers can report that spread.

Batching and randomness: chains of all images run together in batches of ``batch_size`` images x
``n_chains`` chains (``batch_size * n_chains`` latents through ``decode`` at a time). Each image has
its own CPU ``torch.Generator``, seeded by one draw from the caller's ``generator``; its initial
latents, momenta and Metropolis uniforms come from that stream (drawn in blocks, then moved to the
data's device), so the result of an image depends neither on the batch size nor on the device's RNG.

``decode`` must treat every latent on its own: put a generator with BatchNorm in ``eval()`` mode,
or batch statistics couple the chains and every weight is wrong.

Example::

    >>> g.eval()
    >>> with frozen(g):
    ...     res = ais_log_likelihood(g, obs, latent_dim=g.latent_dim, sigma=0.3,
    ...                              generator=torch.Generator().manual_seed(0))
    >>> res.log_p.shape, res.log_w.shape     # (N,), (N, n_chains); nats per image
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from genbench.model import DivergenceError
from genbench.operators import ImageShape, Observations, Operator, gaussian_nll

Decoder = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class AISConfig:
    """Defaults of the AIS estimator (the keyword defaults of :func:`ais_log_likelihood`).

    ``n_steps`` = T annealing steps (T + 1 distributions), ``n_chains`` = K chains per image,
    ``leapfrog_steps`` and the initial ``step_size`` of HMC (10 and 0.01 in Wu et al.'s code; 0.1
    here: at b ~ 0 the target is the prior N(0, I), whose good step is ~0.5, and the adaptation
    shrinks it by 2 % per step as the posterior narrows), ``batch_size`` images per batch.
    T = 1000 and K = 16 follow Wu et al.'s MNIST setting (16 chains; their final numbers used up to
    10^4 steps). Cost: (T - 1) * leapfrog_steps + 1 forward+backward passes of ``decode`` per latent,
    i.e. per image x chain; memory: ``batch_size * n_chains`` latents through ``decode`` at once.
    """

    n_steps: int = 1000
    n_chains: int = 16
    leapfrog_steps: int = 10
    step_size: float = 0.1
    target_acceptance: float = 0.65
    batch_size: int = 64


_DEFAULTS = AISConfig()
_STEP_MIN, _STEP_MAX = 1e-4, 0.5      # Wu et al.'s clip of the adapted step size
_STEP_UP, _STEP_DOWN = 1.02, 0.98     # multiplicative adaptation per HMC step
_ACCEPT_DECAY = 0.9                   # exponential average of the acceptance probability
_JITTER = 0.5                         # each transition's step size is uniform in eps * [1 - j, 1 + j]
_DRAW_BLOCK = 64                      # HMC steps of random numbers drawn per image at a time


@dataclass(frozen=True)
class AISResult:
    """``log_p`` (N,): the estimate in nats per image; ``log_w`` (N, K): the log importance weights
    of the K chains (forward: log w, E[w] = p(y); reverse: log w_rev, E[w_rev] = 1 / p(y));
    ``acceptance``: the mean HMC acceptance probability over images, chains and steps."""

    log_p: Tensor
    log_w: Tensor
    acceptance: float


@dataclass(frozen=True)
class BDMCResult:
    """BDMC on ``n`` images simulated from the model: ``lower`` (n,) forward AIS, ``upper`` (n,)
    reverse AIS, ``gap`` = mean(upper - lower) in nats per image; ``obs`` the simulated observations
    and ``z`` (n, d) the latents that made them (exact posterior samples)."""

    lower: Tensor
    upper: Tensor
    gap: float
    obs: Observations
    z: Tensor


# ------------------------------------------------------------------------------ likelihoods
def n_observed(obs: Observations) -> Tensor:
    """Observed scalars per image, (N,) float on ``obs.device``: mask sum x channels for masks,
    the length K of y for projections, C * H * W for the identity."""
    return obs.observed_per_image()


def gaussian_log_likelihood(obs: Observations, x_hat: Tensor, sigma: float) -> Tensor:
    """The normalised log N(y; A x_hat, sigma^2 I_n) per image, (N,), over the n observed entries::

        -||y - A(x_hat)||^2 / (2 sigma^2) - n / 2 * log(2 pi sigma^2)

    i.e. ``-gaussian_nll`` plus the normalising constant that :func:`~genbench.operators.gaussian_nll`
    leaves out (so that values for different operators and sigmas are comparable densities)."""
    return -gaussian_nll(obs, x_hat, sigma) - 0.5 * n_observed(obs) * math.log(2 * math.pi * sigma * sigma)


def ppca_log_likelihood(W: Tensor, mu: Tensor, sigma: float, obs: Observations, *,
                        batch_size: int = 256) -> Tensor:
    """Exact log p(y) per image, (N,), of the linear-Gaussian generator x = W z + mu, z ~ N(0, I_d)
    (W (D, d), mu (D,), D = C * H * W) observed through the linear operator of ``obs`` with noise
    sigma on the n observed scalars: y ~ N(A mu, W_o W_o^T + sigma^2 I_n), W_o = A W (the observed
    rows of W for masks, the whole W for the identity, A W for projections).

    With the d x d matrix M = I_d + W_o^T W_o / sigma^2 (Woodbury and the determinant lemma) and
    r = y - A mu::

        log p(y) = -1/2 [ n log(2 pi sigma^2) + log det M
                          + (||r||^2 - r^T W_o M^{-1} W_o^T r / sigma^2) / sigma^2 ]

    costs O(n d^2) per image. Occluded entries are zero rows of W_o and of r, so every image of a
    masked batch uses the same formula. The linear algebra runs in float64; the result has y's dtype.
    """
    shape = obs.image_shape
    if W.dim() != 2 or W.shape[0] != math.prod(shape):
        raise ValueError(f"ppca_log_likelihood: W must have shape (D, d) = ({math.prod(shape)}, d) for images "
                         f"{shape}, got {tuple(W.shape)}")
    if tuple(mu.shape) != (W.shape[0],):
        raise ValueError(f"ppca_log_likelihood: mu must have shape ({W.shape[0]},), got {tuple(mu.shape)}")
    _check_positive(sigma=sigma, batch_size=batch_size)
    W, mu = W.to(obs.device, obs.y.dtype), mu.to(obs.device, obs.y.dtype)
    cols = W.T.reshape(W.shape[1], *shape)  # the d columns of W as images
    parts = []
    for start in range(0, len(obs), batch_size):
        part = obs[start:start + batch_size]
        parts.append(_ppca_part(cols, mu.view(1, *shape), sigma, part))
    return torch.cat(parts).to(obs.y.dtype)


def _ppca_part(cols: Tensor, mu: Tensor, sigma: float, obs: Observations) -> Tensor:
    n, d = len(obs), cols.shape[0]
    if obs.mask is None:  # one W_o for the batch
        w_t = obs.op.apply(cols, None).flatten(1).double()                                 # (d, n_obs)
        r = obs.y.flatten(1).double() - obs.op.apply(mu, None).flatten(1).double()          # (B, n_obs)
        gram = (w_t @ w_t.T).expand(n, d, d)
        b = r @ w_t.T                                                                       # (B, d)
    else:  # W_o per image: A with the image's mask applied to every column
        masks = obs.mask.repeat_interleave(d, 0)
        w_t = obs.op.apply(cols.repeat(n, 1, 1, 1), masks).reshape(n, d, -1).double()      # (B, d, n_obs)
        r = obs.y.flatten(1).double() - obs.op.apply(mu.expand(n, *mu.shape[1:]), obs.mask).flatten(1).double()
        gram = w_t @ w_t.transpose(1, 2)
        b = (w_t @ r.unsqueeze(2)).squeeze(2)
    s2 = sigma * sigma
    chol = torch.linalg.cholesky(torch.eye(d, dtype=gram.dtype, device=gram.device) + gram / s2)  # (B, d, d)
    logdet = 2.0 * torch.diagonal(chol, dim1=1, dim2=2).log().sum(1)
    m_inv_b = torch.cholesky_solve(b.unsqueeze(2), chol).squeeze(2)
    quad = (r.pow(2).sum(1) - (b * m_inv_b).sum(1) / s2) / s2
    return -0.5 * (n_observed(obs).double() * math.log(2 * math.pi * s2) + logdet + quad)


# ------------------------------------------------------------------------------ the schedule
def sigmoid_schedule(n_steps: int, radius: float = 4.0) -> Tensor:
    """b_0 = 0 < ... < b_T = 1, (T + 1,) float64: T + 1 points evenly spaced in [-radius, radius]
    through the logistic sigmoid, rescaled to [0, 1] (Wu et al.'s ``get_schedule``; radius 4). It
    spends small increments near the prior and the posterior, where log p(y | z) changes fastest
    relative to the step. T = 1 gives [0, 1]: plain importance sampling from the prior."""
    if n_steps == 1:
        return torch.tensor([0.0, 1.0], dtype=torch.float64)
    s = torch.sigmoid(torch.linspace(-radius, radius, n_steps + 1, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


# ------------------------------------------------------------------------------ AIS
def ais_log_likelihood(decode: Decoder, obs: Observations, *, latent_dim: int, sigma: float,
                       n_steps: int = _DEFAULTS.n_steps, n_chains: int = _DEFAULTS.n_chains,
                       leapfrog_steps: int = _DEFAULTS.leapfrog_steps, step_size: float = _DEFAULTS.step_size,
                       target_acceptance: float = _DEFAULTS.target_acceptance,
                       generator: torch.Generator | None = None,
                       batch_size: int = _DEFAULTS.batch_size) -> AISResult:
    """Forward AIS estimate of log p(y) per image (a stochastic lower bound), see the module docstring.

    ``decode``: differentiable (B, d) -> (B, C, H, W), e.g. a frozen generator (freeze its weights,
    :func:`~genbench.model.frozen`, so that no weight gradients are built); it runs in float32 on
    ``obs.device``. ``generator``: a CPU generator (None: torch's global CPU RNG, seeded by the
    caller); one draw per image from it seeds that image's stream. Returns :class:`AISResult`.
    """
    _check_positive(latent_dim=latent_dim, sigma=sigma, n_steps=n_steps, n_chains=n_chains,
                    leapfrog_steps=leapfrog_steps, step_size=step_size, batch_size=batch_size)
    seeds = _image_seeds(len(obs), generator)
    betas = sigmoid_schedule(n_steps).tolist()
    return _run(decode, obs, None, latent_dim, seeds, betas, sigma=sigma, n_chains=n_chains,
                leapfrog_steps=leapfrog_steps, step_size=step_size, target_acceptance=target_acceptance,
                batch_size=batch_size)


def reverse_ais_log_likelihood(decode: Decoder, obs: Observations, z_exact: Tensor, *, sigma: float,
                               n_steps: int = _DEFAULTS.n_steps, n_chains: int = _DEFAULTS.n_chains,
                               leapfrog_steps: int = _DEFAULTS.leapfrog_steps,
                               step_size: float = _DEFAULTS.step_size,
                               target_acceptance: float = _DEFAULTS.target_acceptance,
                               generator: torch.Generator | None = None,
                               batch_size: int = _DEFAULTS.batch_size) -> AISResult:
    """Reverse AIS from exact posterior samples ``z_exact`` (N, d) (the latents that generated
    simulated data): every chain of image i starts at z_exact[i] and runs the schedule backwards,
    b from 1 to 0, accumulating log w_rev = sum_t (b_{t-1} - b_t) log p(y | z) with E[w_rev] = 1/p(y).
    ``log_p`` = -log mean_k w_rev,k is a stochastic UPPER bound on log p(y); ``log_w`` holds log w_rev.
    Only valid when z_exact really is a posterior sample, i.e. on data simulated from this model.
    """
    if z_exact.dim() != 2 or z_exact.shape[0] != len(obs):
        raise ValueError(f"reverse AIS: z_exact must have shape (N, d) = ({len(obs)}, d), one exact "
                         f"posterior sample per image, got {tuple(z_exact.shape)}")
    _check_positive(sigma=sigma, n_steps=n_steps, n_chains=n_chains, leapfrog_steps=leapfrog_steps,
                    step_size=step_size, batch_size=batch_size)
    seeds = _image_seeds(len(obs), generator)
    betas = sigmoid_schedule(n_steps).flip(0).tolist()
    res = _run(decode, obs, z_exact.to(obs.device, torch.float32), z_exact.shape[1], seeds, betas,
               sigma=sigma, n_chains=n_chains, leapfrog_steps=leapfrog_steps, step_size=step_size,
               target_acceptance=target_acceptance, batch_size=batch_size)
    return AISResult(log_p=-res.log_p, log_w=res.log_w, acceptance=res.acceptance)


def bdmc(decode: Decoder, op: Operator, n: int, *, latent_dim: int, image_shape: Sequence[int], sigma: float,
         n_steps: int = _DEFAULTS.n_steps, n_chains: int = _DEFAULTS.n_chains,
         leapfrog_steps: int = _DEFAULTS.leapfrog_steps, step_size: float = _DEFAULTS.step_size,
         target_acceptance: float = _DEFAULTS.target_acceptance,
         generator: torch.Generator | None = None, batch_size: int = _DEFAULTS.batch_size,
         device: torch.device | str = "cpu") -> BDMCResult:
    """Bidirectional Monte Carlo on ``n`` observations simulated from the model itself::

        z* ~ N(0, I_d),  x = decode(z*),  y = A x + sigma * eps on the observed entries (0 where occluded)

    (masks drawn from ``op``'s own generator, as :meth:`~genbench.operators.Operator.observe` does;
    the noise, like z*, from ``generator``), then forward AIS (lower bound) and reverse AIS from z*
    (upper bound). ``gap`` = mean(upper - lower) nats per image: how far forward AIS at these settings
    can be from the truth on data like the model's own (Grosse et al. 2015; Wu et al. 2017 sec. 4).
    """
    _check_positive(n=n, latent_dim=latent_dim, sigma=sigma)
    _check_generator(generator)
    shape: ImageShape = tuple(int(s) for s in image_shape)
    op.check_image_shape(shape)
    z = torch.randn(n, latent_dim, generator=generator).to(device)
    with torch.no_grad():
        x = decode(z).float()
    _check_decoded(x, len(z), shape)
    mask = op.draw_mask(n, shape)
    mask = None if mask is None else mask.to(device)
    op.to(device)
    with torch.no_grad():
        clean = op.apply(x, mask)
        noise = sigma * torch.randn(clean.shape, generator=generator).to(device)
        y = clean + (noise if mask is None else noise * mask)
    obs = Observations(y=y, op=op, mask=mask, image_shape=shape)
    settings = {"sigma": sigma, "n_steps": n_steps, "n_chains": n_chains, "leapfrog_steps": leapfrog_steps,
                "step_size": step_size, "target_acceptance": target_acceptance, "generator": generator,
                "batch_size": batch_size}
    lower = ais_log_likelihood(decode, obs, latent_dim=latent_dim, **settings).log_p
    upper = reverse_ais_log_likelihood(decode, obs, z, **settings).log_p
    return BDMCResult(lower=lower, upper=upper, gap=float((upper - lower).mean()), obs=obs, z=z)


# ------------------------------------------------------------------------------ the chains
def _run(decode: Decoder, obs: Observations, z_start: Tensor | None, latent_dim: int, seeds: list[int],
         betas: list[float], *, sigma: float, n_chains: int, leapfrog_steps: int, step_size: float,
         target_acceptance: float, batch_size: int) -> AISResult:
    """Anneal along ``betas`` in batches of images; z_start (N, d) or None (draw from the prior)."""
    log_w, accept_sum = [], 0.0
    for start in range(0, len(obs), batch_size):
        stop = min(start + batch_size, len(obs))
        streams = _Streams(seeds[start:stop], n_chains, latent_dim, obs.device)
        z0 = streams.prior() if z_start is None else z_start[start:stop].repeat_interleave(n_chains, 0)
        w, acc = _anneal(_Target(decode, obs[start:stop], n_chains, sigma), z0, betas, streams,
                         leapfrog_steps=leapfrog_steps, step_size=step_size, target_acceptance=target_acceptance)
        log_w.append(w.view(stop - start, n_chains))
        accept_sum += acc * (stop - start)
    log_w_all = torch.cat(log_w)                                       # (N, K) float64
    log_p = torch.logsumexp(log_w_all, 1) - math.log(n_chains)
    return AISResult(log_p=log_p.float(), log_w=log_w_all.float(), acceptance=accept_sum / max(len(obs), 1))


class _Target:
    """log p(y | z) and its gradient in z for B images x K chains (image-major: rows i*K .. i*K+K-1)."""

    def __init__(self, decode: Decoder, obs: Observations, n_chains: int, sigma: float) -> None:
        self.decode, self.sigma = decode, sigma
        self.obs = obs[torch.arange(len(obs), device=obs.device).repeat_interleave(n_chains)]
        self._checked = False

    def __call__(self, z: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            x_hat = self.decode(z).float()
            if not self._checked:
                _check_decoded(x_hat, len(z), self.obs.image_shape)
                self._checked = True
            ll = gaussian_log_likelihood(self.obs, x_hat, self.sigma)   # (B*K,)
            (grad,) = torch.autograd.grad(ll.sum(), z)
        return ll.detach(), grad


def _anneal(target: _Target, z: Tensor, betas: list[float], streams: _Streams, *, leapfrog_steps: int,
            step_size: float, target_acceptance: float) -> tuple[Tensor, float]:
    """log w (B*K,) float64 along ``betas`` from z (B*K, d), and the mean acceptance probability.
    The weight update at step t uses the state before transition t; the transition at the last b
    would not change the weights and is skipped."""
    ll, grad = target(z)
    if not torch.isfinite(ll).all():
        raise DivergenceError("AIS: log p(y | z) is not finite at the chains' starting latents "
                              "(check sigma and the decoder's output)")
    log_w = torch.zeros(len(z), dtype=torch.float64, device=z.device)
    eps = torch.full((len(z),), step_size, device=z.device)
    avg_accept = torch.full((len(z),), target_acceptance, device=z.device)
    accept_sum = torch.zeros((), dtype=torch.float64, device=z.device)
    for t in range(1, len(betas)):
        log_w += (betas[t] - betas[t - 1]) * ll.double()
        if t == len(betas) - 1:
            break
        momentum, uniform, jitter = streams.step()
        step = eps * (1.0 + _JITTER * (2.0 * jitter - 1.0))
        z, ll, grad, alpha = _hmc(target, z, ll, grad, betas[t], step, momentum, uniform, leapfrog_steps)
        avg_accept = _ACCEPT_DECAY * avg_accept + (1 - _ACCEPT_DECAY) * alpha
        eps = torch.where(avg_accept > target_acceptance, eps * _STEP_UP, eps * _STEP_DOWN).clamp(_STEP_MIN, _STEP_MAX)
        accept_sum += alpha.double().mean()
    if not torch.isfinite(log_w).all():
        raise DivergenceError("AIS: a log importance weight is not finite")
    return log_w, float(accept_sum) / max(len(betas) - 2, 1)


def _hmc(target: _Target, z: Tensor, ll: Tensor, grad: Tensor, beta: float, eps: Tensor, momentum: Tensor,
         uniform: Tensor, leapfrog_steps: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One HMC transition leaving f_beta invariant, per chain step size ``eps`` (M,).
    U(z) = ||z||^2 / 2 - beta log p(y | z); returns the new z, log p(y | z), its gradient and the
    acceptance probability (M,). ``ll``/``grad`` are those of ``z`` (cached between transitions)."""
    def potential(z: Tensor, ll: Tensor) -> Tensor:
        return 0.5 * z.pow(2).sum(1) - beta * ll

    e = eps.unsqueeze(1)                                                # (M, 1)
    h0 = potential(z, ll) + 0.5 * momentum.pow(2).sum(1)
    z_new, ll_new, grad_new = z, ll, grad
    p = momentum - 0.5 * e * (z - beta * grad)
    for step in range(leapfrog_steps):
        z_new = z_new + e * p
        ll_new, grad_new = target(z_new)
        if step < leapfrog_steps - 1:
            p = p - e * (z_new - beta * grad_new)
    p = p - 0.5 * e * (z_new - beta * grad_new)
    h1 = potential(z_new, ll_new) + 0.5 * p.pow(2).sum(1)
    log_alpha = torch.nan_to_num(h0 - h1, nan=-math.inf).clamp(max=0.0)  # a diverged proposal is rejected
    accept = uniform.log() < log_alpha
    keep = accept.unsqueeze(1)
    return (torch.where(keep, z_new, z), torch.where(accept, ll_new, ll), torch.where(keep, grad_new, grad),
            log_alpha.exp())


class _Streams:
    """The random numbers of B images x K chains, one CPU generator per image (seeded by ``seeds``),
    so an image's chains do not depend on which batch it is in. Momenta and uniforms are drawn
    ``_DRAW_BLOCK`` HMC steps at a time per image, then moved to ``device``."""

    def __init__(self, seeds: list[int], n_chains: int, dim: int, device: torch.device) -> None:
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.k, self.d, self.device = n_chains, dim, device
        self.block: tuple[Tensor, Tensor] | None = None
        self.i = _DRAW_BLOCK

    def prior(self) -> Tensor:
        """z_0 ~ N(0, I), (B*K, d); the first draw of every stream."""
        return torch.cat([torch.randn(self.k, self.d, generator=g) for g in self.gens]).to(self.device)

    def step(self) -> tuple[Tensor, Tensor, Tensor]:
        """Momentum (B*K, d) ~ N(0, I), Metropolis uniforms (B*K,) and step-size jitter uniforms
        (B*K,) for one HMC step."""
        if self.i == _DRAW_BLOCK:
            normal = torch.stack([torch.randn(_DRAW_BLOCK, self.k, self.d, generator=g) for g in self.gens], 1)
            uniform = torch.stack([torch.rand(_DRAW_BLOCK, 2, self.k, generator=g) for g in self.gens], 2)
            self.block = (normal.flatten(1, 2).to(self.device), uniform.flatten(2).to(self.device))
            self.i = 0
        normal, uniform = self.block
        self.i += 1
        return normal[self.i - 1], uniform[self.i - 1, 0], uniform[self.i - 1, 1]


# ------------------------------------------------------------------------------ checks
def _image_seeds(n: int, generator: torch.Generator | None) -> list[int]:
    _check_generator(generator)
    return torch.randint(0, 2 ** 62, (n,), generator=generator).tolist()


def _check_generator(generator: torch.Generator | None) -> None:
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"AIS draws its random numbers on the CPU and moves them: pass a CPU "
                         f"torch.Generator, got one on {generator.device}")


def _check_decoded(x_hat: Tensor, n: int, image_shape: ImageShape) -> None:
    if tuple(x_hat.shape) != (n, *image_shape):
        raise ValueError(f"decode must map latents (B, d) to images (B, C, H, W) = ({n}, "
                         f"{', '.join(map(str, image_shape))}), got shape {tuple(x_hat.shape)}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"AIS: {name} must be positive, got {value}")
