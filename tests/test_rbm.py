"""Tests of the RBM and DBN baselines: the free energy against brute force, agreement with
scikit-learn's BernoulliRBM, CD learning, clamped inpainting, the projection recovery, stochastic
EM, greedy DBN training, persistence and errors. 8x8 digits, seconds on 2 CPU cores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.neural_network import BernoulliRBM

import baselines.dbn  # noqa: F401 -- registers "dbn"
import baselines.rbm as rbm_module
from baselines.dbn import DBN, DBNConfig
from baselines.rbm import RBM, RBMConfig, clamped_mean_field, projected_gradient, projection_objective
from baselines.rbm_layer import RBMLayer, train_layer
from genbench.data import DataConfig, load_data
from genbench.metrics import score
from genbench.operators import BlockMask, Identity, PixelMask, RandomProjection
from genbench.registry import get_model

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    splits = load_data(DataConfig(name="digits", n_train=200, n_test=50))
    return splits.train, splits.test  # (200, 1, 8, 8), (50, 1, 8, 8) in [-1, 1]


@pytest.fixture(scope="module")
def clean_fits(digits) -> dict[type, RBM]:
    """An RBM and a DBN (16 top hidden units, 30 epochs) fitted on the clean training digits."""
    fits = {}
    for cls in (RBM, DBN):
        torch.manual_seed(0)
        fits[cls] = cls(cls.Config(latent_dim=16, n_epochs=30, batch_size=20)).fit(Identity().observe(digits[0]))
    return fits


@pytest.fixture(scope="module")
def model(clean_fits) -> RBM:
    return clean_fits[RBM]


def _random_layer(n_visible: int, n_hidden: int, seed: int = 0) -> RBMLayer:
    g = torch.Generator().manual_seed(seed)
    return RBMLayer(torch.randn(n_hidden, n_visible, generator=g, dtype=torch.float64),
                    torch.randn(n_visible, generator=g, dtype=torch.float64),
                    torch.randn(n_hidden, generator=g, dtype=torch.float64))


# -- the energy model -------------------------------------------------------------------------
def test_free_energy_matches_brute_force_sum_over_hidden_states():
    layer = _random_layer(n_visible=5, n_hidden=4)
    v = torch.rand(7, 5, dtype=torch.float64)
    hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)   # (16, H)
    energy = -(v @ layer.visible_bias)[:, None] - (hs @ layer.hidden_bias)[None] - v @ layer.weight.T @ hs.T
    torch.testing.assert_close(layer.free_energy(v), -torch.logsumexp(-energy, dim=1))


def test_conditionals_are_the_energy_models():
    """p(h_j = 1 | v) from the free energy: F(v) with h_j clamped differs by -log(1 + e^a)."""
    layer = _random_layer(n_visible=6, n_hidden=3, seed=1)
    v = torch.rand(4, 6, dtype=torch.float64)
    pre = v @ layer.weight.T + layer.hidden_bias
    torch.testing.assert_close(layer.hidden_probs(v), torch.sigmoid(pre))
    torch.testing.assert_close(layer.visible_probs(torch.eye(3, dtype=torch.float64)),
                               torch.sigmoid(layer.weight + layer.visible_bias))


def test_pseudo_likelihood_equals_sklearn_score_samples(digits):
    v = ((digits[0].flatten(1) + 1) / 2).double()
    sk = BernoulliRBM(n_components=8, n_iter=2, random_state=3).fit(v.numpy())
    layer = RBMLayer(*(torch.from_numpy(a) for a in (sk.components_, sk.intercept_visible_, sk.intercept_hidden_)))
    index = torch.from_numpy(np.random.RandomState(3).randint(0, v.shape[1], v.shape[0]))  # sklearn's draw
    torch.testing.assert_close(layer.pseudo_likelihood(v, index), torch.from_numpy(sk.score_samples(v.numpy())))


def test_matches_sklearn_bernoulli_rbm_under_its_update_rule():
    """Same hidden units, epochs, batch size and learning rate, and sklearn's rule (PCD-1, sampled
    negative visibles, no momentum or weight decay): reconstruction error and pseudo-likelihood on
    held-out digits within 10 % of sklearn's (or better)."""
    splits = load_data(DataConfig(name="digits"))                     # 1437 train / 360 test
    v_train, v_test = ((splits.train.flatten(1) + 1) / 2), ((splits.test.flatten(1) + 1) / 2)
    sk = BernoulliRBM(n_components=64, learning_rate=0.1, batch_size=10, n_iter=10, random_state=0)
    sk.fit(v_train.double().numpy())
    sk_layer = RBMLayer(*(torch.from_numpy(a).float() for a in (sk.components_, sk.intercept_visible_,
                                                                  sk.intercept_hidden_)))
    config = RBMConfig(latent_dim=64, lr=0.1, batch_size=10, n_epochs=10, cd_k=1, persistent=True,
                       sample_visibles=True, momentum=0.0, final_momentum=0.0, weight_decay=0.0,
                       visible_bias_init="zero")
    ours = RBM(config).fit(Identity().observe(splits.train)).layers_[0]

    def recon_error(layer: RBMLayer) -> float:
        return (v_test - layer.visible_probs(layer.hidden_probs(v_test))).pow(2).mean().item()

    def pseudo_ll(layer: RBMLayer) -> float:
        g = torch.Generator().manual_seed(0)
        return np.mean([layer.pseudo_likelihood(v_test, torch.randint(0, 64, (len(v_test),), generator=g)).mean().item()
                        for _ in range(10)])

    assert recon_error(ours) <= 1.1 * recon_error(sk_layer)
    assert pseudo_ll(ours) >= 1.1 * pseudo_ll(sk_layer)  # both negative
    assert recon_error(ours) < 0.5 * recon_error(RBMLayer.init(v_train, 64, "zero"))  # it did learn


