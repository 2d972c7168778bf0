"""The one interface every genbench model implements, ours or a user's.

A model learns from :class:`~genbench.operators.Observations` made through any operator (clean
data is the :class:`~genbench.operators.Identity` operator) and recovers images from new ones::

    model = SomeModel(SomeConfig(latent_dim=10))
    model.fit(train_obs)                 # -> model (fitted state ends in "_")
    z = model.infer(test_obs)            # (N, latent_dim)
    x_hat = model.reconstruct(test_obs)  # (N, C, H, W) in [-1, 1]
    x = model.sample(16)                 # (16, C, H, W), where the model can sample

Conventions (see STYLE.md): the constructor stores the config and does nothing else; the
device is the one the observations live on; randomness comes from torch's global generator,
which only the runner seeds. A new model is one file: a frozen config dataclass derived from
:class:`ModelConfig` (or :class:`BaseConfig`, for a method without a latent code), a subclass of
:class:`LatentModel` that declares its :class:`Capabilities`, and ``@register_model("name")``.

Callers ask a model what it can do before calling it: ``model.capabilities.latent_code`` (it has
``infer``/``decode`` on a latent z and takes a ``latent_dim``), ``.learns``, ``.samples``,
``.operators`` (what ``fit`` and ``infer`` accept) and ``model.deterministic_inference``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

# the configs live in genbench.modelconfig; model files have always imported them from here
from genbench.modelconfig import (EXECUTION_FIELDS, BaseConfig, ModelConfig, check_renamed,  # noqa: F401
                                  hashed_config, require)
from genbench.operators import Observations, Operator

M = TypeVar("M", bound="LatentModel")


class NotFittedError(RuntimeError):
    """Raised when a model is used before ``fit``."""


class UnsupportedOperatorError(ValueError):
    """Raised when a model is given observations through an operator it does not handle."""


class DivergenceError(RuntimeError):
    """Raised when a loss or an iterate becomes NaN or infinite."""


class MissingCapabilityError(NotImplementedError):
    """Raised when a model is asked for something its :class:`Capabilities` say it cannot do
    (``infer`` on a model without a latent code, ``sample`` on one that cannot sample)."""


@dataclass(frozen=True)
class Capabilities:
    """What a model class can do, declared once per class (scikit-learn's estimator tags, in
    spirit). Callers check these before calling, rather than catching errors or reading sentinels.

    Example::

        >>> from genbench.abp import ABP
        >>> ABP.capabilities.latent_code, ABP.capabilities.deterministic_inference
        (True, False)
        >>> narrowed = dataclasses.replace(ReferenceMethod.capabilities, operators=(PixelMask, BlockMask))
    """

    latent_code: bool = True   # has infer/decode on a latent z; the runner sweeps latent_dims
    learns: bool = True        # fit learns from data (False: a reference method)
    samples: bool = True       # sample(n) works
    #: the class default; an instance may refine it (abp vs abp-gd) via the
    #: :attr:`LatentModel.deterministic_inference` property
    deterministic_inference: bool = True
    operators: tuple[type, ...] = (Operator,)  # operator classes it can learn from / recover through
    #: a trivial floor (``zero``, ``mean-image``, ``naive-inverse``, baselines/floors.py): the report marks
    #: the rows of other models that do not beat the best floor of their column
    floor: bool = False
    #: can learn, from images all seen through one shared linear map (a projection, K < D), what lies in the
    #: map's null space (a nonlinear generator can, from the structure it finds; a linear or pixel-wise
    #: model cannot): False marks its learn-from-corrupted rows on such operators degenerate (Task.degenerate)
    learns_null_space: bool = True
    #: ``cls.fit_stacked(config, obs_list, generators)`` fits many members of one config at once, each equal to
    #: its own ``fit`` up to float rounding (genbench/stacked.py); the runner's ``--stack M`` uses it for classes
    #: that define ``fit_stacked`` themselves (a subclass's inherited one would ignore its overrides)
    stacks: bool = False


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled`` (``--amp``); elsewhere a no-op: the CPU runs float32.
    Use it around forward passes only and cast network outputs to float32 before the likelihood."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Weights take no gradient inside the block (inference w.r.t. z only), restored after."""
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)


