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
:class:`ModelConfig`, a subclass of :class:`LatentModel`, and ``@register_model("name")``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from genbench.operators import Observations, Operator

M = TypeVar("M", bound="LatentModel")


class NotFittedError(RuntimeError):
    """Raised when a model is used before ``fit``."""


class UnsupportedOperatorError(ValueError):
    """Raised when a model is given observations through an operator it does not handle."""


class DivergenceError(RuntimeError):
    """Raised when a loss or an iterate becomes NaN or infinite."""


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters shared by every model. Subclasses add their own fields."""

    latent_dim: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.latent_dim, int) or self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be a positive integer, got {self.latent_dim!r}")


def require(config: Any, *, positive: Sequence[str] = (), at_least_one: Sequence[str] = (),
            non_negative: Sequence[str] = ()) -> None:
    """Check config fields by rule; a broken one raises a ValueError naming the config and field."""
    rules = [(positive, lambda v: v > 0, "> 0"), (at_least_one, lambda v: v >= 1, ">= 1"),
             (non_negative, lambda v: v >= 0, ">= 0")]
    for names, ok, text in rules:
        for name in names:
            value = getattr(config, name)
            if not ok(value):
                raise ValueError(f"{type(config).__name__}.{name} must be {text}, got {value}")


@dataclass(frozen=True)
class GeneratorConfig(ModelConfig):
    """Fields of every model built on the shared :class:`~genbench.backbone.Generator` (ABP, VAE,
    DCGAN): the same likelihood std, backbone width and optimiser knobs, so a comparison can hold
    them equal. Subclasses change defaults and add their own fields."""

    sigma: float = 0.3            # observation noise std of the shared likelihood (ABP paper's value)
    width: int = 32               # backbone width (channels of the generator's last hidden layer)
    lr: float = 1e-3              # Adam
    beta1: float = 0.5
    n_epochs: int = 40
    batch_size: int = 50
    eval_batch_size: int = 500
    # execution switches (the runner sets them from --amp / --compile; see EXECUTION_FIELDS)
    amp: bool = False             # bf16 autocast of the networks' forward passes in fit / infer; CUDA only
    compile: bool = False         # torch.compile the networks (Generator, ConvTrunk) for fit / infer

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("sigma", "lr"), at_least_one=("width", "n_epochs", "batch_size",
                                                              "eval_batch_size"))
        if not 0 <= self.beta1 < 1:
            raise ValueError(f"{type(self).__name__}.beta1 must be in [0, 1), got {self.beta1}")


#: config fields that choose how a model runs rather than what it computes; left out of config
#: hashes while off, so switching them on is visible and runs without them keep their hashes
EXECUTION_FIELDS = ("amp", "compile")


def hashed_config(config: ModelConfig) -> dict[str, Any]:
    """The config as a dict for hashing: every field, execution switches only when on."""
    return {k: v for k, v in dataclasses.asdict(config).items() if not (k in EXECUTION_FIELDS and v is False)}


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


class LatentModel(ABC):
    """Base class of every model. Subclasses set ``Config`` and implement the abstract methods.

    Class attributes a subclass may set:

    - ``Config``: its frozen config dataclass (a subclass of :class:`ModelConfig`).
    - ``supported_operators``: operator classes it can learn from / recover through.
    - ``dry_run_overrides``: config values that make ``fit``/``infer`` take one step
      (used by ``run_benchmarks.py --dry-run`` and the fast tests).
    - ``tiny_overrides``: config values that train to something real in a few seconds on tiny
      data (about 200 8x8 images); the contract test checks the model then beats the mean image.
    - ``tiny_limits``: operator names (``"pixel-mask"`` ...) -> why the model cannot beat the mean
      image when it *learns from* that operator on tiny data; the contract test then checks the
      weaker claim that it beats the operator's naive inverse, and prints the reason.
    - ``uses_latent_dim``: False for reference methods that learn no latent code (see
      :class:`ReferenceMethod`): the runner runs them once per seed and records latent_dim 0.
    - ``inference_fields``: config fields used only after fitting (inference steps, restarts ...);
      two configs that differ only in them share one fit (:meth:`with_config`).
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    supported_operators: ClassVar[tuple[type[Operator], ...]] = (Operator,)
    dry_run_overrides: ClassVar[dict[str, Any]] = {}
    tiny_overrides: ClassVar[dict[str, Any]] = {}
    tiny_limits: ClassVar[dict[str, str]] = {}
    uses_latent_dim: ClassVar[bool] = True
    inference_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ModelConfig | None = None) -> None:
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

    def sample(self, n: int) -> Tensor:
        """n draws (n, C, H, W) from the model: decode z ~ N(0, I)."""
        self._check_fitted()
        z = torch.randn(n, self.config.latent_dim, device=self.device_)
        return self.decode(z).clamp(-1.0, 1.0)

    @property
    def infer_steps(self) -> int:
        """Iterations one ``infer`` call spends per image (0 = closed form or one pass)."""
        return 0

    @property
    def deterministic_inference(self) -> bool:
        """True when ``infer`` draws no random numbers: its result is then independent of the
        batch size and of the random state (the contract test checks it)."""
        return True

    def with_config(self: M, config: ModelConfig) -> M:
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

    def save(self, path: str | Path) -> None:
        """Write config and fitted state to ``path`` with ``torch.save``."""
        self._check_fitted()
        torch.save({"config": dataclasses.asdict(self.config), "state": self.state_dict()}, path)

    @classmethod
    def load(cls: type[M], path: str | Path, map_location: str | torch.device = "cpu") -> M:
        """Read a model written by :meth:`save` (safe: ``weights_only=True``)."""
        blob = torch.load(path, map_location=map_location, weights_only=True)
        model = cls(cls.Config(**blob["config"]))
        model.load_state_dict(blob["state"])
        return model

    # -- helpers for subclasses -------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "image_shape_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(observations) first")

    def _check_obs(self, obs: Observations, *, fitting: bool = False) -> None:
        """Validate observations at the boundary: type, operator support, image shape."""
        if not isinstance(obs, Observations):
            raise TypeError(f"{type(self).__name__} expects Observations (make them with "
                            f"operator.observe(x)), got {type(obs).__name__}")
        if not isinstance(obs.op, self.supported_operators):
            names = ", ".join(c.__name__ for c in self.supported_operators)
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


