"""Tests of the importance-weighted bound (genbench/iwae.py) on a linear-Gaussian generator, where
the exact log-likelihood and the exact posterior are known in closed form:

    z ~ N(0, I_d),  x = W z + mu,  y = A x + N(0, sigma^2 I_n)
    => y ~ N(A mu, A W W^T A^T + sigma^2 I),   z | y ~ N(S (AW)^T (y - A mu) / sigma^2, S),
       S = (I + (AW)^T (AW) / sigma^2)^{-1}.

The encoder of genbench is diagonal, so the exact posterior is one only when (AW)^T (AW) is diagonal:
W with orthogonal columns under the identity, or a single latent (d = 1) under any operator.
Float64 throughout; well under a second on 2 CPU cores."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from genbench.ais import ppca_log_likelihood
from genbench.iwae import iwae_log_likelihood, vae_iwae
from genbench.operators import Identity, Observations, PixelMask, RandomProjection

SHAPE = (1, 3, 3)
D = math.prod(SHAPE)
SIGMA = 0.5


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run single-threaded


def _linear_model(d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """W (D, d) with orthogonal columns of norms 1.5, 1.0, 0.5, ... and an offset mu (D,)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
    scales = torch.linspace(1.5, 0.5, d, dtype=torch.float64) if d > 1 else torch.ones(1, dtype=torch.float64)
    return q * scales, 0.3 * torch.randn(D, generator=g, dtype=torch.float64)


def _images(W: torch.Tensor, mu: torch.Tensor, n: int, seed: int = 1) -> torch.Tensor:
    """n draws x = W z + mu + sigma eps from the model, as images (n, *SHAPE)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W.shape[1], generator=g, dtype=torch.float64)
    return (z @ W.T + mu + SIGMA * torch.randn(n, D, generator=g, dtype=torch.float64)).view(n, *SHAPE)


def _decoder(W: torch.Tensor, mu: torch.Tensor):
    return lambda z: (z @ W.T + mu).view(-1, *SHAPE)


def _exact_posterior(W: torch.Tensor, mu: torch.Tensor, obs: Observations) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, variance) (N, d) of z | y, valid when (A W)^T (A W) is diagonal (per image)."""
    n, d = len(obs), W.shape[1]
    cols = [obs.apply(W[:, j].view(1, *SHAPE).expand(n, *SHAPE)).flatten(1) for j in range(d)]
    aw = torch.stack(cols, 2)                                                   # (N, n_obs, d)
    r = obs.y.flatten(1) - obs.apply(mu.view(1, *SHAPE).expand(n, *SHAPE)).flatten(1)
    gram = aw.transpose(1, 2) @ aw                                              # (N, d, d)
    off = gram - torch.diag_embed(torch.diagonal(gram, dim1=1, dim2=2))
    assert off.abs().max() < 1e-10, "test setup: the exact posterior must be diagonal"
    var = 1.0 / (1.0 + torch.diagonal(gram, dim1=1, dim2=2) / SIGMA ** 2)
    mean = var * (aw.transpose(1, 2) @ r.unsqueeze(2)).squeeze(2) / SIGMA ** 2
    return mean, var


def _exact_encoder(W, mu):
    def encode(obs):
        mean, var = _exact_posterior(W, mu, obs)
        return mean, var.log()
    return encode


def _poor_encoder(W, mu):
    """The exact posterior with its mean shifted by 0.5 and its variance halved (too narrow, as
    amortised posteriors tend to be)."""
    def encode(obs):
        mean, var = _exact_posterior(W, mu, obs)
        return mean + 0.5, (0.5 * var).log()
    return encode


def _exact_identity_log_p(W, mu, obs):
    cov = W @ W.T + SIGMA ** 2 * torch.eye(D, dtype=torch.float64)
    return MultivariateNormal(mu, covariance_matrix=cov).log_prob(obs.y.flatten(1))


def _iwae(encode, W, mu, obs, k, seed=0, **kw):
    return iwae_log_likelihood(encode, _decoder(W, mu), obs, sigma=SIGMA, k=k,
                               generator=torch.Generator().manual_seed(seed), **kw)


@pytest.fixture(scope="module")
def setup():
    W, mu = _linear_model(d=3)
    return W, mu, Identity().observe(_images(W, mu, n=200))


@pytest.mark.parametrize("k", [1, 7, 100])
def test_exact_posterior_gives_the_exact_log_likelihood_for_any_k(setup, k):
    W, mu, obs = setup
    exact = _exact_identity_log_p(W, mu, obs)
    bound = _iwae(_exact_encoder(W, mu), W, mu, obs, k)
    assert bound.shape == (len(obs),)
    torch.testing.assert_close(bound, exact, atol=1e-4, rtol=0)


@pytest.mark.parametrize("make_op", [lambda: PixelMask(p=0.4, seed=3),
                                     lambda: RandomProjection(k=5, image_shape=SHAPE, seed=3).double()],
                         ids=["mask", "projection"])
