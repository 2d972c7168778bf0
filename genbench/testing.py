"""The model contract, shipped with the package: the checks every registered model passes (STYLE.md 7), the
way scikit-learn ships ``check_estimator``. A plug-in author runs them with no clone of the repository::

    from genbench.testing import check_model
    check_model("my-model")          # {"capabilities": "ok", ..., "beats_mean_image": "skipped: ..."}

or from pytest, one test per check (``tests/test_model_contract.py`` does this for every registered model)::

    @pytest.mark.parametrize("check", CHECKS)
    def test_contract(check):
        run_check("my-model", check)   # AssertionError on a broken contract; Skip where it does not apply

Fast checks use the model's ``dry_run_overrides`` (one step); the learning check its ``tiny_overrides``
(seconds on 200 real 8x8 digits: scikit-learn's) and asks it to beat the mean image (a declared
``tiny_limits`` entry: the operator's naive inverse instead). What a model is asked is what its
``capabilities`` declare: the operators it supports, a latent code, samples, deterministic inference.
Trivial floors (``capabilities.floor``) are what the others must beat and skip the learning check.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genbench.data import DataConfig, DataSplits, load_data
from genbench.metrics import score
from genbench.model import BaseConfig, Capabilities, LatentModel, MissingCapabilityError, NotFittedError
from genbench.model import UnsupportedOperatorError
from genbench.operators import PixelMask, RandomProjection
from genbench.registry import available_operators, get_model

SHAPE = (1, 8, 8)
LATENT = 4

__all__ = ["CHECKS", "Skip", "check_model", "run_check", "tiny_data"]


class Skip(Exception):
    """A check that does not apply to this model (the reason is the message)."""


@functools.lru_cache(maxsize=1)
def tiny_data() -> DataSplits:
    """200 train / 50 test real 8x8 digits in [-1, 1] (scikit-learn's; no network)."""
    return load_data(DataConfig(name="digits", n_train=200, n_test=50, n_negative=20))


def operators() -> list[str]:
    """The registered operators, identity first."""
    return sorted(available_operators(), key=lambda name: (name != "identity", name))


def make_operator(op_name: str) -> Any:
    """The registered operator's example instance for 8x8 images (seed 1)."""
    return available_operators()[op_name].example(SHAPE, 1)


def build(name: str, tiny: bool = False) -> LatentModel:
    spec = get_model(name)
    latent = {"latent_dim": LATENT} if spec.cls.capabilities.latent_code else {}
    return spec.build(**latent, **(spec.cls.tiny_overrides if tiny else spec.cls.dry_run_overrides))


def supports(name: str, op: Any) -> bool:
    return isinstance(op, get_model(name).cls.capabilities.operators)


def first_supported(name: str) -> Any:
    """The first registered operator the model supports (identity for every latent model)."""
    return next(op for op in map(make_operator, operators()) if supports(name, op))


def is_reference(name: str) -> bool:
    return not get_model(name).cls.capabilities.latent_code


def observe(op: Any, x: torch.Tensor, stream: int) -> Any:
    op.reset(stream)
    return op.observe(x)


def _raises(kind: type[BaseException] | tuple, pattern: str, call: Callable[[], Any]) -> None:
    try:
        call()
    except kind as err:
        if not re.search(pattern, str(err)):
            raise AssertionError(f"{type(err).__name__} raised, but its message {str(err)!r} does not match "
                                 f"{pattern!r}") from err
        return
    raise AssertionError(f"expected {kind} matching {pattern!r}; nothing was raised")


# -------------------------------------------------------------------------------------------- checks
def capabilities(name: str, data: DataSplits) -> None:
    cls = get_model(name).cls
    caps = cls.capabilities
    assert isinstance(caps, Capabilities) and caps.operators, f"{name}: capabilities must be a Capabilities"
    assert all(isinstance(c, type) for c in caps.operators), f"{name}: capabilities.operators must hold classes"
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    assert ("latent_dim" in fields) == caps.latent_code, f"{name}: a latent_dim field iff a latent code"
    assert build(name).deterministic_inference in (True, False)


def config_frozen(name: str, data: DataSplits) -> None:
    model = build(name)
    assert dataclasses.is_dataclass(model.config) and isinstance(model.config, BaseConfig)
    _raises(dataclasses.FrozenInstanceError, "", lambda: setattr(model.config, "latent_dim", 3))
    assert not model.is_fitted, f"{name} says it is fitted before fit"
    assert not [k for k in vars(model) if k.endswith("_")], f"{name}: fitted state (name_) only after fit"
    _raises(ValueError, "latent_dim", lambda: get_model(name).make_config(latent_dim=3 if is_reference(name) else 0))


def shapes_and_range(name: str, data: DataSplits) -> None:
    """fit / infer / reconstruct / sample on every registered operator: shapes, dtype, [-1, 1]; an
    unsupported operator is refused by name; a missing capability is an error naming it."""
    for op_name in operators():
        op = make_operator(op_name)
        if not supports(name, op):
            _raises(UnsupportedOperatorError, type(op).__name__, lambda: build(name).fit(observe(op, data.train, 1)))
            continue
        model = build(name)
        assert model.fit(observe(op, data.train, 1)) is model, f"{name}.fit must return self"
        test = observe(op, data.test, 2)
        x_hat = model.reconstruct(test)
        assert x_hat.shape == data.test.shape and x_hat.dtype == torch.float32, f"{name} on {op_name}"
        assert x_hat.min() >= -1 and x_hat.max() <= 1, f"{name} on {op_name}: recovery outside [-1, 1]"
        if is_reference(name):
            calls = [("latent_code", lambda: model.infer(test))]
            calls += [] if model.capabilities.samples else [("samples", lambda: model.sample(2))]
            for capability, call in calls:  # a clear error naming the capability the caller should check
                _raises(MissingCapabilityError, f"capabilities.{capability} is False", call)
            continue
        z = model.infer(test)
        assert z.shape == (len(data.test), LATENT) and torch.isfinite(z).all(), f"{name}.infer on {op_name}"
        samples = model.sample(5)
        assert samples.shape == (5, *SHAPE) and samples.min() >= -1 and samples.max() <= 1, f"{name}.sample"
        assert model.infer_steps >= 0


def errors(name: str, data: DataSplits) -> None:
    model = build(name)
    op = first_supported(name)
    _raises(NotFittedError, "fit", lambda: model.reconstruct(op.observe(data.test)))
    _raises(TypeError, "Observations", lambda: model.fit(data.train))
    model.fit(op.observe(data.train))
    other = RandomProjection(k=32, image_shape=(1, 16, 16), seed=1) if isinstance(op, RandomProjection) else op
    _raises(ValueError, "fitted on images|built for images",
            lambda: model.reconstruct(other.observe(torch.zeros(2, 1, 16, 16))))


def same_seed_same_numbers(name: str, data: DataSplits) -> None:
    outputs = []
    op = first_supported(name)
    with torch.random.fork_rng(devices=[]):
        for _ in range(2):
            torch.manual_seed(7)
            model = build(name).fit(observe(op, data.train, 1))
            torch.manual_seed(8)
            outputs.append(model.reconstruct(observe(op, data.test, 2)))
    assert torch.equal(outputs[0], outputs[1]), f"{name}: the same seed gave other numbers"


def batch_independent(name: str, data: DataSplits) -> None:
    op = first_supported(name)
    model = build(name).fit(observe(op, data.train, 1))
    if not model.deterministic_inference:
        raise Skip(f"{name} draws random numbers at inference (noise or random restarts)")
    test_op = op if isinstance(op, RandomProjection) else PixelMask(p=0.5, seed=0)
    obs = test_op.observe(data.test)
    whole = model.reconstruct(obs)
    pieces = torch.cat([model.reconstruct(obs[i:i + 7]) for i in range(0, len(obs), 7)])
    assert torch.allclose(whole, pieces, atol=1e-5), f"{name}: inference depends on the batch size"


def save_load(name: str, data: DataSplits) -> None:
    op = first_supported(name)
    model = build(name).fit(observe(op, data.train, 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pt"
        model.save(path)
        loaded = type(model).load(path)
    assert loaded.config == model.config, f"{name}: the config did not round-trip"
    obs = observe(op, data.test, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        before = model.reconstruct(obs)
        torch.manual_seed(3)
        after = loaded.reconstruct(obs)
    assert torch.allclose(before, after, atol=1e-6), f"{name}: a loaded model recovers differently"


def beats_mean_image(name: str, data: DataSplits) -> None:
    """Trained on tiny data (``tiny_overrides``), the model recovers test images 5 % better than the training
    mean (scored on the occluded pixels for masks), on identity and pixel masks, and a reference method on every
    operator it supports. A declared ``tiny_limits`` entry asks for the weaker claim instead: 20 % better than
    the operator's naive inverse (10 % for a reference method on its other operators)."""
    cls = get_model(name).cls
    if cls.capabilities.floor:
        raise Skip(f"{name} is a trivial floor: it is what the others must beat")
    basic = ["identity", "pixel-mask"]
    names = basic + [n for n in operators() if n not in basic] if is_reference(name) else basic
    checked = 0
    for op_name in names:
        op = make_operator(op_name)
        if not supports(name, op):
            continue
        model = build(name, tiny=True).fit(observe(op, data.train, 1))
        test = observe(op, data.test, 2)
        scored = test.occluded()
        ours = score(data.test, model.reconstruct(test), scored)["mae"]
        limit = cls.tiny_limits.get(op_name)
        if limit:  # a declared, documented limit: the weaker claim
            naive = score(data.test, test.naive_inverse(), scored)["mae"]
            factor = 0.8 if op_name in basic else 0.9
            assert ours < factor * naive, f"{name} on {op_name}: mae {ours:.4f} vs naive inverse {naive:.4f} ({limit})"
        else:
            mean = data.train.mean(0, keepdim=True).expand_as(data.test)
            baseline = score(data.test, mean, scored)["mae"]
            assert ours < 0.95 * baseline, f"{name} on {op_name}: mae {ours:.4f} vs mean image {baseline:.4f}"
        checked += 1
    if not checked:
        raise Skip(f"{name} supports none of {names}")


#: name -> check(model name, data); each raises AssertionError (broken contract) or Skip (does not apply)
CHECKS: dict[str, Callable[[str, DataSplits], None]] = {
    "capabilities": capabilities, "config_frozen": config_frozen, "shapes_and_range": shapes_and_range,
    "errors": errors, "same_seed_same_numbers": same_seed_same_numbers, "batch_independent": batch_independent,
    "save_load": save_load, "beats_mean_image": beats_mean_image,
}


def run_check(name: str, check: str, data: DataSplits | None = None) -> None:
    """One check of one registered model (raises AssertionError, or :class:`Skip`; pytest users map Skip to
    ``pytest.skip``)."""
    CHECKS[check](name, tiny_data() if data is None else data)


def check_model(name: str, data: DataSplits | None = None) -> dict[str, str]:
    """Every check of :data:`CHECKS` on a registered model: ``{check: "ok" | "skipped: why"}``; the first broken
    one raises its AssertionError (or the model's own exception)."""
    out = {}
    for check in CHECKS:
        try:
            run_check(name, check, data)
            out[check] = "ok"
        except Skip as skip:
            out[check] = f"skipped: {skip}"
    return out