# -- learning ---------------------------------------------------------------------------------
def _reference_train_layer(v: torch.Tensor, n_hidden: int, cfg: RBMConfig) -> tuple[RBMLayer, list[float]]:
    """CD-k / PCD-k written plainly (the module docstring's rule), drawing the same random numbers
    in the same order as ``train_layer``: W's init, a permutation per epoch, then per mini-batch one
    block of uniforms (k hidden blocks, then k visible blocks when sampling visibles); u < p samples."""
    layer = RBMLayer.init(v, n_hidden, cfg.visible_bias_init)
    h_dim, d, k = n_hidden, v.shape[1], cfg.cd_k
    velocity = [torch.zeros_like(t) for t in layer.state().values()]
    chains, history = torch.zeros(cfg.batch_size, h_dim), []
    for epoch in range(cfg.n_epochs):
        momentum = cfg.momentum if epoch < cfg.momentum_switch_epoch else cfg.final_momentum
        perm, error = torch.randperm(len(v)), 0.0
        for start in range(0, len(v), cfg.batch_size):
            v0 = v[perm[start:start + cfg.batch_size]]
            noise = torch.rand(cfg.batch_size, k * h_dim + (k * d if cfg.sample_visibles else 0))
            mc = cfg.batch_size if cfg.persistent else len(v0)
            u_hid = [noise[:mc, i * h_dim:(i + 1) * h_dim] for i in range(k)]
            u_vis = [noise[:mc, k * h_dim + i * d:k * h_dim + (i + 1) * d] for i in range(k)]
            ph0 = layer.hidden_probs(v0)
            h = chains if cfg.persistent else (u_hid[-1] < ph0).float()
            for i in range(k):
                v_neg = layer.visible_probs(h)
                v_neg = (u_vis[i] < v_neg).float() if cfg.sample_visibles else v_neg
                ph_neg = layer.hidden_probs(v_neg)
                h = (u_hid[i] < ph_neg).float()
            chains = h if cfg.persistent else chains
            error += (v0 - layer.visible_probs(ph0)).pow(2).sum().item()
            grads = (ph0.T @ v0 / len(v0) - ph_neg.T @ v_neg / mc - cfg.weight_decay * layer.weight,
                     v0.mean(0) - v_neg.mean(0), ph0.mean(0) - ph_neg.mean(0))
            for p, vel, g in zip(layer.state().values(), velocity, grads):
                vel.mul_(momentum).add_(g, alpha=cfg.lr)
                p.add_(vel)
        history.append(error / v.numel())
    return layer, history


@pytest.mark.parametrize("overrides", [
    {"cd_k": 1, "persistent": True, "sample_visibles": True, "momentum": 0.0, "final_momentum": 0.0,
     "weight_decay": 0.0},
    {"cd_k": 2, "persistent": False, "momentum": 0.5, "final_momentum": 0.9, "momentum_switch_epoch": 1},
    {"cd_k": 3, "persistent": True, "sample_visibles": True, "weight_decay": 1e-2, "momentum": 0.0,
     "final_momentum": 0.0},
], ids=["sklearn-rule", "cd2-momentum", "pcd3-decay"])
def test_train_layer_is_the_plain_cd_update_rule(digits, overrides):
    """The packed, few-calls-per-batch training loop takes exactly the plain update rule's steps
    (same random numbers): 23 images in batches of 10 (the last one partial), 3 epochs."""
    v = ((digits[0][:23].flatten(1) + 1) / 2)
    cfg = RBMConfig(latent_dim=6, n_epochs=3, batch_size=10, lr=0.05, **overrides)
    torch.manual_seed(0)
    layer, history = train_layer(v, 6, cfg)
    torch.manual_seed(0)
    expected, expected_history = _reference_train_layer(v, 6, cfg)
    for name, t in layer.state().items():
        torch.testing.assert_close(t, expected.state()[name], atol=1e-5, rtol=1e-4, msg=name)
        assert t.is_contiguous()
    np.testing.assert_allclose(history, expected_history, rtol=1e-5)


