"""The contract every registered model passes (STYLE.md 7): parametrised over the registry, so a
new model, built-in or plug-in, gets these checks for free.

Fast checks use the model's ``dry_run_overrides`` (one step); the learning check uses its
``tiny_overrides`` (seconds on 200 8x8 digits) and asks it to beat the mean image."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from genbench.metrics import score
from genbench.model import LatentModel, ModelConfig, NotFittedError, UnsupportedOperatorError
from genbench.operators import BlockMask, Identity, PixelMask, RandomProjection
from genbench.registry import RegistryError, available_models, get_model, register_model

MODELS = sorted(available_models())
SHAPE = (1, 8, 8)
OPERATORS = {
    "identity": lambda: Identity(seed=1),
    "pixel-mask": lambda: PixelMask(p=0.5, seed=1),
    "block-mask": lambda: BlockMask(size=4, seed=1),
    "projection": lambda: RandomProjection(k=32, image_shape=SHAPE, seed=1),
}
LATENT = 4


def _build(name: str, tiny: bool = False) -> LatentModel:
    spec = get_model(name)
    latent = {"latent_dim": LATENT} if spec.cls.uses_latent_dim else {}
    return spec.build(**latent, **(spec.cls.tiny_overrides if tiny else spec.cls.dry_run_overrides))


def _supports(name: str, op) -> bool:
    return isinstance(op, get_model(name).cls.supported_operators)


def _first_supported(name: str):
    """The first operator of OPERATORS the model supports (identity for every latent model)."""
    return next(make() for make in OPERATORS.values() if _supports(name, make()))


def _is_reference(name: str) -> bool:
    return not get_model(name).cls.uses_latent_dim


def _observe(op, x: torch.Tensor, stream: int):
    op.reset(stream)
    return op.observe(x)


def test_builtin_models_are_registered():
    assert {"abp", "abp-gd", "pca", "rbm", "dbn", "vae", "vae-refine", "dcgan",
            "biharmonic", "lasso-dct"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_config_is_frozen_and_constructor_only_stores_it(name):
    model = _build(name)
    assert dataclasses.is_dataclass(model.config) and isinstance(model.config, ModelConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.latent_dim = 3
    assert not model.is_fitted
    assert not [k for k in vars(model) if k.endswith("_")]  # fitted state only after fit
    with pytest.raises(ValueError, match="latent_dim"):  # reference methods take no latent dim
        get_model(name).make_config(latent_dim=3 if _is_reference(name) else 0)


@pytest.mark.parametrize("op_name", OPERATORS)
@pytest.mark.parametrize("name", MODELS)
def test_fit_infer_reconstruct_sample_shapes_and_range(name, op_name, tiny):
    op = OPERATORS[op_name]()
    if not _supports(name, op):
        with pytest.raises(UnsupportedOperatorError, match=type(op).__name__):
            _build(name).fit(_observe(op, tiny.train, 1))
        return
    model = _build(name)
    assert model.fit(_observe(op, tiny.train, 1)) is model
    test = _observe(op, tiny.test, 2)
    if _is_reference(name):  # no latent code, no samples: only the recovery
        x_hat = model.reconstruct(test)
        assert x_hat.shape == tiny.test.shape and x_hat.min() >= -1 and x_hat.max() <= 1
        for call in (lambda: model.infer(test), lambda: model.sample(2)):
            with pytest.raises(NotImplementedError, match="reference method"):
                call()
        return
    z = model.infer(test)
    assert z.shape == (len(tiny.test), LATENT) and torch.isfinite(z).all()
    x_hat = model.reconstruct(test)
    assert x_hat.shape == tiny.test.shape and x_hat.dtype == torch.float32
    assert x_hat.min() >= -1 and x_hat.max() <= 1
    samples = model.sample(5)
    assert samples.shape == (5, *SHAPE) and samples.min() >= -1 and samples.max() <= 1
    assert model.infer_steps >= 0


@pytest.mark.parametrize("name", MODELS)
def test_unfitted_and_bad_input_errors(name, tiny):
    model = _build(name)
    op = _first_supported(name)
    with pytest.raises(NotFittedError, match="fit"):
        model.reconstruct(op.observe(tiny.test))
    with pytest.raises(TypeError, match="Observations"):
        model.fit(tiny.train)
    model.fit(op.observe(tiny.train))
    other = PixelMask(p=0.5, seed=1) if isinstance(op, RandomProjection) else op
    if isinstance(op, RandomProjection):
        other = RandomProjection(k=32, image_shape=(1, 16, 16), seed=1)
    with pytest.raises(ValueError, match="fitted on images|built for images"):
        model.reconstruct(other.observe(torch.zeros(2, 1, 16, 16)))


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_numbers(name, tiny):
    outputs = []
    op = _first_supported(name)
    for _ in range(2):
        torch.manual_seed(7)
        model = _build(name).fit(_observe(op, tiny.train, 1))
        torch.manual_seed(8)
        outputs.append(model.reconstruct(_observe(op, tiny.test, 2)))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("name", MODELS)
def test_inference_independent_of_batch_size_where_deterministic(name, tiny):
    op = _first_supported(name)
    model = _build(name).fit(_observe(op, tiny.train, 1))
    if not model.deterministic_inference:
        pytest.skip(f"{name} draws random numbers at inference (noise or random restarts)")
    test_op = op if isinstance(op, RandomProjection) else PixelMask(p=0.5, seed=0)
    obs = test_op.observe(tiny.test)
    whole = model.reconstruct(obs)
    pieces = torch.cat([model.reconstruct(obs[i:i + 7]) for i in range(0, len(obs), 7)])
    assert torch.allclose(whole, pieces, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tiny, tmp_path):
    op = _first_supported(name)
    model = _build(name).fit(_observe(op, tiny.train, 1))
    path = tmp_path / f"{name}.pt"
    model.save(path)
    loaded = type(model).load(path)
    assert loaded.config == model.config
    obs = _observe(op, tiny.test, 2)
    torch.manual_seed(3)
    before = model.reconstruct(obs)
    torch.manual_seed(3)
    after = loaded.reconstruct(obs)
    assert torch.allclose(before, after, atol=1e-6)


@pytest.mark.parametrize("op_name", ["identity", "pixel-mask"])
@pytest.mark.parametrize("name", MODELS)
def test_learns_better_than_the_mean_image(name, op_name, tiny):
    _check_beats_mean(name, op_name, tiny)


@pytest.mark.parametrize("name", [m for m in MODELS if _is_reference(m)])
def test_reference_methods_beat_the_mean_image_on_every_operator_they_support(name, tiny):
    ops = [n for n, make in OPERATORS.items() if _supports(name, make())]
    assert ops, f"{name} supports no operator"
    for op_name in ops:  # they learn nothing: the weaker bar is 10% better than the naive inverse
        _check_beats_mean(name, op_name, tiny, naive_factor=0.9)


def _check_beats_mean(name: str, op_name: str, tiny, naive_factor: float = 0.8) -> None:
    """Trained on tiny data, the model recovers test images better than the training mean does
    (scored on the occluded pixels for masks)."""
    op = OPERATORS[op_name]()
    if not _supports(name, op):
        pytest.skip(f"{name} does not support {op_name}")
    model = _build(name, tiny=True).fit(_observe(op, tiny.train, 1))
    test = _observe(op, tiny.test, 2)
    scored = test.occluded()
    ours = score(tiny.test, model.reconstruct(test), scored)["mae"]
    limit = get_model(name).cls.tiny_limits.get(op_name)
    if limit:  # a declared, documented limit: check the weaker claim
        naive = score(tiny.test, test.naive_inverse(), scored)["mae"]
        assert ours < naive_factor * naive, f"{name} mae {ours:.4f} vs naive inverse {naive:.4f} ({limit})"
        return
    mean = tiny.train.mean(0, keepdim=True).expand_as(tiny.test)
    baseline = score(tiny.test, mean, scored)["mae"]
    assert ours < 0.95 * baseline, f"{name} mae {ours:.4f} vs mean image {baseline:.4f}"


# -------------------------------------------------------------------------------- the registry
class _Ok(LatentModel):
    def fit(self, obs): return self
    def infer(self, obs): return torch.zeros(len(obs), 1)
    def decode(self, z): return torch.zeros(len(z), *SHAPE)
    def state_dict(self): return {}
    def load_state_dict(self, state): pass


def test_registry_rejects_bad_registrations():
    with pytest.raises(RegistryError, match="already registered"):
        register_model("abp")(_Ok)
    with pytest.raises(RegistryError, match="lower-case"):
        register_model("Bad Name")(_Ok)
    with pytest.raises(RegistryError, match="must subclass"):
        register_model("not-a-model")(object)

    class Half(LatentModel):
        def fit(self, obs): return self

    with pytest.raises(RegistryError, match="does not implement"):
        register_model("half-model")(Half)
    with pytest.raises(RegistryError, match="no config field"):
        register_model("bad-default", nope=1)(_Ok)
    with pytest.raises(RegistryError, match="unknown model 'nope'; available models: .*abp"):
        get_model("nope")


def test_shared_fits_are_checked_at_registration():
    from baselines.vae import VAE
    spec = get_model("vae-refine")
    assert spec.fit_name == "vae" and get_model("vae").fit_name == "vae"
    try:
        with pytest.raises(RegistryError, match=r"differ in \['n_epochs'\]"):
            register_model("test-vae-short", shares_fit_with="vae", n_epochs=3)(VAE)
        with pytest.raises(RegistryError, match="of its class"):
            register_model("test-not-vae", shares_fit_with="vae")(_Ok)
        register_model("test-vae-more-refine", shares_fit_with="vae", refine_steps=300)(VAE)  # inference only
    finally:
        import genbench.registry as registry
        for name in ("test-vae-short", "test-not-vae", "test-vae-more-refine"):
            registry._MODELS.pop(name, None)


def test_with_config_only_changes_inference_fields(tiny):
    model = _build("vae").fit(Identity().observe(tiny.train))
    refined = model.with_config(dataclasses.replace(model.config, refine_steps=5))
    assert refined.generator_ is model.generator_ and refined.infer_steps == 5 and model.infer_steps == 0
    with pytest.raises(ValueError, match="change the fit"):
        model.with_config(dataclasses.replace(model.config, n_epochs=2))
