"""Tests of the PCA baseline: exactness against scikit-learn, recovery through every operator,
learning from corrupted data, persistence, errors and registration. 200 + 50 8x8 digits."""

from __future__ import annotations

import pytest
import torch
from sklearn.decomposition import PCA as SkPCA
from torch.distributions import MultivariateNormal

from baselines.pca import PCA, PCAConfig
from genbench.data import DataConfig, load_data
from genbench.metrics import MAE, MSE, score
from genbench.model import NotFittedError
from genbench.operators import BlockMask, Identity, Observations, PixelMask, RandomProjection
from genbench.registry import get_model

D = 8  # latent_dim used throughout


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    splits = load_data(DataConfig(name="digits", n_train=200, n_test=50))
    return splits.train, splits.test  # (200, 1, 8, 8), (50, 1, 8, 8) in [-1, 1]


@pytest.fixture(scope="module")
def clean_model(digits) -> PCA:
    return PCA(PCAConfig(latent_dim=D)).fit(Identity().observe(digits[0]))


def _fit(obs: Observations, **config) -> PCA:
    return PCA(PCAConfig(latent_dim=D, **config)).fit(obs)


def _mean_image(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.mean(0, keepdim=True).expand(n, -1, -1, -1)


def _occluded_error(x: torch.Tensor, x_hat: torch.Tensor, obs: Observations) -> dict[str, float]:
    return score(x, x_hat, mask=obs.occluded())


# -- clean data: exact PCA ------------------------------------------------------------------
@pytest.mark.parametrize("ridge", [0.0, 1.0])
def test_clean_fit_equals_sklearn(digits, ridge):
    x_train, x_test = digits
    model = _fit(Identity().observe(x_train), ridge=ridge)
    sk = SkPCA(n_components=D, svd_solver="full").fit(x_train.flatten(1).double().numpy())
    components = torch.from_numpy(sk.components_)
    signs = torch.sign((model.components_ * components).sum(1, keepdim=True))
    assert torch.all(signs.abs() == 1)
    torch.testing.assert_close(model.mean_, torch.from_numpy(sk.mean_), atol=1e-10, rtol=0)
    torch.testing.assert_close(model.components_, signs * components, atol=1e-8, rtol=0)
    torch.testing.assert_close(model.explained_variance_, torch.from_numpy(sk.explained_variance_))
    torch.testing.assert_close(model.noise_variance_, torch.tensor(sk.noise_variance_, dtype=torch.float64))

    obs = Identity().observe(x_test)
    x_flat = x_test.flatten(1).double().numpy()
    z_sk = torch.from_numpy(sk.transform(x_flat)).float()
    torch.testing.assert_close(model.infer(obs), z_sk * signs.view(1, -1).float(), atol=1e-5, rtol=0)
    x_sk = torch.from_numpy(sk.inverse_transform(sk.transform(x_flat))).float().view_as(x_test)
    torch.testing.assert_close(model.decode(model.infer(obs)), x_sk, atol=1e-5, rtol=0)


def test_clean_reconstruction_beats_mean_image_and_improves_with_dim(digits, clean_model):
    x_train, x_test = digits
    obs = Identity().observe(x_test)
    err_mean = score(x_test, _mean_image(x_train, len(x_test)))[MSE]
    err_8 = score(x_test, clean_model.reconstruct(obs))[MSE]
    err_20 = score(x_test, PCA(PCAConfig(latent_dim=20)).fit(Identity().observe(x_train)).reconstruct(obs))[MSE]
    assert err_20 < err_8 < 0.6 * err_mean


def test_outputs_shape_dtype_and_batch_independence(digits, clean_model):
    obs = PixelMask(p=0.5, seed=3).observe(digits[1])
    z = clean_model.infer(obs)
    assert z.shape == (50, D) and z.dtype == torch.float32
    small_batches = PCA(PCAConfig(latent_dim=D, eval_batch_size=7))
    small_batches.load_state_dict(clean_model.state_dict())
    torch.testing.assert_close(small_batches.infer(obs), z, atol=1e-6, rtol=0)
    x_hat = clean_model.reconstruct(obs)
    assert x_hat.shape == (50, 1, 8, 8) and x_hat.dtype == torch.float32
    assert x_hat.min() >= -1 and x_hat.max() <= 1


# -- recovery through masks and projections --------------------------------------------------
def test_inpainting_beats_mean_image_and_prior_helps(digits, clean_model):
    x_train, x_test = digits
    obs = PixelMask(p=0.5, seed=1).observe(x_test)
    err_mean = _occluded_error(x_test, _mean_image(x_train, len(x_test)), obs)
    err_map = _occluded_error(x_test, clean_model.reconstruct(obs), obs)
    least_squares = PCA(PCAConfig(latent_dim=D, ridge=0.0))
    least_squares.load_state_dict(clean_model.state_dict())
    err_ls = _occluded_error(x_test, least_squares.reconstruct(obs), obs)
    assert err_map[MAE] < 0.8 * err_mean[MAE]
    assert err_map[MSE] < err_ls[MSE]


def test_em_from_masked_training_beats_mean_fill(digits):
    torch.manual_seed(0)
    x_train, x_test = digits
    op = PixelMask(p=0.5, seed=2)
    train_obs, test_obs = op.observe(x_train), op.observe(x_test)
    observed_mean = (train_obs.y.sum(0) / train_obs.mask.sum(0).clamp_min(1)).expand_as(x_test)
    err_fill = _occluded_error(x_test, observed_mean, test_obs)[MAE]
    model = _fit(train_obs, em_iters=30)
    assert 1 < len(model.history_) <= 30
    assert _occluded_error(x_test, model.reconstruct(test_obs), test_obs)[MAE] < 0.8 * err_fill
    # the training images' observed entries are explained, the occluded ones recovered
    assert _occluded_error(x_train, model.reconstruct(train_obs), train_obs)[MAE] < 0.8 * err_fill


def _log_likelihood(model: PCA, obs: Observations) -> float:
    """log p(y) under the fitted probabilistic PCA, computed directly from its (D, D) covariance."""
    w, lam, s2 = model.components_.T, model.explained_variance_, model.noise_variance_
    cov = s2 * torch.eye(len(model.mean_), dtype=torch.float64) + w @ torch.diag(lam - s2) @ w.T
    if obs.mask is None:  # y = A x ~ N(A mu, A C A^T)
        a = obs.op.matrix.double()
        return MultivariateNormal(a @ model.mean_, a @ cov @ a.T).log_prob(obs.y.double()).sum().item()
    total = 0.0
    for y, seen in zip(obs.y.flatten(1).double(), obs.mask.flatten(1).bool()):
        total += MultivariateNormal(model.mean_[seen], cov[seen][:, seen]).log_prob(y[seen]).item()
    return total


@pytest.mark.parametrize("op", [PixelMask(p=0.6, seed=8), RandomProjection(k=24, image_shape=(1, 8, 8), seed=8)],
                         ids=["pixel-mask", "projection"])
def test_each_em_round_raises_the_likelihood(digits, op):
    obs = op.observe(digits[0][:100])
    rounds = [_fit(obs, em_iters=k, tol=0.0) for k in (1, 2, 3, 6)]
    log_lik = [_log_likelihood(model, obs) for model in rounds]
    assert all(later >= earlier - 1e-6 * abs(earlier) for earlier, later in zip(log_lik, log_lik[1:]))
    assert log_lik[-1] > log_lik[0]


@pytest.mark.parametrize("op", [PixelMask(p=0.5, seed=9), RandomProjection(k=24, image_shape=(1, 8, 8), seed=9)],
                         ids=["pixel-mask", "projection"])
def test_e_step_is_gaussian_conditioning(clean_model, digits, op):
    """E[x | y] and sum_i Cov[x_i | y_i] of the E-step equal the textbook conditioning of
    x ~ N(mu, C), C = sigma^2 I + W diag(lambda - sigma^2) W^T, on y = A x."""
    obs = op.observe(digits[1][:20])
    model, mu = clean_model, clean_model.mean_
    w, lam, s2 = model.components_.T, model.explained_variance_, model.noise_variance_
    cov = s2 * torch.eye(64, dtype=torch.float64) + w @ torch.diag(lam - s2) @ w.T
    if obs.mask is None:
        x_hat, scatter = model._shared_e_step(obs)()
        a = op.matrix.double()
        gain = cov @ a.T @ torch.linalg.inv(a @ cov @ a.T)                   # (D, K)
        x_ref = mu + (obs.y.double() - mu @ a.T) @ gain.T
        scatter_ref = len(obs) * (cov - gain @ a @ cov)
    else:
        x_hat, scatter = model._masked_e_step(obs)
        x_ref, scatter_ref = obs.y.flatten(1).double().clone(), torch.zeros(64, 64, dtype=torch.float64)
        for i, seen in enumerate(obs.mask.flatten(1).bool()):
            gain = cov[~seen][:, seen] @ torch.linalg.inv(cov[seen][:, seen])
            x_ref[i, ~seen] = mu[~seen] + gain @ (x_ref[i, seen] - mu[seen])
            hidden = torch.outer(~seen, ~seen)
            scatter_ref[hidden] += (cov[~seen][:, ~seen] - gain @ cov[seen][:, ~seen]).flatten()
    torch.testing.assert_close(x_hat, x_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(scatter, scatter_ref, atol=1e-5, rtol=0)


def test_block_mask_clean_and_learned_from_blocks(digits, clean_model):
    x_train, x_test = digits
    op = BlockMask(size=4, seed=4)
    train_obs, test_obs = op.observe(x_train), op.observe(x_test)
    err_mean = _occluded_error(x_test, _mean_image(x_train, len(x_test)), test_obs)[MAE]
    err_clean = _occluded_error(x_test, clean_model.reconstruct(test_obs), test_obs)[MAE]
    err_learned = _occluded_error(x_test, _fit(train_obs, em_iters=20).reconstruct(test_obs), test_obs)[MAE]
    assert err_clean < 0.9 * err_mean
    assert err_learned < 0.95 * err_mean


def test_recovery_from_projections_of_clean_model(digits, clean_model):
    x_train, x_test = digits
    obs = RandomProjection(k=32, image_shape=(1, 8, 8), seed=5).observe(x_test)
    err = score(x_test, clean_model.reconstruct(obs))[MSE]
    assert err < 0.6 * score(x_test, _mean_image(x_train, len(x_test)))[MSE]


def test_learning_from_projections_beats_naive_inverse(digits):
    torch.manual_seed(0)
    x_train, x_test = digits
    op = RandomProjection(k=32, image_shape=(1, 8, 8), seed=6)
    train_obs, test_obs = op.observe(x_train), op.observe(x_test)
    err = score(x_test, _fit(train_obs).reconstruct(test_obs))[MSE]
    assert err < 0.8 * score(x_test, test_obs.naive_inverse().clamp(-1, 1))[MSE]
    # what a shared A hides stays unknown: about the minimum-norm solution A^+ y, no better
    min_norm = (test_obs.y @ torch.linalg.pinv(op.matrix).T).view_as(x_test).clamp(-1, 1)
    assert 0.9 < err / score(x_test, min_norm)[MSE] < 1.3


# -- sampling, persistence, errors, registry -------------------------------------------------
def test_sample_spread_matches_data(digits, clean_model):
    torch.manual_seed(0)
    x = clean_model.sample(500)
    assert x.shape == (500, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    ratio = x.std(0).mean() / digits[0].std(0).mean()
    assert 0.6 < ratio < 1.1


def test_save_load_round_trip(digits, tmp_path):
    op = PixelMask(p=0.5, seed=7)
    model = _fit(op.observe(digits[0]), em_iters=3)
    model.save(tmp_path / "pca.pt")
    loaded = PCA.load(tmp_path / "pca.pt")
    assert loaded.config == model.config and loaded.history_ == model.history_
    obs = op.observe(digits[1])
    assert torch.equal(loaded.reconstruct(obs), model.reconstruct(obs))
    blob = torch.load(tmp_path / "pca.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in blob["state"].values())


def test_latent_dim_too_large_raises(digits):
    with pytest.raises(ValueError, match=r"latent_dim=65 .* min\(200 images, 64 pixels\) = 64"):
        PCA(PCAConfig(latent_dim=65)).fit(Identity().observe(digits[0]))
    with pytest.raises(ValueError, match=r"min\(30 images, 64 pixels\) = 30"):
        PCA(PCAConfig(latent_dim=40)).fit(PixelMask(p=0.5).observe(digits[0][:30]))


def test_unfitted_use_raises(digits, tmp_path):
    model = PCA()
    obs = Identity().observe(digits[1])
    for call in (lambda: model.infer(obs), lambda: model.reconstruct(obs), lambda: model.sample(2),
                 lambda: model.decode(torch.zeros(1, 10)), lambda: model.save(tmp_path / "x.pt")):
        with pytest.raises(NotFittedError):
            call()


@pytest.mark.parametrize("field, value", [("ridge", -1.0), ("tol", -1e-3), ("em_iters", 0), ("latent_dim", 0)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        PCAConfig(**{field: value})


def test_registered_with_a_cheap_dry_run(digits):
    spec = get_model("pca")
    assert spec.cls is PCA and isinstance(spec.make_config(), PCAConfig)
    model = spec.build(latent_dim=4, **PCA.dry_run_overrides)
    model.fit(PixelMask(p=0.5).observe(digits[0]))
    assert len(model.history_) == 1