def test_cd_training_lowers_reconstruction_error(digits, model):
    history = model.history_[0]
    assert len(history) == 30 and history[-1] < 0.6 * history[0]
    v = (digits[1].flatten(1) + 1) / 2
    torch.manual_seed(0)
    untrained = RBMLayer.init((digits[0].flatten(1) + 1) / 2, 16)
    error = lambda layer: (v - layer.visible_probs(layer.hidden_probs(v))).pow(2).mean()  # noqa: E731
    assert error(model.layers_[0]) < 0.6 * error(untrained)


def test_persistent_contrastive_divergence_learns(digits):
    torch.manual_seed(0)
    cfg = RBMConfig(latent_dim=16, n_epochs=30, batch_size=10, persistent=True, final_momentum=0.5)
    history = RBM(cfg).fit(Identity().observe(digits[0])).history_[0]
    assert history[-1] < 0.6 * history[0]


def test_stochastic_em_beats_mean_filling_when_learning_from_masked_images(digits):
    """em_iters=0 learns from the initial imputations (missing pixels at the observed mean);
    stochastic EM re-imputes each batch with the current model before its CD step."""
    op = PixelMask(p=0.5, seed=1)
    train, test = op.observe(digits[0]), op.observe(digits[1])
    errors = {}
    for em_iters in (0, 3):
        torch.manual_seed(0)
        fitted = RBM(RBMConfig(latent_dim=16, n_epochs=30, batch_size=20, em_iters=em_iters)).fit(train)
        assert torch.equal(fitted.reconstruct(train).flatten(1)[train.mask.flatten(1) > 0],
                           train.y.flatten(1)[train.mask.flatten(1) > 0])
        errors[em_iters] = score(digits[1], fitted.reconstruct(test), test.occluded())["mae"]
    assert errors[3] < 0.95 * errors[0], errors


def test_dbn_second_layer_learns_the_first_layers_hidden_probabilities(digits, monkeypatch):
    calls = []
    original = rbm_module.train_layer  # RBM.fit calls the name in baselines.rbm

    def spy(v, n_hidden, cfg, **kwargs):
        calls.append((v.clone(), n_hidden))
        return original(v, n_hidden, cfg, **kwargs)

    monkeypatch.setattr(rbm_module, "train_layer", spy)
    dbn = DBN(DBNConfig(latent_dim=4, hidden_1=24, n_epochs=5, batch_size=20)).fit(Identity().observe(digits[0]))
    assert [n for _, n in calls] == [24, 4]
    torch.testing.assert_close(calls[0][0], (digits[0].flatten(1) + 1) / 2)
    torch.testing.assert_close(calls[1][0], dbn.layers_[0].hidden_probs(calls[0][0]))
    assert dbn.layers_[1].weight.shape == (4, 24)
    v = (digits[1].flatten(1) + 1) / 2
    z = dbn.infer(Identity().observe(digits[1]))  # the up pass
    torch.testing.assert_close(z, dbn.layers_[1].hidden_probs(dbn.layers_[0].hidden_probs(v)))
    torch.testing.assert_close(dbn.decode(z).flatten(1),
                               2 * dbn.layers_[0].visible_probs(dbn.layers_[1].visible_probs(z)) - 1)


# -- recovery ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op", [PixelMask(p=0.5, seed=2), BlockMask(size=4, seed=2)], ids=["pixel", "block"])
@pytest.mark.parametrize("cls", [RBM, DBN])
def test_inpainting_keeps_observed_pixels_and_beats_the_mean_image(digits, clean_fits, cls, op):
    fitted = clean_fits[cls]
    op.reset()
    obs = op.observe(digits[1])
    x_hat = fitted.reconstruct(obs)
    keep = obs.mask.expand_as(x_hat) > 0
    assert torch.equal(x_hat[keep], obs.y[keep])
    v_obs, keep_flat = (obs.y.flatten(1) + 1) / 2, obs.mask.flatten(1)
    v = clamped_mean_field(fitted.layers_, torch.rand_like(v_obs), v_obs, keep_flat, iters=3)
    assert torch.equal(v[keep_flat > 0], v_obs[keep_flat > 0])
    mean = digits[0].mean(0, keepdim=True).expand_as(digits[1])
    ours, baseline = (score(digits[1], x, obs.occluded())["mae"] for x in (x_hat, mean))
    assert ours < 0.9 * baseline, (ours, baseline)
    assert fitted.infer_steps == fitted.config.infer_steps


