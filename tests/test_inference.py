"""The shared inference (genbench/inference.py), the epoch loop of GeneratorModel and the renamed
inference budget: the negative log joint against its formula, Langevin and CSGM against their
definitions, the loop's hooks and random-number order, and old config names refused by name."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from baselines.dcgan import DCGANConfig
from baselines.rbm import RBMConfig
from baselines.vae import VAEConfig
from genbench.abp import ABP, ABPConfig
from genbench.backbone import Generator
from genbench.generator_model import GeneratorConfig, GeneratorModel
from genbench.inference import csgm_invert, langevin, neg_log_joint
from genbench.model import BaseConfig, Capabilities, DivergenceError, ModelConfig, check_renamed
from genbench.operators import Identity, PixelMask, RandomProjection, gaussian_nll

SHAPE = (1, 8, 8)


def _generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(latent_dim=3, image_shape=SHAPE, width=4).eval()


def _images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(1)) * 2 - 1


# -------------------------------------------------------------------------- the energy
@pytest.mark.parametrize("op", [Identity(), PixelMask(p=0.5, seed=0), RandomProjection(k=20, image_shape=SHAPE)],
                         ids=lambda op: op.name)
def test_neg_log_joint_is_likelihood_plus_prior(op):
    x, z = _images(), torch.randn(6, 3)
    obs = op.observe(x)
    x_hat = _images().flip(0)
    expected = gaussian_nll(obs, x_hat, 0.3) + 0.5 * (z * z).sum(1)
    torch.testing.assert_close(neg_log_joint(obs, x_hat, z, 0.3), expected)
    assert neg_log_joint(obs, x, torch.zeros(6, 3), 0.3).abs().max() < 1e-4  # the truth at the prior mode


def test_langevin_without_noise_is_gradient_descent_on_the_energy():
    g, obs = _generator(), PixelMask(p=0.5, seed=0).observe(_images())
    z0 = torch.randn(6, 3)
    z = z0.clone().requires_grad_(True)
    for _ in range(3):  # the definition: z <- z - delta^2 / 2 * grad E(z)
        (grad,) = torch.autograd.grad(neg_log_joint(obs, g(z), z, 0.3).sum(), z)
        z = (z - 0.5 * 0.1 ** 2 * grad).detach().requires_grad_(True)
    torch.testing.assert_close(langevin(g, obs, z0, sigma=0.3, steps=3, step_size=0.1, noise=False), z.detach())
    energy = lambda z: neg_log_joint(obs, g(z), z, 0.3).sum()  # noqa: E731
    with torch.no_grad():
        after = langevin(g, obs, z0, sigma=0.3, steps=30, step_size=0.1, noise=False)
        assert energy(after) < energy(z0)


def test_langevin_noise_draws_from_the_global_generator():
    g, obs, z0 = _generator(), Identity().observe(_images()), torch.zeros(6, 3)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(langevin(g, obs, z0, sigma=0.3, steps=4, step_size=0.1, noise=True))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    torch.manual_seed(0)
    state = torch.get_rng_state()
    langevin(g, obs, z0, sigma=0.3, steps=4, step_size=0.1, noise=False)
    assert torch.equal(torch.get_rng_state(), state)  # gradient descent draws nothing


def test_csgm_invert_returns_the_best_restart_and_its_energy():
    g, obs = _generator(), PixelMask(p=0.5, seed=1).observe(_images())
    torch.manual_seed(2)
    z, e = csgm_invert(g, obs, sigma=0.3, steps=5, restarts=3, lr=0.1)
    assert z.shape == (6, 3) and e.shape == (6,)
    with torch.no_grad():
        torch.testing.assert_close(e, neg_log_joint(obs, g(z), z, 0.3), rtol=1e-5, atol=1e-5)
    torch.manual_seed(2)
    _, e1 = csgm_invert(g, obs, sigma=0.3, steps=5, restarts=1, lr=0.1)  # the first restart of the three
    assert torch.all(e <= e1 + 1e-5)


# -------------------------------------------------------------------------- the epoch loop
@dataclasses.dataclass(frozen=True)
class _LoopConfig(GeneratorConfig):
    diverge_at: int = 0  # epoch (1-based) whose loss is NaN; 0: never


class _Recorder(GeneratorModel):
    """Test double: records the hooks' calls and the batches; loss = mean of its batch indices."""

    Config = _LoopConfig
    config: _LoopConfig
    capabilities = Capabilities()

    def _build_networks(self, image_shape, device):
        return {"generator": Generator(self.config.latent_dim, image_shape, self.config.width, device=device)}

    def _start_fit(self, obs):
        state = super()._start_fit(obs)
        state.steps, state.per_epoch = 0, -(-len(obs) // self.config.batch_size)
        self.calls_ = ["start", self.generator_.training]
        return state

    def _train_step(self, state, obs_b, idx):
        state.steps += 1
        epoch = (state.steps - 1) // state.per_epoch + 1
        loss = idx.float().mean()
        return loss * float("nan") if epoch == self.config.diverge_at else loss

    def _calibration_inputs(self, name, obs):
        self.calls_.append("calibrate")
        return torch.randn(20, self.config.latent_dim, device=obs.device)

    def infer(self, obs):
        return torch.zeros(len(obs), self.config.latent_dim, device=obs.device)


def test_the_loop_shuffles_batches_sums_checks_and_records():
    obs = Identity().observe(_images(10))
    torch.manual_seed(0)
    model = _Recorder(_LoopConfig(latent_dim=3, width=4, n_epochs=2, batch_size=4)).fit(obs)
    torch.manual_seed(0)
    Generator(3, SHAPE, 4)  # the same draws in the same order: network init, then a permutation per epoch
    perms = [torch.randperm(10) for _ in range(2)]
    assert model.calls_ == ["start", True, "calibrate"] and not model.generator_.training
    expected = [sum(p[i:i + 4].float().mean().item() * len(p[i:i + 4]) for i in range(0, 10, 4)) / 10 for p in perms]
    assert model.history_ == pytest.approx(expected) and model.history_[0] == pytest.approx(4.5)
    state = model.state_dict()
    assert set(state) == {"generator", "image_shape", "history"} and state["image_shape"] == list(SHAPE)
    loaded = _Recorder(model.config)
    loaded.load_state_dict(state)
    assert loaded.history_ == pytest.approx(model.history_) and not loaded.generator_.training
    for a, b in zip(model.generator_.state_dict().values(), loaded.generator_.state_dict().values()):
        assert torch.equal(a, b)


def test_the_loop_raises_on_a_non_finite_loss_naming_the_epoch():
    obs = Identity().observe(_images(10))
    with pytest.raises(DivergenceError, match="training loss at epoch 2"):
        _Recorder(_LoopConfig(latent_dim=3, width=4, n_epochs=3, batch_size=4, diverge_at=2)).fit(obs)


def test_abp_keeps_its_persistent_latents_and_calibrates_on_them(monkeypatch):
    import genbench.generator_model as gm
    seen = []
    real = gm.recalibrate_batchnorm
    def spy(net, inputs, batch_size):
        seen.append(inputs)
        real(net, inputs, batch_size)

    monkeypatch.setattr(gm, "recalibrate_batchnorm", spy)
    model = ABP(ABPConfig(latent_dim=3, width=4, n_epochs=1, langevin_steps=1, infer_steps=1))
    model.fit(Identity().observe(_images(10)))
    assert model.z_train_.shape == (10, 3) and len(seen) == 1 and seen[0] is model.z_train_


# -------------------------------------------------------------------------- renamed fields
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_langevin_bn_eval_makes_each_chain_its_own_posterior(mode):
    """langevin_bn="eval": an image's training-time Langevin step does not depend on the other images
    of its batch (running statistics); "train" (batch statistics) couples the chains. BN is back in
    train mode after the step, and its running statistics are not touched by the Langevin steps."""
    from genbench.abp import _bn_mode
    g, obs = _generator().train(), Identity().observe(_images(6))
    z0 = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    bn = next(m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    before = bn.running_mean.clone()
    with _bn_mode(g, mode):
        whole = langevin(g, obs, z0, sigma=0.3, steps=2, step_size=0.1, noise=False)
        first = langevin(g, obs[:2], z0[:2], sigma=0.3, steps=2, step_size=0.1, noise=False)
    assert all(m.training for m in g.modules())
    if mode == "eval":
        torch.testing.assert_close(first, whole[:2])
        torch.testing.assert_close(bn.running_mean, before)
    else:
        assert (first - whole[:2]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="langevin_bn"):
        ABPConfig(langevin_bn="none")


def test_an_added_field_at_its_earlier_behaviour_keeps_the_hash():
    from genbench.model import hashed_config
    assert "langevin_bn" not in hashed_config(ABPConfig())
    assert hashed_config(ABPConfig(langevin_bn="eval"))["langevin_bn"] == "eval"


# -------------------------------------------------------------------------- where inference starts
class _FlatAtZero(nn.Module):
    """A generator that maps a neighbourhood of z = 0 to the blank image with a zero gradient there
    (ReLU units with negative biases), and draws a digit-like bright square once |z_0| > 0.5: what
    the generators learned from heavy occlusion look like near the origin (docs/fair_comparison.md)."""

    latent_dim = 3

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        on = torch.relu(z[:, :1] - 0.5) + torch.relu(-z[:, :1] - 0.5)  # (B, 1): 0 on [-0.5, 0.5]
        square = torch.zeros(1, *SHAPE)
        square[..., 2:6, 2:6] = 1.0
        return (-1 + 2 * torch.tanh(3 * on)[:, :, None, None] * square).clamp(-1, 1)


def _fitted_abp(**overrides) -> ABP:
    model = ABP(ABPConfig(latent_dim=3, width=4, n_epochs=1, langevin_steps=1, **overrides))
    return model.fit(Identity().observe(_images(4)))


def test_gradient_descent_from_zero_stays_on_a_flat_blank_origin_and_a_prior_start_leaves_it():
    """infer_init: abp-gd's inference from z = 0 never moves on a generator that is flat and blank at the
    origin (the failure the reference run's heavy-occlusion rows show); from a prior draw every image whose
    start lies outside the flat region finds the square; Langevin (abp) leaves the origin by its noise."""
    target = _FlatAtZero()(torch.tensor([[2.0, 0.0, 0.0]]))
    obs = PixelMask(p=0.7, seed=0).observe(target.repeat(32, 1, 1, 1))
    errors = {}
    for noise, init in [(False, "zero"), (False, "prior"), (True, "zero")]:
        model = _fitted_abp(langevin_noise=noise, infer_init=init, infer_steps=200, infer_step_size=0.1)
        model.generator_ = _FlatAtZero()
        torch.manual_seed(0)
        start = torch.randn(32, 3)
        torch.manual_seed(0)
        z = model.infer(obs)
        if (noise, init) == (False, "zero"):
            assert torch.equal(z, torch.zeros_like(z))
        errors[noise, init] = (model.generator_(z) - target).abs().mean(dim=(1, 2, 3))
    assert (errors[False, "zero"] > 0.4).all()  # the blank image: the square is missed
    outside = start[:, 0].abs() > 0.55  # the prior starts that are off the flat region
    assert outside.sum() >= 16 and (errors[False, "prior"][outside] < 0.05).all()
    flat = start[:, 0].abs() < 0.5
    assert flat.any() and (errors[False, "prior"][flat] > 0.4).all()  # a start on the flat region stays there
    assert (errors[True, "zero"] < 0.05).float().mean() > 0.5


def test_restarts_keep_the_lowest_energy_chain_and_one_restart_is_the_plain_call():
    """restarts=R: the zero start plus R-1 prior draws, the chain of lowest final -log p(y, z) kept per image: on
    the flat-origin generator it finds the square wherever some start is off the flat region, its energy is
    never above the zero start's alone, and restarts=1 is the plain langevin call (same numbers)."""
    from genbench.inference import langevin_restarts, neg_log_joint

    target = _FlatAtZero()(torch.tensor([[2.0, 0.0, 0.0]]))
    obs = PixelMask(p=0.7, seed=0).observe(target.repeat(32, 1, 1, 1))
    g = _FlatAtZero()
    starts = torch.cat([torch.zeros(1, 32, 3), torch.randn(3, 32, 3, generator=torch.Generator().manual_seed(1))])
    kw = {"sigma": 0.3, "steps": 200, "step_size": 0.1, "noise": False}
    best = langevin_restarts(g, obs, starts, **kw)
    zero = langevin_restarts(g, obs, starts[:1], **kw)
    assert torch.equal(zero, langevin(g, obs, starts[0], **kw)) and torch.equal(zero, torch.zeros_like(zero))
    energy = {k: neg_log_joint(obs, g(z), z, 0.3) for k, z in (("best", best), ("zero", zero))}
    assert (energy["best"] <= energy["zero"] + 1e-4).all()
    found = (g(best) - target).abs().mean(dim=(1, 2, 3)) < 0.05
    reachable = (starts[1:, :, 0].abs() > 0.55).any(0)  # some prior start off the flat region
    assert reachable.sum() >= 24 and found[reachable].all()
    # through the model: restarts and infer_init are inference fields; restarts=1 is deterministic again
    model = _fitted_abp(langevin_noise=False, infer_steps=200, infer_step_size=0.1, restarts=4)
    model.generator_ = g
    assert not model.deterministic_inference and model.infer_steps == 800
    torch.manual_seed(0)
    recovered = (g(model.infer(obs)) - target).abs().mean(dim=(1, 2, 3)) < 0.05
    assert recovered.float().mean() > 0.75
    with pytest.raises(ValueError, match="restarts"):
        ABPConfig(restarts=0)


def test_infer_init_draws_the_start_from_the_seeded_stream_and_is_an_inference_field():
    from genbench.model import hashed_config
    from genbench.planning import Cell, fit_key
    from genbench.registry import get_model

    obs = Identity().observe(_images(5))
    model = _fitted_abp(langevin_noise=False, infer_steps=0)
    assert torch.equal(model.infer(obs), torch.zeros(5, 3)) and model.deterministic_inference
    prior = model.with_config(dataclasses.replace(model.config, infer_init="prior"))
    assert not prior.deterministic_inference  # two calls differ unless the stream is seeded
    torch.manual_seed(3)
    expected = torch.randn(5, 3)
    torch.manual_seed(3)
    assert torch.equal(prior.infer(obs), expected)
    # the default keeps every earlier hash; "prior" changes the cell's hash but not its fit
    assert "infer_init" not in hashed_config(ABPConfig()) and hashed_config(prior.config)["infer_init"] == "prior"
    cell, spec = Cell("abp-gd", 3, 0, "reconstruction", "identity", "clean-train"), get_model("abp-gd")
    assert fit_key(cell, spec, model.config).key == fit_key(cell, spec, prior.config).key
    with pytest.raises(ValueError, match="infer_init"):
        ABPConfig(infer_init="random")


RENAMES = [(ABPConfig, "test_steps", "infer_steps"), (ABPConfig, "test_step_size", "infer_step_size"),
           (VAEConfig, "refine_steps", "infer_steps"), (VAEConfig, "refine_step_size", "infer_step_size"),
           (VAEConfig, "refine_noise", "infer_noise"), (DCGANConfig, "inversion_steps", "infer_steps"),
           (DCGANConfig, "inversion_lr", "infer_step_size"), (RBMConfig, "recovery_iters", "infer_steps"),
           (RBMConfig, "projection_iters", "infer_projection_steps"),
           (RBMConfig, "projection_step_size", "infer_step_size")]


@pytest.mark.parametrize("config_cls, old, new", RENAMES, ids=[f"{c.__name__}.{o}" for c, o, _ in RENAMES])
def test_old_names_are_refused_with_the_new_one(config_cls, old, new):
    message = f"model config field '{old}' was renamed to '{new}'"
    assert config_cls.renamed_fields[old] == new and new in {f.name for f in dataclasses.fields(config_cls)}
    with pytest.raises(ValueError, match=message):
        check_renamed(config_cls, ["latent_dim", old])
    with pytest.raises(ValueError, match=message):
        config_cls(**{old: 1})
    with pytest.raises(ValueError, match=message):
        config_cls.from_dict({"latent_dim": 4, old: 1})
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(config_cls(), **{old: 1})
    check_renamed(config_cls, [new, "latent_dim"])  # the new names pass


def test_from_dict_round_trips_and_configs_still_pickle():
    import pickle
    config = ABPConfig(latent_dim=3, infer_steps=7)
    assert ABPConfig.from_dict(dataclasses.asdict(config)) == config
    assert pickle.loads(pickle.dumps(config)) == config and dataclasses.replace(config, infer_steps=2).infer_steps == 2


def test_config_roots():
    assert issubclass(ModelConfig, BaseConfig) and not dataclasses.fields(BaseConfig)
    from genbench.model import ReferenceConfig
    assert issubclass(ReferenceConfig, BaseConfig) and not issubclass(ReferenceConfig, ModelConfig)
    assert not dataclasses.fields(ReferenceConfig)


def test_generator_model_is_still_reachable_from_genbench_model():
    import genbench.model as model
    assert model.GeneratorModel is GeneratorModel and model.GeneratorConfig is GeneratorConfig
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        model.Nope  # noqa: B018
    assert isinstance(Generator(3, SHAPE, 4), nn.Module)
