"""Tests of the VAE baseline: the exact KL term, the masked decoder loss, learning (from clean
and occluded digits), the vae-refine variant, divergence, registration. 200 + 50 8x8 digits."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from baselines.vae import VAE, VAEConfig, encoder_input, kl_to_standard_normal, negative_elbo
from genbench.backbone import ConvTrunk
from genbench.data import DataConfig, load_data
from genbench.metrics import MAE, score
from genbench.model import DivergenceError
from genbench.operators import Identity, Observations, PixelMask, RandomProjection
from genbench.registry import get_model

D = 4  # latent_dim used throughout


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    splits = load_data(DataConfig(name="digits", n_train=200, n_test=50))
    return splits.train, splits.test  # (200, 1, 8, 8), (50, 1, 8, 8) in [-1, 1]


def _fit(obs: Observations, seed: int = 0, **config) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(latent_dim=D, **{**VAE.tiny_overrides, **config})).fit(obs)


@pytest.fixture(scope="module")
def clean_model(digits) -> VAE:
    return _fit(Identity().observe(digits[0]))


def _with_config(model: VAE, **changes) -> VAE:
    """The same fitted weights under another config (e.g. refinement switched on)."""
    other = VAE(dataclasses.replace(model.config, **changes))
    other.load_state_dict(model.state_dict())
    return other


def _mean_image_error(x_train: torch.Tensor, x_test: torch.Tensor, obs: Observations) -> float:
    return score(x_test, x_train.mean(0, keepdim=True).expand_as(x_test), obs.occluded())[MAE]


def test_kl_term_is_exact():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.3, 0.1]])
    logvar = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-1.0, 2.0]])
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), expected)
    assert kl_to_standard_normal(mu, logvar)[0] == 0.0  # q = prior
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar)[1], torch.tensor(2.5))  # (1 + 4) / 2


def test_encoder_sees_naive_inverse_and_mask(digits):
    x = digits[1][:5]
    masked = PixelMask(p=0.5, seed=0).observe(x)
    inp = encoder_input(masked)
    assert inp.shape == (5, 2, 8, 8)
    assert torch.equal(inp[:, :1], masked.y) and torch.equal(inp[:, 1:], masked.mask)
    clean = encoder_input(Identity().observe(x))
    assert torch.equal(clean[:, :1], x) and torch.all(clean[:, 1:] == 1)
    projected = RandomProjection(k=20, image_shape=(1, 8, 8), seed=0).observe(x)
    torch.testing.assert_close(encoder_input(projected)[:, :1], projected.op.adjoint(projected.y))


def test_decoder_loss_ignores_occluded_entries(digits):
    obs = PixelMask(p=0.5, seed=0).observe(digits[0][:20])
    encoder = ConvTrunk((1, 8, 8), 2 * D, width=8, in_channels=2)
    decoded = {}

    def decoder(z: torch.Tensor) -> torch.Tensor:
        x_hat = torch.tanh(z.sum(1).view(-1, 1, 1, 1) + torch.zeros(len(z), 1, 8, 8))
        x_hat.retain_grad()
        decoded["x_hat"] = x_hat
        return x_hat

    nll, kl = negative_elbo(encoder, decoder, obs, sigma=0.3)
    assert nll.shape == kl.shape == (20,)
    nll.sum().backward()
    grad = decoded["x_hat"].grad
    assert torch.all(grad[obs.mask.expand_as(grad) == 0] == 0)
    assert torch.count_nonzero(grad[obs.mask.expand_as(grad) == 1]) > 0


def test_loss_decreases_and_outputs_are_deterministic(digits, clean_model):
    history = clean_model.history_
    assert len(history) == VAE.tiny_overrides["n_epochs"]
    assert history[-1] < 0.5 * history[0]
    obs = Identity().observe(digits[1])
    assert clean_model.deterministic_inference
    assert torch.equal(clean_model.infer(obs), clean_model.infer(obs))


def test_refinement_lowers_the_reconstruction_error(digits, clean_model):
    refine = _with_config(clean_model, infer_steps=50)
    weights = [p.clone() for p in refine.generator_.parameters()]
    for op in (Identity(), PixelMask(p=0.5, seed=4)):
        obs = op.observe(digits[1])
        plain_error = score(digits[1], clean_model.reconstruct(obs), obs.occluded())[MAE]
        refined_error = score(digits[1], refine.reconstruct(obs), obs.occluded())[MAE]
        assert refined_error < 0.97 * plain_error, (type(op).__name__, refined_error, plain_error)
    # the decoder is frozen during refinement and left trainable afterwards
    assert all(torch.equal(a, b) for a, b in zip(weights, refine.generator_.parameters()))
    assert all(p.requires_grad for p in refine.generator_.parameters())


def test_learns_from_occluded_images(digits):
    x_train, x_test = digits
    op = PixelMask(p=0.5, seed=1)
    model = _fit(op.observe(x_train))
    test = op.observe(x_test)
    error = score(x_test, model.reconstruct(test), test.occluded())[MAE]
    assert error < 0.9 * _mean_image_error(x_train, x_test, test)


def test_nan_observations_raise_divergence(digits):
    y = digits[0][:40].clone()
    y[3, 0, 2, 2] = float("nan")
    with pytest.raises(DivergenceError, match="epoch 1"):
        VAE(VAEConfig(latent_dim=D, n_epochs=2, width=8)).fit(Identity().observe(y))


def test_registered_variants_and_config_checks():
    plain, refine = get_model("vae").build(), get_model("vae-refine").build()
    assert plain.infer_steps == 0 and plain.deterministic_inference
    assert refine.infer_steps == 100 and refine.deterministic_inference
    noisy = get_model("vae-refine").build(infer_noise=True)
    assert not noisy.deterministic_inference
    with pytest.raises(ValueError, match="infer_steps"):
        VAEConfig(infer_steps=-1)
    with pytest.raises(ValueError, match="lr"):
        VAEConfig(lr=float("nan"))


def test_old_refinement_names_are_refused_with_the_new_one():
    for old, new in (("refine_steps", "infer_steps"), ("refine_step_size", "infer_step_size"),
                     ("refine_noise", "infer_noise")):
        with pytest.raises(ValueError, match=f"model config field '{old}' was renamed to '{new}'"):
            VAEConfig(**{old: 1})
