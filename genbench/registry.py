"""Registries of models and tasks: a dict plus a decorator that validates.

Models register with :func:`register_model`; a variant of the same class registers again
under another name with fixed config values::

    @register_model("abp", description="ABP with Langevin inference")
    @register_model("abp-gd", description="ABP, gradient descent (no noise)", langevin_noise=False)
    class ABP(LatentModel): ...

Packages outside genbench add models through the ``genbench.models`` entry-point group: each
entry point names a module (or object) whose import registers its models. The CLI reads every
choice from here; nothing else in genbench dispatches on a model's name.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, TypeVar

from genbench.model import LatentModel, ModelConfig

ENTRY_POINT_GROUP = "genbench.models"
BUILTIN_MODEL_MODULES = ("genbench.abp", "baselines.pca", "baselines.vae", "baselines.dcgan", "baselines.rbm",
                         "baselines.dbn", "baselines.classical")
BUILTIN_TASK_MODULES = ("tasks.reconstruction", "tasks.inpainting", "tasks.projection")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class RegistryError(ValueError):
    """A name is unknown, taken, or a registered class breaks the interface."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its class, fixed config values and a one-line description."""

    name: str
    cls: type[LatentModel]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    #: the registered name whose fit this one reuses (same class; configs that differ only in the
    #: class's ``inference_fields``), e.g. ``vae-refine`` reuses ``vae``'s fit
    shares_fit_with: str | None = None

    @property
    def fit_name(self) -> str:
        """The name a fit of this model is keyed and seeded by."""
        return self.shares_fit_with or self.name

    def make_config(self, **overrides: Any) -> ModelConfig:
        """The model's config: dataclass defaults <- registered defaults <- overrides."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self.cls.Config)}
        if unknown:
            raise RegistryError(f"model {self.name!r} has no config field(s) {sorted(unknown)}; "
                                f"its fields are {config_fields(self.cls.Config)}")
        return self.cls.Config(**{**self.defaults, **overrides})

    def build(self, **overrides: Any) -> LatentModel:
        """A new, unfitted model with the given config overrides."""
        return self.cls(self.make_config(**overrides))


def config_fields(config_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls)]


_MODELS: dict[str, ModelSpec] = {}
_TASKS: dict[str, Any] = {}
_loaded = False

C = TypeVar("C", bound=type)


def _check_name(name: str, kind: str, taken: Mapping[str, Any]) -> None:
    if not _NAME.match(name):
        raise RegistryError(f"{kind} name {name!r} must be lower-case letters, digits, '-' or '_'")
    if name in taken:
        raise RegistryError(f"a {kind} named {name!r} is already registered "
                            f"({taken[name]!r}); pick another name")


def register_model(name: str, *, description: str = "", shares_fit_with: str | None = None,
                   **defaults: Any) -> Callable[[C], C]:
    """Class decorator: register ``cls`` under ``name`` with fixed config ``defaults``.

    Checks that the class derives from :class:`~genbench.model.LatentModel`, that its
    ``Config`` is a frozen dataclass derived from :class:`~genbench.model.ModelConfig`, and
    that every default names a config field. ``shares_fit_with`` names a model of the same class
    whose fitted weights this one reuses: their registered defaults may differ only in the class's
    ``inference_fields`` (checked), and the runner then fits once for both.
    """

    def decorate(cls: C) -> C:
        _check_name(name, "model", _MODELS)
        if not (isinstance(cls, type) and issubclass(cls, LatentModel)):
            raise RegistryError(f"model {name!r}: {cls!r} must subclass genbench.model.LatentModel")
        config_cls = cls.Config
        if not (dataclasses.is_dataclass(config_cls) and issubclass(config_cls, ModelConfig)
                and config_cls.__dataclass_params__.frozen):
            raise RegistryError(f"model {name!r}: {cls.__name__}.Config must be a frozen dataclass "
                                f"derived from genbench.model.ModelConfig")
        abstract = getattr(cls, "__abstractmethods__", frozenset())
        if abstract:
            raise RegistryError(f"model {name!r}: {cls.__name__} does not implement "
                                f"{sorted(abstract)}")
        unknown = set(defaults) - set(config_fields(config_cls))
        if unknown:
            raise RegistryError(f"model {name!r}: registered defaults name no config field(s) "
                                f"{sorted(unknown)}; {config_cls.__name__} has {config_fields(config_cls)}")
        spec = ModelSpec(name, cls, dict(defaults), description or (cls.__doc__ or "").strip().split("\n")[0],
                         shares_fit_with)
        spec.make_config()  # fails now, not mid-sweep, if the defaults are wrong
        if shares_fit_with == name:
            raise RegistryError(f"model {name!r} cannot share a fit with itself")
        for a, b in [(spec, _MODELS.get(shares_fit_with or ""))] + [
                (other, spec) for other in _MODELS.values() if other.shares_fit_with == name]:
            if b is not None:
                _check_shared_fit(a, b)
        _MODELS[name] = spec
        return cls

    return decorate


def _check_shared_fit(spec: ModelSpec, base: ModelSpec) -> None:
    """``spec`` reuses ``base``'s fit: same class, defaults differing only in inference fields."""
    if spec.cls is not base.cls:
        raise RegistryError(f"model {spec.name!r} can share a fit only with a model of its class "
                            f"{spec.cls.__name__}; {base.name!r} is a {base.cls.__name__}")
    keys = set(spec.defaults) | set(base.defaults)
    differ = {k for k in keys if spec.defaults.get(k) != base.defaults.get(k)} - set(spec.cls.inference_fields)
    if differ:
        raise RegistryError(f"model {spec.name!r} shares {base.name!r}'s fit, but their defaults differ in "
                            f"{sorted(differ)}, which change the fit (only {list(spec.cls.inference_fields)} may)")


def register_task(name: str) -> Callable[[C], C]:
    """Class decorator: register a task class (see :mod:`genbench.tasks`) under ``name``."""

    def decorate(cls: C) -> C:
        _check_name(name, "task", _TASKS)
        _TASKS[name] = cls
        return cls

    return decorate


def _load_all() -> None:
    """Import the built-in models and tasks, then the ``genbench.models`` entry points."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in (*BUILTIN_MODEL_MODULES, *BUILTIN_TASK_MODULES):
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in must not take the suite down
            warnings.warn(f"could not load genbench model plug-in {ep.name!r} ({ep.value}): {exc}",
                          stacklevel=2)


def available_models() -> dict[str, ModelSpec]:
    """Every registered model, built-ins and plug-ins, by name."""
    _load_all()
    return dict(_MODELS)


def get_model(name: str) -> ModelSpec:
    """The spec of a registered model; an unknown name raises :class:`RegistryError`."""
    models = available_models()
    if name not in models:
        raise RegistryError(f"unknown model {name!r}; available models: {', '.join(sorted(models))}")
    return models[name]


def available_tasks() -> dict[str, Any]:
    _load_all()
    return dict(_TASKS)


def get_task(name: str) -> Any:
    tasks = available_tasks()
    if name not in tasks:
        raise RegistryError(f"unknown task {name!r}; available tasks: {', '.join(sorted(tasks))}")
    return tasks[name]