def check_finite(value: Tensor, what: str) -> None:
    """Raise :class:`DivergenceError` if ``value`` has a NaN or inf (one host sync: call it
    once per epoch or per inference call, not per step)."""
    if not bool(torch.isfinite(value).all()):
        raise DivergenceError(f"{what} is NaN or infinite: training diverged (lower the step size "
                              f"or learning rate)")


def state_device(state: Mapping[str, Tensor]) -> torch.device:
    """The device of a module's saved state (what ``torch.load(map_location=...)`` chose): a
    loaded model builds its networks there, so it runs where its weights were loaded."""
    return next(iter(state.values())).device


def progress(iterable: Iterable, desc: str, total: int | None = None) -> Iterator:
    """A tqdm progress bar on stderr, shown only when stderr is a terminal."""
    return iter(tqdm(iterable, desc=desc, total=total, leave=False, disable=None, dynamic_ncols=True))



def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a file that holds other Python objects is refused with a
    ``ValueError`` of our own (torch's message advises ``weights_only=False``, which must never be
    followed for a file one did not make: unpickling runs code)."""
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{Path(path).name} holds Python objects beyond tensors, numbers and strings, so it was "
                         f"not loaded (unpickling it could run code); genbench writes no such file") from None

class LatentModel(ABC):
    """Base class of every model. Subclasses set ``Config`` and implement the abstract methods.

    Class attributes a subclass may set:

    - ``Config``: its frozen config dataclass (a subclass of :class:`ModelConfig`, or of
      :class:`BaseConfig` for a model without a latent code).
    - ``capabilities``: its :class:`Capabilities` (latent code, learns, samples, deterministic
      inference, the operator classes it can learn from / recover through).
    - ``dry_run_overrides``: config values that make ``fit``/``infer`` take one step
      (used by ``run_benchmarks.py --dry-run`` and the fast tests).
    - ``tiny_overrides``: config values that train to something real in a few seconds on tiny
      data (about 200 8x8 images); the contract test checks the model then beats the mean image.
    - ``tiny_limits``: operator names (``"pixel-mask"`` ...) -> why the model cannot beat the mean
      image when it *learns from* that operator on tiny data; the contract test then checks the
      weaker claim that it beats the operator's naive inverse, and prints the reason.
    - ``inference_fields``: config fields used only after fitting (inference steps, restarts ...);
      two configs that differ only in them share one fit (:meth:`with_config`).
    """

    Config: ClassVar[type[BaseConfig]] = ModelConfig
    capabilities: ClassVar[Capabilities] = Capabilities()
    dry_run_overrides: ClassVar[dict[str, Any]] = {}
    tiny_overrides: ClassVar[dict[str, Any]] = {}
    tiny_limits: ClassVar[dict[str, str]] = {}
    inference_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: BaseConfig | None = None) -> None:
        config = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} expects a {self.Config.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config

    # -- the interface --------------------------------------------------------------------
    @abstractmethod
    def fit(self: M, obs: Observations) -> M:
        """Learn from observations (through any supported operator); return ``self``."""

    @abstractmethod
    def infer(self, obs: Observations) -> Tensor:
        """Latent factors (N, latent_dim) that explain new observations."""

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Images (N, C, H, W) in [-1, 1] for latent factors z (N, latent_dim)."""

    def reconstruct(self, obs: Observations) -> Tensor:
        """Full images (N, C, H, W) in [-1, 1] recovered from observations."""
        return self.decode(self.infer(obs)).clamp(-1.0, 1.0)

    @classmethod
    def fit_stacked(cls: type[M], config: Any, obs: Any, generators: Any) -> list[M]:
        """Fit one model per member at once (``Capabilities.stacks``): member m learns from ``obs[m]`` with
        random numbers from ``generators[m]``, as ``cls(config).fit(obs[m])`` would after the global generator
        was seeded like it. Models that cannot say so."""
        raise MissingCapabilityError(f"{cls.__name__} cannot fit stacked members (its Capabilities.stacks is False)")

    def sample(self, n: int) -> Tensor:
        """n draws (n, C, H, W) from the model: decode z ~ N(0, I)."""
        self._require("samples", "sample")
        self._check_fitted()
        z = torch.randn(n, self.config.latent_dim, device=self.device_)
        return self.decode(z).clamp(-1.0, 1.0)

    @property
    def infer_steps(self) -> int:
        """Iterations one ``infer`` call spends per image (0 = closed form or one pass)."""
        return 0

    #: why :meth:`density` is None, for the likelihood task's ``unsupported`` rows
    density_note: ClassVar[str] = ""

    def density(self) -> Any:
        """This fitted model's :class:`~genbench.density.Density` (a Gaussian decoder or an exact
        log-density), or None when it defines no density on images in [-1, 1] (the default)."""
        return None

    @property
    def deterministic_inference(self) -> bool:
        """True when ``infer`` draws no random numbers: its result is then independent of the
        batch size and of the random state (the contract test checks it). The class's
        ``capabilities.deterministic_inference`` unless a model refines it by its config."""
        return self.capabilities.deterministic_inference

    def with_config(self: M, config: BaseConfig) -> M:
        """This fitted model with another config that differs only in ``inference_fields``: a
        shallow copy sharing the fitted weights (used read-only by inference)."""
        if type(config) is not type(self.config):
            raise TypeError(f"with_config needs a {type(self.config).__name__}, got {type(config).__name__}")
        old, new = dataclasses.asdict(self.config), dataclasses.asdict(config)
        changed = {k for k in old if old[k] != new[k]} - set(self.inference_fields)
        if changed:
            raise ValueError(f"{type(self).__name__}.with_config: {sorted(changed)} change the fit; "
                             f"only {list(self.inference_fields)} may differ")
        clone = copy.copy(self)
        clone.config = config
        return clone

    # -- persistence ------------------------------------------------------------------------
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Fitted state: tensors, numbers and strings only (loadable with weights_only=True)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the fitted state written by :meth:`state_dict`."""

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write config and fitted state to ``path`` with ``torch.save``, atomically (a temporary
        file, then a rename: a killed process never leaves a torn checkpoint). ``extra``: numbers
        and strings stored beside them (the runner stores the fit time), read by :meth:`load_with_extra`."""
        from genbench.fsutil import atomic_write

        self._check_fitted()
        blob = {"config": dataclasses.asdict(self.config), "state": self.state_dict(), "extra": dict(extra)}
        atomic_write(path, lambda tmp: torch.save(blob, tmp))

    @classmethod
    def load(cls: type[M], path: str | Path, map_location: str | torch.device = "cpu") -> M:
        """Read a model written by :meth:`save` (safe: ``weights_only=True``)."""
        return cls.load_with_extra(path, map_location)[0]

    @classmethod
    def load_with_extra(cls: type[M], path: str | Path,
                        map_location: str | torch.device = "cpu") -> tuple[M, dict[str, Any]]:
        """``(model, extra)`` from a file written by :meth:`save`."""
        blob = safe_load(path, map_location)
        model = cls(cls.Config.from_dict(blob["config"]))
        model.load_state_dict(blob["state"])
        return model, dict(blob.get("extra", {}))

    # -- helpers for subclasses -------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "image_shape_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(observations) first")

    def _require(self, capability: str, call: str) -> None:
        """Raise :class:`MissingCapabilityError` naming ``capability`` when this model lacks it."""
        if not getattr(self.capabilities, capability):
            raise self._missing(capability, call)

    def _missing(self, capability: str, call: str) -> MissingCapabilityError:
        return MissingCapabilityError(
            f"{type(self).__name__}.{call} is not available: its capabilities.{capability} is False "
            f"(check model.capabilities before calling; reconstruct(observations) always works)")

    def _check_obs(self, obs: Observations, *, fitting: bool = False) -> None:
        """Validate observations at the boundary: type, operator support, image shape."""
        if not isinstance(obs, Observations):
            raise TypeError(f"{type(self).__name__} expects Observations (make them with "
                            f"operator.observe(x)), got {type(obs).__name__}")
        if not isinstance(obs.op, self.capabilities.operators):
            names = ", ".join(c.__name__ for c in self.capabilities.operators)
            raise UnsupportedOperatorError(f"{type(self).__name__} does not support the "
                                           f"{type(obs.op).__name__} operator (supported: {names})")
        if len(obs) == 0:
            raise ValueError(f"{type(self).__name__} got no observations (N = 0)")
        if not fitting:
            self._check_fitted()
            if tuple(obs.image_shape) != tuple(self.image_shape_):
                raise ValueError(f"{type(self).__name__} was fitted on images {self.image_shape_}, "
                                 f"got observations of images {tuple(obs.image_shape)}")

    def _set_fitted(self, obs: Observations) -> None:
        self.image_shape_ = tuple(obs.image_shape)
        self.device_ = obs.device

    @staticmethod
    def _batches(n: int, batch_size: int) -> list[slice]:
        return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]

    @property
    def n_pixels(self) -> int:
        return math.prod(self.image_shape_)


