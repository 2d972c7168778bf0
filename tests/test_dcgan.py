"""Tests of the DCGAN baseline: what the discriminator sees when learning from corrupted data
(AmbientGAN), CSGM inversion (restarts, steps, frozen generator), divergence, registration.
200 + 50 8x8 digits, small nets."""

from __future__ import annotations

import pytest
import torch

import baselines.dcgan as dcgan
from baselines.dcgan import DCGAN, DCGANConfig, discriminator_input
from genbench.inference import csgm_invert
from genbench.data import DataConfig, load_data
from genbench.metrics import MAE, score
from genbench.model import DivergenceError
from genbench.operators import Identity, PixelMask, RandomProjection, gaussian_nll
from genbench.registry import get_model

D = 4  # latent_dim used throughout
SMALL = {"latent_dim": D, "width": 16, "n_epochs": 30, "batch_size": 25, "lr": 2e-3,
         "infer_steps": 30, "restarts": 1}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    splits = load_data(DataConfig(name="digits", n_train=200, n_test=50))
    return splits.train, splits.test  # (200, 1, 8, 8), (50, 1, 8, 8) in [-1, 1]


@pytest.fixture(scope="module")
def clean_model(digits) -> DCGAN:
    torch.manual_seed(0)
    return DCGAN(DCGANConfig(**SMALL)).fit(Identity().observe(digits[0]))


def _record_discriminator_inputs(monkeypatch) -> list[torch.Tensor]:
    """Patch the discriminator class so that every input it is fed is recorded."""
    seen: list[torch.Tensor] = []

    class Recording(dcgan.ConvTrunk):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return super().forward(x)

    monkeypatch.setattr(dcgan, "ConvTrunk", Recording)
    return seen


def test_ambient_discriminator_only_sees_masked_images(digits, monkeypatch):
    seen = _record_discriminator_inputs(monkeypatch)
    obs = PixelMask(p=0.5, seed=1).observe(digits[0][:100])
    DCGAN(DCGANConfig(**{**SMALL, "n_epochs": 2})).fit(obs)
    assert len(seen) == 2 * 4 * 3  # epochs x batches x (real, fake for D, fake for G)
    real_rows = {tuple(r.flatten().tolist()) for r in torch.cat([obs.y, obs.mask], 1)}
    masks = {tuple(m.flatten().tolist()) for m in obs.mask}
    n_fake = 0
    for batch in seen:
        assert batch.shape[1:] == (2, 8, 8)  # image + mask channel
        image, mask = batch[:, :1], batch[:, 1:]
        assert torch.all(image[mask == 0] == 0)  # occluded entries are never shown
        assert all(tuple(m.flatten().tolist()) in masks for m in mask)  # the data's own masks
        n_fake += sum(tuple(r.flatten().tolist()) not in real_rows for r in batch)
    assert n_fake == 2 * 100 * 2  # every generated image is seen (twice per step), masked


def test_projection_discriminator_sees_the_adjoint(digits, monkeypatch):
    seen = _record_discriminator_inputs(monkeypatch)
    op = RandomProjection(k=20, image_shape=(1, 8, 8), seed=0)
    DCGAN(DCGANConfig(**{**SMALL, "n_epochs": 1})).fit(op.observe(digits[0][:50]))
    a = op.matrix  # (K, D)
    null = torch.eye(64) - torch.linalg.pinv(a) @ a
    for batch in seen:
        assert batch.shape[1:] == (1, 8, 8)
        assert (batch.flatten(1) @ null).abs().max() < 1e-4  # A^T y lies in A's row space


def test_discriminator_input_for_clean_images_is_the_image(digits):
    obs = Identity().observe(digits[1])
    assert torch.equal(discriminator_input(obs), digits[1])


def test_more_restarts_never_have_a_higher_objective(digits, clean_model):
    g = clean_model.generator_
    obs = PixelMask(p=0.5, seed=2).observe(digits[1])
    energies = {}
    for restarts in (1, 4):
        torch.manual_seed(3)
        z, energies[restarts] = csgm_invert(g, obs, sigma=0.3, steps=30, restarts=restarts, lr=0.1)
        with torch.no_grad():  # the returned objective is the objective of the returned z
            recomputed = gaussian_nll(obs, g(z), 0.3) + 0.5 * z.pow(2).sum(1)
        torch.testing.assert_close(energies[restarts], recomputed, rtol=1e-4, atol=1e-4)
    assert torch.all(energies[4] <= energies[1] + 1e-4 * energies[1].abs())
    assert energies[4].mean() < energies[1].mean()


def test_more_infer_steps_lower_the_objective_and_the_error(digits, clean_model):
    obs = Identity().observe(digits[1])
    energies, errors = [], []
    for steps in (0, 30):
        torch.manual_seed(3)
        z, e = csgm_invert(clean_model.generator_, obs, sigma=0.3, steps=steps, restarts=1, lr=0.1)
        energies.append(e.mean().item())
        errors.append(score(digits[1], clean_model.decode(z).clamp(-1, 1))[MAE])
    assert energies[1] < 0.7 * energies[0]
    assert errors[1] < 0.8 * errors[0]


def test_inference_leaves_the_generator_untouched(digits, clean_model):
    weights = [p.clone() for p in clean_model.generator_.parameters()]
    z, e = clean_model.invert(Identity().observe(digits[1]))
    assert z.shape == (50, D) and e.shape == (50,)
    assert all(torch.equal(a, b) for a, b in zip(weights, clean_model.generator_.parameters()))
    assert all(p.requires_grad for p in clean_model.generator_.parameters())
    assert not clean_model.generator_.training


def test_history_records_both_losses(clean_model):
    history = torch.tensor(clean_model.history_)
    assert history.shape == (SMALL["n_epochs"], 2) and torch.isfinite(history).all()
    assert torch.all(history > 0)  # binary cross-entropies


def test_save_load_keeps_the_discriminator_of_a_masked_fit(digits, tmp_path):
    model = DCGAN(DCGANConfig(**{**SMALL, "n_epochs": 1})).fit(PixelMask(p=0.5, seed=1).observe(digits[0][:50]))
    model.save(tmp_path / "gan.pt")
    loaded = DCGAN.load(tmp_path / "gan.pt")
    assert loaded.disc_channels_ == 2 and loaded.history_ == model.history_
    x = torch.cat([digits[1][:5], torch.ones(5, 1, 8, 8)], 1)
    torch.testing.assert_close(loaded.discriminator_(x), model.discriminator_(x))


def test_nan_observations_raise_divergence(digits):
    y = digits[0][:50].clone()
    y[7, 0, 1, 1] = float("nan")
    with pytest.raises(DivergenceError, match="epoch 1"):
        DCGAN(DCGANConfig(**{**SMALL, "n_epochs": 2})).fit(Identity().observe(y))


def test_registration_and_config_checks():
    model = get_model("dcgan").build(infer_steps=7, restarts=3)
    assert model.infer_steps == 21 and not model.deterministic_inference
    assert (model.config.lr, model.config.beta1) == (2e-4, 0.5)
    with pytest.raises(ValueError, match="restarts"):
        DCGANConfig(restarts=0)
    with pytest.raises(ValueError, match="infer_step_size"):
        DCGANConfig(infer_step_size=0.0)
    for old, new in (("inversion_steps", "infer_steps"), ("inversion_lr", "infer_step_size")):
        with pytest.raises(ValueError, match=f"'{old}' was renamed to '{new}'"):
            get_model("dcgan").cls.Config(**{old: 1})