class GeneratorModel(LatentModel):
    """A model whose decoder is the shared Generator, fitted as ``generator_``: decoding is
    written once here for ABP, the VAE and the GAN."""

    Config: ClassVar[type[ModelConfig]] = GeneratorConfig
    config: GeneratorConfig

    @torch.inference_mode()
    def decode(self, z: Tensor) -> Tensor:
        self._check_fitted()
        z = z.to(self.device_)
        return torch.cat([self.generator_(z[b]) for b in self._batches(len(z), self.config.eval_batch_size)])

    def _fast(self, net: torch.nn.Module) -> torch.nn.Module:
        """``net`` as fit and infer call it: ``torch.compile(net)`` when ``config.compile`` (one
        compiled wrapper per network, sharing its weights; save and load use ``net`` itself)."""
        if not self.config.compile:
            return net
        cache = self.__dict__.setdefault("_compiled", {})
        if id(net) not in cache:
            cache[id(net)] = (net, torch.compile(net))  # net kept so its id is not reused
        return cache[id(net)][1]

    def _autocast(self) -> AbstractContextManager:
        """bf16 autocast for the forward passes when ``config.amp`` and the data is on CUDA."""
        return autocast(self.device_, self.config.amp)


# ---------------------------------------------------------------------------------- reference methods
@dataclass(frozen=True)
class ReferenceConfig(ModelConfig):
    """Config of a reference method: it learns no latent code, so ``latent_dim`` is 0."""

    latent_dim: int = 0

    def __post_init__(self) -> None:
        if self.latent_dim != 0:
            raise ValueError(f"{type(self).__name__}: a reference method learns no latent code; "
                             f"latent_dim must be 0, got {self.latent_dim!r}")


class ReferenceMethod(LatentModel):
    """A classical recovery that learns nothing (``biharmonic``, ``lasso-dct``): the rows that
    show what learning buys. ``fit`` only records the image shape; ``reconstruct`` calls
    :meth:`recover`. It has no latent code and draws no samples (``infer``, ``decode`` and
    ``sample`` raise ``NotImplementedError``); the runner runs it once per seed (latent_dim 0).
    A CPU-only method (numpy, scikit-learn) copies what it reads to the host itself and may
    return its result there: :meth:`reconstruct` moves it back to the observations' device."""

    Config: ClassVar[type[ModelConfig]] = ReferenceConfig
    uses_latent_dim: ClassVar[bool] = False

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

    def _no_latent(self) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} is a reference method: it learns no latent "
                                   f"code and cannot sample; use reconstruct(observations)")

    def infer(self, obs: Observations) -> Tensor:
        raise self._no_latent()

    def decode(self, z: Tensor) -> Tensor:
        raise self._no_latent()

    def sample(self, n: int) -> Tensor:
        raise self._no_latent()

    def state_dict(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape_)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.image_shape_ = tuple(int(v) for v in state["image_shape"])
        self.device_ = torch.device("cpu")