# ---------------------------------------------------------------------------------- reference methods
@dataclass(frozen=True)
class ReferenceConfig(BaseConfig):
    """Config of a reference method: it learns no latent code, so it has no ``latent_dim``.
    Subclasses add the method's own fields."""


class ReferenceMethod(LatentModel):
    """A classical recovery that learns nothing (``biharmonic``, ``lasso-dct``): the rows that
    show what learning buys. ``fit`` only records the image shape; ``reconstruct`` calls
    :meth:`recover`. Its capabilities say it has no latent code, learns nothing and draws no
    samples, so callers use only ``fit`` and ``reconstruct`` (the runner runs it once per seed,
    with no latent dim); ``infer``, ``decode`` and ``sample`` raise
    :class:`MissingCapabilityError` naming the capability. A CPU-only method (numpy,
    scikit-learn) copies what it reads to the host itself and may return its result there:
    :meth:`reconstruct` moves it back to the observations' device. A subclass narrows the
    operators: ``capabilities = dataclasses.replace(ReferenceMethod.capabilities, operators=(PixelMask,))``."""

    Config: ClassVar[type[BaseConfig]] = ReferenceConfig
    capabilities: ClassVar[Capabilities] = Capabilities(latent_code=False, learns=False, samples=False)
    density_note: ClassVar[str] = "a reference method: it has no model of the images"

    @abstractmethod
    def recover(self, obs: Observations) -> Tensor:
        """Images (N, C, H, W) in [-1, 1] from observations (already checked)."""

    def fit(self: M, obs: Observations) -> M:
        self._check_obs(obs, fitting=True)
        self._set_fitted(obs)
        return self

    def reconstruct(self, obs: Observations) -> Tensor:
        self._check_obs(obs)
        return self.recover(obs).to(obs.device, torch.float32).clamp(-1.0, 1.0)

    def infer(self, obs: Observations) -> Tensor:
        raise self._missing("latent_code", "infer")

    def decode(self, z: Tensor) -> Tensor:
        raise self._missing("latent_code", "decode")

    def state_dict(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape_)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.image_shape_ = tuple(int(v) for v in state["image_shape"])
        self.device_ = torch.device("cpu")


def __getattr__(name: str) -> Any:
    """``genbench.model.GeneratorConfig`` / ``GeneratorModel``: they live in
    :mod:`genbench.generator_model` (which imports this module), found here lazily."""
    if name in ("GeneratorConfig", "GeneratorModel"):
        from genbench import generator_model
        return getattr(generator_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
