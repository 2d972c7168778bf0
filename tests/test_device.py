"""No tensor on the wrong device (STYLE.md 11): library code creates tensors on the device of
its inputs (``device=x.device``, ``*_like``, ``x.new_*``) or says ``device="cpu"`` where the host
is meant; it never relies on torch's default device.

There is no second device on a CPU-only machine, so :class:`DeviceGuard` makes one: inside it,
every factory call (``torch.zeros``, ``randn``, ``arange``, ``tensor``, a layer's parameters ...)
that names no device lands on ``meta`` (shape only, no data), and any operation that meets a meta
tensor and a real one raises :class:`StrayTensorError` naming the operation. The inputs live on
the CPU, so correct code never sees a meta tensor; one ``torch.zeros(n)`` without ``device=``
fails the test where on a GPU it would have raised (or silently copied) at run time.
(Meta tensors also refuse ``.item()``, ``.tolist()`` and copies to a real device, which catches
the rest.) :func:`test_the_guard_catches_a_tensor_made_without_a_device` shows it working on
test doubles that make exactly those mistakes.

Every registered model runs fit / infer / reconstruct / decode / sample / save / load under the
guard, with its ``tiny_overrides`` (epochs capped: device bugs show in the first steps) on its
first supported operator, as in tests/test_model_contract.py; so do the operators and every
task's variants.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._pytree import tree_flatten

from genbench.abp import ABP
from genbench.backbone import ConvTrunk, Generator
from genbench.model import LatentModel
from genbench.operators import Identity, Observations
from genbench.registry import (
    available_models,
    available_operators,
    available_tasks,
    get_model,
)
from genbench.task import RecoveryTask

MODELS = sorted(available_models())
SHAPE = (1, 8, 8)
LATENT = 4
META = torch.device("meta")
#: every registered operator's example instance, identity first (as in tests/test_model_contract.py)
OPERATORS = {name: (lambda name=name: available_operators()[name].example(SHAPE, 1))
             for name in sorted(available_operators(), key=lambda name: (name != "identity", name))}
#: caps on top of tiny_overrides: every code path runs, but for a few steps only
FEW_STEPS = {"n_epochs": 2, "em_iters": 2}


class StrayTensorError(AssertionError):
    """An operation met a tensor that was created without an explicit device."""


class DeviceGuard(TorchFunctionMode):
    """Factory calls without a device make meta tensors; mixing meta with a real device raises."""

    def __init__(self) -> None:
        super().__init__()
        self.constructors = _device_constructors()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.constructors and kwargs.get("device") is None:
            kwargs["device"] = META
        devices = {t.device for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)}
        if META in devices and len(devices) > 1:
            name = getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))
            raise StrayTensorError(f"{name} mixes {sorted(map(str, devices))}: a tensor was created "
                                   f"without device= (it landed on the default device)")
        try:
            return func(*args, **kwargs)
        except NotImplementedError as err:  # e.g. "Cannot copy out of meta tensor"
            if "meta" in str(err):
                raise StrayTensorError(f"{err}: a tensor was created without device=") from err
            raise


def _on_cpu(tree, what: str) -> None:
    leaves = tree_flatten(tree)[0]
    bad = [t.device for t in leaves if isinstance(t, Tensor) and t.device.type != "cpu"]
    assert not bad, f"{what} holds tensors on {sorted(map(str, set(bad)))}, expected the inputs' device (cpu)"


def _first_supported(name: str):
    cls = get_model(name).cls
    return next(make() for make in OPERATORS.values() if isinstance(make(), cls.capabilities.operators))


def _build(name: str) -> LatentModel:
    spec = get_model(name)
    fields = spec.cls.Config.__dataclass_fields__
    overrides = {**spec.cls.tiny_overrides, **{k: v for k, v in FEW_STEPS.items() if k in fields}}
    if spec.cls.capabilities.latent_code:
        overrides["latent_dim"] = LATENT
    return spec.build(**overrides)


def _observe(op, x: Tensor, stream: int) -> Observations:
    op.reset(stream)
    return op.observe(x)


def _exercise(model: LatentModel, op, tiny, tmp_path) -> None:
    """Every public call of a model under the guard, inputs on the CPU; outputs must be there too."""
    with DeviceGuard():
        train, test = _observe(op, tiny.train[:60], 1), _observe(op, tiny.test[:12], 2)
        assert model.fit(train) is model
        x_hat = model.reconstruct(test)
        _on_cpu(x_hat, "reconstruct")
        if model.capabilities.latent_code:
            z = model.infer(test)
            _on_cpu((z, model.decode(z)), "infer / decode")
        if model.capabilities.samples:
            _on_cpu(model.sample(3), "sample")
        _on_cpu(model.state_dict(), "state_dict")
        model.save(tmp_path / "model.pt")
        loaded = type(model).load(tmp_path / "model.pt")
        _on_cpu((loaded.reconstruct(test), loaded.state_dict()), "a loaded model")


#: known strays in files owned elsewhere: model -> where (remove the entry once fixed)
@pytest.mark.parametrize("name", MODELS)
def test_model_creates_no_tensor_on_the_default_device(name, tiny, tmp_path):
    _exercise(_build(name), _first_supported(name), tiny, tmp_path)


@pytest.mark.parametrize("op_name", OPERATORS)
def test_operator_creates_no_tensor_on_the_default_device(op_name, tiny):
    with DeviceGuard():
        op = OPERATORS[op_name]()
        obs = _observe(op, tiny.test[:5], 2)
        x_hat = torch.zeros_like(tiny.test[:5]).requires_grad_(True)
        obs.apply(x_hat).sum().backward()
        adjoint = op.adjoint(obs.y, obs.mask)
        _on_cpu((obs.y, obs.mask, obs.naive_inverse(), obs.occluded(), x_hat.grad, list(op.buffers()), adjoint),
                op_name)
        assert obs.n_observed > 0


@pytest.mark.parametrize("task_name", sorted(available_tasks()))
def test_task_variants_observe_on_the_inputs_device(task_name, tiny):
    task = available_tasks()[task_name]()
    with DeviceGuard():
        for variant in task.variants(SHAPE):
            op = variant.make_operator(SHAPE, 0)
            obs = _observe(op, tiny.test[:5], 2)
            _on_cpu((obs.y, obs.mask, obs.naive_inverse()), f"{task_name}/{variant.name}")
    # scoring is host-side by design (float64 on the CPU, metrics.MetricAccumulator)
    if isinstance(task, RecoveryTask):  # a task that evaluates the model itself scores no recovery
        assert task.score(obs, tiny.test[:5], obs.naive_inverse().clamp(-1, 1))


# ------------------------------------------------------------------------ the guard itself
class _StrayLatents(ABP):
    """Test double: starts inference from torch.zeros without device= (the bug to catch)."""

    def infer(self, obs: Observations) -> Tensor:
        return super().infer(obs) + torch.zeros(len(obs), self.config.latent_dim)


class _StrayGenerator(ABP):
    """Test double: builds its generator on the default device, then moves it."""

    def fit(self, obs: Observations) -> ABP:
        super().fit(obs)
        self.generator_ = Generator(self.config.latent_dim, obs.image_shape, self.config.width).to(obs.device)
        return self


def test_the_guard_catches_a_tensor_made_without_a_device(tiny, tmp_path):
    config = ABP.Config(latent_dim=LATENT, n_epochs=1, width=4, infer_steps=2)
    with pytest.raises(StrayTensorError, match="without device"):
        _exercise(_StrayLatents(config), Identity(), tiny, tmp_path)
    with pytest.raises(StrayTensorError, match="without device"):
        _exercise(_StrayGenerator(config), Identity(), tiny, tmp_path)
    with DeviceGuard():  # the corrected spellings pass
        x = tiny.test[:2]
        assert (x + torch.zeros(2, 1, 8, 8, device=x.device)).device == x.device
        assert Generator(LATENT, SHAPE, 4, device=x.device)(torch.zeros(2, LATENT, device=x.device)).shape == x.shape
        assert ConvTrunk(SHAPE, 3, 4, device=x.device)(x).shape == (2, 3)


# ------------------------------------------------------------------------ --amp and --compile
def test_amp_is_a_no_op_on_cpu(tiny):
    obs = Identity().observe(tiny.train[:60])
    outputs = []
    for amp in (False, True):
        torch.manual_seed(0)
        model = ABP(ABP.Config(latent_dim=LATENT, n_epochs=1, width=4, infer_steps=3, amp=amp)).fit(obs)
        outputs.append(model.reconstruct(obs))
    assert torch.equal(*outputs)


def test_runner_passes_execution_switches_to_the_models_that_have_them():
    from dataclasses import asdict

    from genbench.config import resolve_config
    from genbench.model import EXECUTION_FIELDS, hashed_config
    from genbench.modelconfig import added_fields
    from genbench.planning import (
        cell_model_config,  # the one builder of a cell's model config
    )
    from genbench.runner import Runner

    notes: list[str] = []
    on = resolve_config("quick", overrides=["amp=true", "compile=true", "device=cpu"])
    Runner(on, log=notes.append)
    abp, pca = cell_model_config(get_model("abp"), on, 4), cell_model_config(get_model("pca"), on, 4)
    assert abp.amp and abp.compile and not hasattr(pca, "amp")
    assert any("--amp" in n and "no-op" in n for n in notes)
    off = cell_model_config(get_model("abp"), resolve_config("quick"), 4)
    assert not off.amp and not off.compile
    # switched off they are left out of the hashes, so runs without them keep their config hashes
    added = added_fields(type(off))  # fields added since (at their earlier behaviour) are left out too
    assert hashed_config(off) == {k: v for k, v in asdict(off).items() if k not in EXECUTION_FIELDS + tuple(added)}
    assert hashed_config(abp)["amp"] is True


def test_cli_flags_set_amp_and_compile():
    from genbench.cli import _flags, build_parser

    assert _flags(build_parser().parse_args(["--amp", "--compile"]))["amp"] is True
    assert _flags(build_parser().parse_args([]))["compile"] is None  # unset: the preset decides


@pytest.mark.slow
def test_compiled_generator_fits_and_infers_like_eager(tiny, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("torch.compile takes a minute on the CPU: opt in with -m slow")
    obs = Identity().observe(tiny.train[:100])
    outputs = []
    for compile_ in (False, True):
        torch.manual_seed(0)
        model = ABP(ABP.Config(latent_dim=LATENT, n_epochs=2, width=4, infer_steps=5, langevin_noise=False,
                               compile=compile_)).fit(obs)
        outputs.append(model.reconstruct(obs))
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-3, rtol=0)


def test_stacked_fits_create_no_tensor_on_the_default_device(tiny):
    """``--stack``: the stacked ensemble (genbench/stacked.py) under the guard, as the models above."""
    from genbench.stacked import fit_stacked

    spec = get_model("abp")
    config = spec.make_config(**{**spec.cls.tiny_overrides, "n_epochs": 1, "latent_dim": LATENT})
    with DeviceGuard():
        obs = [Identity().observe(tiny.train[:40]), Identity().observe(tiny.train[40:80])]
        models = fit_stacked(config, obs, [torch.Generator().manual_seed(s) for s in (0, 1)])
        for model in models:
            _on_cpu((model.z_train_, model.state_dict(), model.reconstruct(obs[0][:4])), "a stacked fit")
