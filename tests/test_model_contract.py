"""The contract every registered model passes (STYLE.md 7): :mod:`genbench.testing`'s checks, shipped with
the package, parametrised here over the registry of models, so a new model, built-in or plug-in, gets them
for free; plus the registry's own checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from genbench.model import Capabilities, LatentModel
from genbench.operators import Identity
from genbench.registry import RegistryError, available_models, get_model, register_model
from genbench.testing import CHECKS, SHAPE, Skip, build, check_model, make_operator, operators, run_check

MODELS = sorted(available_models())
OPERATORS = operators()


def test_builtin_models_are_registered():
    assert {"abp", "abp-gd", "pca", "rbm", "dbn", "vae", "vae-refine", "dcgan",
            "biharmonic", "lasso-dct"} <= set(MODELS)


def test_every_operator_is_registered_with_an_example():
    assert {"identity", "pixel-mask", "block-mask", "projection"} <= set(OPERATORS)
    for op_name in OPERATORS:
        op = make_operator(op_name)
        assert op.name == op_name and op.observe(torch.zeros(2, *SHAPE)).image_shape == SHAPE


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", MODELS)
def test_contract(name, check, tiny):
    """genbench.testing's checks (shipped with the package, so a plug-in author runs the same ones)."""
    try:
        run_check(name, check, tiny)
    except Skip as skip:
        pytest.skip(str(skip))


def test_check_model_reports_every_check():
    report = check_model("pca")
    assert set(report) == set(CHECKS) and report["capabilities"] == "ok"
    assert check_model("zero")["beats_mean_image"].startswith("skipped: zero is a trivial floor")


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
    model = build("vae").fit(Identity().observe(tiny.train))
    refined = model.with_config(dataclasses.replace(model.config, infer_steps=5))
    assert refined.generator_ is model.generator_ and refined.infer_steps == 5 and model.infer_steps == 0
    with pytest.raises(ValueError, match="change the fit"):
        model.with_config(dataclasses.replace(model.config, n_epochs=2))


def test_the_shipped_checks_catch_a_broken_model():
    class Loud(_Ok):
        """Decodes far outside [-1, 1] and forgets to say it is fitted: the contract must say so."""

        def fit(self, obs):
            self._set_fitted(obs)
            return self

        def infer(self, obs):
            return torch.zeros(len(obs), self.config.latent_dim)

        def decode(self, z):
            return torch.full((len(z), *SHAPE), 5.0)

        def reconstruct(self, obs):
            return self.decode(self.infer(obs))

    import genbench.registry as registry
    register_model("test-loud")(Loud)
    try:
        with pytest.raises(AssertionError, match="outside"):
            run_check("test-loud", "shapes_and_range")
        assert run_check("test-loud", "capabilities") is None
    finally:
        registry._MODELS.pop("test-loud", None)
