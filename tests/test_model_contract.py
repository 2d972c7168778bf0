"""The contract every registered model passes (STYLE.md 7): parametrised over the registries of
models and operators, so a new model or operator, built-in or plug-in, gets these checks for free
(each registered operator's ``example`` builds the instance the digits are observed through).

Fast checks use the model's ``dry_run_overrides`` (one step); the learning check uses its
``tiny_overrides`` (seconds on 200 8x8 digits) and asks it to beat the mean image. What a model
is asked is what its ``capabilities`` declare: the operators it supports, whether it has a latent
code (``infer``, ``decode``, a ``latent_dim``) and whether it samples."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from genbench.metrics import score
from genbench.model import (BaseConfig, Capabilities, LatentModel, MissingCapabilityError, NotFittedError,
                            UnsupportedOperatorError)
from genbench.operators import Identity, PixelMask, RandomProjection
from genbench.registry import RegistryError, available_models, available_operators, get_model, register_model

MODELS = sorted(available_models())
SHAPE = (1, 8, 8)
#: the registered operators, identity first (the first supported one is the fast checks' operator)
OPERATORS = sorted(available_operators(), key=lambda name: (name != "identity", name))
LATENT = 4


def _make_operator(op_name: str):
    """The registered operator's example instance for 8x8 images (seed 1)."""
    return available_operators()[op_name].example(SHAPE, 1)


def _build(name: str, tiny: bool = False) -> LatentModel:
    spec = get_model(name)
    latent = {"latent_dim": LATENT} if spec.cls.capabilities.latent_code else {}
    return spec.build(**latent, **(spec.cls.tiny_overrides if tiny else spec.cls.dry_run_overrides))


def _supports(name: str, op) -> bool:
    return isinstance(op, get_model(name).cls.capabilities.operators)


def _first_supported(name: str):
    """The first registered operator the model supports (identity for every latent model)."""
    return next(op for op in map(_make_operator, OPERATORS) if _supports(name, op))


def _is_reference(name: str) -> bool:
    return not get_model(name).cls.capabilities.latent_code


def _observe(op, x: torch.Tensor, stream: int):
    op.reset(stream)
    return op.observe(x)


def test_builtin_models_are_registered():
    assert {"abp", "abp-gd", "pca", "rbm", "dbn", "vae", "vae-refine", "dcgan",
            "biharmonic", "lasso-dct"} <= set(MODELS)


def test_every_operator_is_registered_with_an_example():
    assert {"identity", "pixel-mask", "block-mask", "projection"} <= set(OPERATORS)
    for op_name in OPERATORS:
        op = _make_operator(op_name)
        assert op.name == op_name and op.observe(torch.zeros(2, *SHAPE)).image_shape == SHAPE


@pytest.mark.parametrize("name", MODELS)
def test_capabilities_are_declared_and_consistent(name):
    cls = get_model(name).cls
    caps = cls.capabilities
    assert isinstance(caps, Capabilities) and caps.operators
    assert all(isinstance(c, type) for c in caps.operators)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    assert ("latent_dim" in fields) == caps.latent_code  # no number stands for "no latent code"
    assert _build(name).deterministic_inference in (True, False)


@pytest.mark.parametrize("name", MODELS)
def test_config_is_frozen_and_constructor_only_stores_it(name):
    model = _build(name)
    assert dataclasses.is_dataclass(model.config) and isinstance(model.config, BaseConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.latent_dim = 3
    assert not model.is_fitted
    assert not [k for k in vars(model) if k.endswith("_")]  # fitted state only after fit
    with pytest.raises(ValueError, match="latent_dim"):  # reference methods take no latent dim
        get_model(name).make_config(latent_dim=3 if _is_reference(name) else 0)


@pytest.mark.parametrize("op_name", OPERATORS)
@pytest.mark.parametrize("name", MODELS)
def test_fit_infer_reconstruct_sample_shapes_and_range(name, op_name, tiny):
    op = _make_operator(op_name)
    if not _supports(name, op):
        with pytest.raises(UnsupportedOperatorError, match=type(op).__name__):
            _build(name).fit(_observe(op, tiny.train, 1))
        return
    model = _build(name)
    assert model.fit(_observe(op, tiny.train, 1)) is model
    test = _observe(op, tiny.test, 2)
    if _is_reference(name):  # no latent code (and here no samples): only the recovery
        x_hat = model.reconstruct(test)
        assert x_hat.shape == tiny.test.shape and x_hat.min() >= -1 and x_hat.max() <= 1
        calls = [("latent_code", lambda: model.infer(test))]
        calls += [] if model.capabilities.samples else [("samples", lambda: model.sample(2))]
        for capability, call in calls:  # a clear error naming the capability the caller should check
            with pytest.raises(MissingCapabilityError, match=f"capabilities.{capability} is False"):
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
    ops = [n for n in OPERATORS if _supports(name, _make_operator(n))]
    assert ops, f"{name} supports no operator"
    for op_name in ops:  # they learn nothing: the weaker bar is 10% better than the naive inverse
        _check_beats_mean(name, op_name, tiny, naive_factor=0.9)


def _check_beats_mean(name: str, op_name: str, tiny, naive_factor: float = 0.8) -> None:
    """Trained on tiny data, the model recovers test images better than the training mean does
    (scored on the occluded pixels for masks)."""
    op = _make_operator(op_name)
    if not _supports(name, op):
        pytest.skip(f"{name} does not support {op_name}")
    if get_model(name).cls.capabilities.floor:
        pytest.skip(f"{name} is a trivial floor: it is what the others must beat (tests/test_floors.py)")
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
    capabilities = Capabilities()

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
        capabilities = Capabilities()

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
        register_model("test-vae-more-refine", shares_fit_with="vae", infer_steps=300)(VAE)  # inference only
    finally:
        import genbench.registry as registry
        for name in ("test-vae-short", "test-not-vae", "test-vae-more-refine"):
            registry._MODELS.pop(name, None)


def test_with_config_only_changes_inference_fields(tiny):
    model = _build("vae").fit(Identity().observe(tiny.train))
    refined = model.with_config(dataclasses.replace(model.config, infer_steps=5))
    assert refined.generator_ is model.generator_ and refined.infer_steps == 5 and model.infer_steps == 0
    with pytest.raises(ValueError, match="change the fit"):
        model.with_config(dataclasses.replace(model.config, n_epochs=2))