def test_projection_recovery_lowers_its_objective_and_beats_the_naive_inverse(digits, model):
    op = RandomProjection(k=32, image_shape=SHAPE, seed=0)
    obs = op.observe(digits[1])
    layer, sigma = model.layers_[0], model.config.sigma
    v0 = ((obs.naive_inverse().flatten(1) + 1) / 2).clamp(0, 1)
    steps = torch.full((len(obs),), 0.01)
    before = projection_objective(layer, obs, v0, sigma)
    v1, steps = projected_gradient(layer, obs, v0, steps, sigma=sigma, iters=5)
    v2, _ = projected_gradient(layer, obs, v1, steps, sigma=sigma, iters=50)
    middle, after = (projection_objective(layer, obs, v, sigma) for v in (v1, v2))
    assert (middle <= before).all() and (after <= middle).all() and after.mean() < before.mean() - 1
    assert v2.min() >= 0 and v2.max() <= 1
    x_hat = model.reconstruct(obs)
    assert model.infer_steps == model.config.infer_projection_steps
    assert score(digits[1], x_hat)["mae"] < 0.8 * score(digits[1], obs.naive_inverse().clamp(-1, 1))["mae"]


def test_identity_reconstruction_is_the_mean_field_down_pass(digits, model):
    obs = Identity().observe(digits[1])
    v = (digits[1].flatten(1) + 1) / 2
    layer = model.layers_[0]
    torch.testing.assert_close(model.infer(obs), layer.hidden_probs(v))
    torch.testing.assert_close(model.reconstruct(obs).flatten(1), 2 * layer.visible_probs(layer.hidden_probs(v)) - 1)
    assert model.infer_steps == 0


# -- persistence and errors -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rbm", "dbn"])
def test_save_load_round_trip(digits, name, tmp_path):
    spec = get_model(name)
    fitted = spec.build(latent_dim=4, **spec.cls.dry_run_overrides).fit(PixelMask(p=0.3, seed=0).observe(digits[0]))
    fitted.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert all(isinstance(t, torch.Tensor) for t in blob["state"].values())
    loaded = spec.cls.load(tmp_path / "m.pt")
    for a, b in zip(fitted.layers_, loaded.layers_):
        assert all(torch.equal(a.state()[k], b.state()[k]) for k in a.state())
    obs = BlockMask(size=3, seed=0).observe(digits[1])
    torch.testing.assert_close(fitted.reconstruct(obs), loaded.reconstruct(obs))
    assert loaded.history_ == fitted.history_
    with pytest.raises(ValueError, match="hidden layers"):
        spec.cls(spec.make_config(latent_dim=5)).load_state_dict(fitted.state_dict())


def test_sample_and_decode_shapes_and_range(model):
    torch.manual_seed(0)
    x = model.sample(6)
    assert x.shape == (6, *SHAPE) and x.min() >= -1 and x.max() <= 1
    assert model.decode(torch.rand(3, 16)).shape == (3, *SHAPE)


@pytest.mark.parametrize("field, value", [("lr", 0.0), ("cd_k", 0), ("momentum", 1.0), ("weight_decay", -1.0),
                                          ("infer_steps", -1), ("visible_bias_init", "ones"), ("sigma", 0.0),
                                          ("infer_step_size", 0.0), ("infer_projection_steps", -1)])
def test_bad_config_values_raise(field, value):
    with pytest.raises(ValueError, match=field):
        RBMConfig(**{field: value})
    with pytest.raises(ValueError, match="hidden_1"):
        DBNConfig(hidden_1=0)


@pytest.mark.parametrize("old, new", [("recovery_iters", "infer_steps"), ("projection_iters", "infer_projection_steps"),
                                      ("projection_step_size", "infer_step_size")])
def test_old_inference_names_are_refused_with_the_new_one(old, new):
    for config_cls in (RBMConfig, DBNConfig):  # the DBN inherits the RBM's renames
        with pytest.raises(ValueError, match=f"model config field '{old}' was renamed to '{new}'"):
            config_cls(**{old: 1})