def test_exact_posterior_through_operators_normalises_over_the_observed_entries(make_op):
    """d = 1, so the exact posterior is diagonal for any operator; the oracle is the project's PPCA
    formula over the n_obs observed scalars (mask sum x channels; K for projections)."""
    W, mu = _linear_model(d=1)
    obs = make_op().observe(_images(W, mu, n=12))
    exact = ppca_log_likelihood(W, mu, SIGMA, obs)
    bound = _iwae(_exact_encoder(W, mu), W, mu, obs, k=5)
    torch.testing.assert_close(bound, exact, atol=1e-4, rtol=0)


def test_poor_encoder_bound_is_below_exact_and_rises_with_k(setup):
    W, mu, obs = setup
    exact = _exact_identity_log_p(W, mu, obs).mean().item()
    means = [_iwae(_poor_encoder(W, mu), W, mu, obs, k, seed=k).mean().item() for k in (1, 10, 100)]
    # gaps to exact over 5 seeds: 2.38 +- 0.13, 1.17 +- 0.09, 0.61 +- 0.02 nats (200 images)
    assert means[0] < means[1] < means[2] < exact, (means, exact)
    assert exact - means[0] > 1.0   # the test's encoder is poor enough to matter


def test_k1_is_the_elbo(setup):
    """E[L_1] = E_q[log p(y|z)] + E_q[log p(z) - log q(z|y)], in closed form for the linear model:
    log N(y; W m + mu, sigma^2 I) - tr(W^T W diag(v)) / (2 sigma^2) - KL(N(m, v) || N(0, I)).
    The average over 20 copies of each image is checked to 4 standard errors."""
    W, mu, obs = setup
    mean, var = _exact_posterior(W, mu, obs)
    mean, var = mean + 0.5, 0.5 * var                                            # the poor encoder's q
    resid = obs.y.flatten(1) - mean @ W.T - mu
    expected_lik = (-resid.pow(2).sum(1) / (2 * SIGMA ** 2) - (var * (W * W).sum(0)).sum(1) / (2 * SIGMA ** 2)
                    - D / 2 * math.log(2 * math.pi * SIGMA ** 2))
    kl = 0.5 * (mean.pow(2) + var - 1 - var.log()).sum(1)
    elbo = (expected_lik - kl).mean().item()
    copies = 20
    many = obs[torch.arange(len(obs)).repeat(copies)]
    l1 = _iwae(_poor_encoder(W, mu), W, mu, many, k=1).view(copies, len(obs))
    centred = l1 - l1.mean(0)                                                     # per-image spread only
    se = (centred.pow(2).sum() / (l1.numel() - len(obs))).sqrt().item() / math.sqrt(l1.numel())
    assert abs(l1.mean().item() - elbo) < 4 * se, (l1.mean().item(), elbo, se)


def test_same_seed_same_bound_and_batch_size_does_not_matter(setup):
    W, mu, obs = setup
    enc = _poor_encoder(W, mu)
    a = _iwae(enc, W, mu, obs, k=10, seed=5)
    torch.testing.assert_close(_iwae(enc, W, mu, obs, k=10, seed=5), a, atol=0, rtol=0)
    torch.testing.assert_close(_iwae(enc, W, mu, obs, k=10, seed=5, batch_size=3), a, atol=1e-12, rtol=0)
    torch.testing.assert_close(_iwae(enc, W, mu, obs[:7], k=10, seed=5, batch_size=25), a[:7], atol=1e-12, rtol=0)
    assert not torch.equal(_iwae(enc, W, mu, obs, k=10, seed=6), a)


def test_vae_iwae_on_a_fitted_vae(tiny):
    """The convenience wrapper on a (barely) fitted genbench VAE, through a mask: finite, (N,),
    reproducible, and on average tighter with more samples."""
    from baselines.vae import VAE, VAEConfig

    model = VAE(VAEConfig(latent_dim=2, n_epochs=1, width=8, batch_size=25)).fit(Identity().observe(tiny.train))
    obs = PixelMask(p=0.5, seed=0).observe(tiny.test)
    l1, l100 = (vae_iwae(model, obs, k, torch.Generator().manual_seed(0)) for k in (1, 100))
    assert l1.shape == (len(obs),) and bool(torch.isfinite(l1).all())
    assert l100.mean() > l1.mean()
    torch.testing.assert_close(vae_iwae(model, obs, 100, torch.Generator().manual_seed(0)), l100, atol=0, rtol=0)


def test_bad_inputs_explain(setup):
    W, mu, obs = setup
    enc = _exact_encoder(W, mu)
    with pytest.raises(ValueError, match="k must be positive"):
        _iwae(enc, W, mu, obs, k=0)
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        iwae_log_likelihood(enc, _decoder(W, mu), obs, sigma=SIGMA, k=2, generator=None)
    with pytest.raises(ValueError, match="decode must map latents"):
        iwae_log_likelihood(enc, lambda z: z, obs, sigma=SIGMA, k=2, generator=torch.Generator())
    with pytest.raises(ValueError, match="encode must return"):
        iwae_log_likelihood(lambda o: (torch.zeros(len(o), 3), torch.zeros(len(o), 2)), _decoder(W, mu), obs,
                            sigma=SIGMA, k=2, generator=torch.Generator())
