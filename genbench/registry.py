"""Registries: one validating class, :class:`Registry`, for every kind of named object.

A registry is a dict plus a decorator that validates (STYLE.md 5, torch-fidelity's ``registry.py``):
a name is unique and well formed, the object satisfies its kind's interface, and an unknown name
fails with a sentence that lists the choices. genbench keeps one registry per kind:

==============  ===============================  ==================================================
registry        holds                            registered with
==============  ===============================  ==================================================
``MODELS``      :class:`ModelSpec`               :func:`register_model` (a class decorator)
``TASKS``       task classes                     :func:`register_task`
``METRICS``     :class:`~genbench.metrics.Metric` :func:`register_metric`
``OPERATORS``   :class:`OperatorSpec`            :func:`register_operator` (a class decorator)
``DATASETS``    loaders                          :func:`genbench.data.register_dataset`
``EXECUTORS``   executor classes                 :func:`register_executor`
==============  ===============================  ==================================================

Models register with :func:`register_model`; a variant of the same class registers again
under another name with fixed config values::

    @register_model("abp", description="ABP with Langevin inference")
    @register_model("abp-gd", description="ABP, gradient descent (no noise)", langevin_noise=False)
    class ABP(LatentModel): ...

Packages outside genbench add models through the ``genbench.models`` entry-point group; single files
and modules are plug-ins (:mod:`genbench.plugins`).

This module imports no torch: the command line reads names and descriptions of the built-ins
from :mod:`genbench.catalog` without importing them. Everything else reads its choices from here;
nothing in genbench dispatches on a name. See docs/adding_a_model.md and docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from genbench.model import LatentModel
    from genbench.operators import ImageShape, Operator

ENTRY_POINT_GROUP = "genbench.models"
PLUGINS_ENV = "GENBENCH_PLUGINS"  # comma-separated plug-in files / modules, loaded on first use
BUILTIN_MODULES = ("genbench.metrics", "genbench.ssim", "genbench.ood", "genbench.operators", "genbench.abp", "baselines.pca", "baselines.vae",
                   "baselines.dcgan", "baselines.rbm", "baselines.dbn", "baselines.classical",
                   "tasks.reconstruction", "tasks.inpainting", "tasks.projection", "tasks.deblurring", "tasks.likelihood",
                   "tasks.samples", "baselines.floors")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")

T = TypeVar("T")
C = TypeVar("C", bound=type)


class RegistryError(ValueError):
    """A name is unknown, taken, or a registered object breaks its interface."""


class Registry(Generic[T]):
    """Named objects of one kind: a dict plus validation on the way in and a clear error on the way out.

    ``validate(name, obj)`` raises :class:`RegistryError` (or ValueError) when ``obj`` does not satisfy
    the kind's interface; ``load`` runs before the first lookup (it imports the built-ins and the
    plug-ins, so a registry read early still sees them).

    Example::

        >>> SHAPES = Registry("shape")
        >>> SHAPES.add("square", 4)
        >>> SHAPES.get("circle")
        RegistryError: unknown shape 'circle'; available shapes: square
    """

    def __init__(self, kind: str, *, validate: Callable[[str, T], None] | None = None,
                 load: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._validate = validate
        self._load = load
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` after validating both; returns ``obj``."""
        self.check_name(name)
        if self._validate is not None:
            try:
                self._validate(name, obj)
            except RegistryError:
                raise
            except ValueError as err:
                raise RegistryError(f"{self.kind} {name!r}: {err}") from None
        self._items[name] = obj
        return obj

    def check_name(self, name: str) -> None:
        """Raise :class:`RegistryError` unless ``name`` is well formed and free (a decorator calls this
        before it decorates, so the mistake is reported where the name is written)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistryError(f"{self.kind} name {name!r} must be lower-case letters, digits, '-' or '_' "
                                f"(starting with a letter or digit)")
        if name in self._items:
            raise RegistryError(f"a {self.kind} named {name!r} is already registered "
                                f"({self._items[name]!r}); pick another name")

    def remove(self, name: str) -> None:
        """Unregister ``name`` (tests and failed plug-ins); an unknown name is ignored."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises :class:`RegistryError`."""
        items = self.as_dict()
        if name not in items:
            raise RegistryError(f"unknown {self.kind} {name!r}; available {self.kind}s: "
                                f"{', '.join(sorted(items)) or 'none'}")
        return items[name]

    def as_dict(self) -> dict[str, T]:
        """Every registered object by name, in registration order."""
        if self._load is not None:
            self._load()
        return dict(self._items)

    def names(self) -> list[str]:
        return list(self.as_dict())

    def __contains__(self, name: object) -> bool:
        return name in self.as_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.as_dict())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} registered)"


# ------------------------------------------------------------------------------------------- models
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

    @property
    def capabilities(self) -> Any:
        """The class's :class:`~genbench.model.Capabilities` (latent code, learns, samples ...)."""
        return self.cls.capabilities

    def make_config(self, **overrides: Any) -> Any:
        """The model's config: dataclass defaults <- registered defaults <- overrides."""
        from genbench.model import check_renamed

        check_renamed(self.cls.Config, overrides)
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


def _validate_model(name: str, spec: ModelSpec) -> None:
    from genbench.model import BaseConfig, Capabilities, LatentModel

    cls = spec.cls
    if not (isinstance(cls, type) and issubclass(cls, LatentModel)):
        raise RegistryError(f"model {name!r}: {cls!r} must subclass genbench.model.LatentModel")
    config_cls = cls.Config
    if not (dataclasses.is_dataclass(config_cls) and issubclass(config_cls, BaseConfig)
            and config_cls.__dataclass_params__.frozen):
        raise RegistryError(f"model {name!r}: {cls.__name__}.Config must be a frozen dataclass "
                            f"derived from genbench.model.ModelConfig (or BaseConfig)")
    if not isinstance(getattr(cls, "capabilities", None), Capabilities):
        raise RegistryError(f"model {name!r}: {cls.__name__}.capabilities must be a "
                            f"genbench.model.Capabilities, got {getattr(cls, 'capabilities', None)!r}")
    if cls.capabilities.latent_code and "latent_dim" not in config_fields(config_cls):
        raise RegistryError(f"model {name!r}: its capabilities say it has a latent code, but "
                            f"{config_cls.__name__} has no latent_dim field (derive it from ModelConfig)")
    abstract = getattr(cls, "__abstractmethods__", frozenset())
    if abstract:
        raise RegistryError(f"model {name!r}: {cls.__name__} does not implement {sorted(abstract)}")
    unknown = set(spec.defaults) - set(config_fields(config_cls))
    if unknown:
        raise RegistryError(f"model {name!r}: registered defaults name no config field(s) "
                            f"{sorted(unknown)}; {config_cls.__name__} has {config_fields(config_cls)}")
    spec.make_config()  # fails now, not mid-sweep, if the defaults are wrong
    if spec.shares_fit_with == name:
        raise RegistryError(f"model {name!r} cannot share a fit with itself")
    models = MODELS._items
    for a, b in [(spec, models.get(spec.shares_fit_with or ""))] + [
            (other, spec) for other in models.values() if other.shares_fit_with == name]:
        if b is not None:
            _check_shared_fit(a, b)


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


def register_model(name: str, *, description: str = "", shares_fit_with: str | None = None,
                   **defaults: Any) -> Callable[[C], C]:
    """Class decorator: register ``cls`` under ``name`` with fixed config ``defaults``.

    Checks that the class derives from :class:`~genbench.model.LatentModel`, that its
    ``Config`` is a frozen dataclass derived from :class:`~genbench.model.BaseConfig`, that it declares
    its :class:`~genbench.model.Capabilities`, and that every default names a config field.
    ``shares_fit_with`` names a model of the same class whose fitted weights this one reuses: their
    registered defaults may differ only in the class's ``inference_fields`` (checked), and the runner
    then fits once for both.
    """

    def decorate(cls: C) -> C:
        if not isinstance(cls, type):
            raise RegistryError(f"model {name!r}: {cls!r} must subclass genbench.model.LatentModel")
        text = description or (cls.__doc__ or "").strip().split("\n")[0]
        MODELS.add(name, ModelSpec(name, cls, dict(defaults), text, shares_fit_with))
        return cls

    return decorate


# ------------------------------------------------------------------------------------ other kinds
def _validate_task(name: str, cls: Any) -> None:
    from genbench.task import Task

    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise RegistryError(f"task {name!r}: {cls!r} must subclass genbench.task.Task")
    abstract = getattr(cls, "__abstractmethods__", frozenset())
    if abstract:
        raise RegistryError(f"task {name!r}: {cls.__name__} does not implement {sorted(abstract)}")
    unknown = [m for m in cls.metrics if m not in METRICS._items]
    if unknown:
        raise RegistryError(f"task {name!r}: {cls.__name__}.metrics names unregistered metric(s) {unknown}; "
                            f"register them with genbench.registry.register_metric")


def register_task(name: str) -> Callable[[C], C]:
    """Class decorator: register a task class (a :class:`~genbench.task.Task`) under ``name``;
    the metrics it names must be registered."""

    def decorate(cls: C) -> C:
        TASKS.add(name, cls)
        return cls

    return decorate


def _validate_metric(name: str, metric: Any) -> None:
    from genbench.metrics import Metric

    if not isinstance(metric, Metric):
        raise RegistryError(f"metric {name!r}: register a genbench.metrics.Metric, got {type(metric).__name__}")
    if metric.name != name:
        raise RegistryError(f"metric {name!r}: its name field is {metric.name!r}")


def register_metric(metric: Any) -> Any:
    """Register a :class:`~genbench.metrics.Metric` under its name; returns it."""
    return METRICS.add(getattr(metric, "name", None), metric)


@dataclass(frozen=True)
class OperatorSpec:
    """A registered operator class and how to build a small instance of it (contract tests)."""

    name: str
    cls: type[Operator]
    example: Callable[[ImageShape, int], Operator]
    description: str = ""


def _validate_operator(name: str, spec: OperatorSpec) -> None:
    from genbench.operators import Operator

    if not (isinstance(spec.cls, type) and issubclass(spec.cls, Operator)):
        raise RegistryError(f"operator {name!r}: {spec.cls!r} must subclass genbench.operators.Operator")
    if getattr(spec.cls, "name", None) != name:
        raise RegistryError(f"operator {name!r}: {spec.cls.__name__}.name is {getattr(spec.cls, 'name', None)!r}; "
                            f"set it to {name!r} (result tables and checkpoints use it)")
    if not callable(spec.example):
        raise RegistryError(f"operator {name!r}: example must be a function (image_shape, seed) -> operator")


def register_operator(name: str, *, example: Callable[[ImageShape, int], Operator],
                      description: str = "") -> Callable[[C], C]:
    """Class decorator: register an operator class; ``example(image_shape, seed)`` builds a small
    instance for the contract tests (every registered model is tested through every operator)."""

    def decorate(cls: C) -> C:
        text = description or (cls.__doc__ or "").strip().split("\n")[0]
        OPERATORS.add(name, OperatorSpec(name, cls, example, text))
        return cls

    return decorate


def register_executor(name: str) -> Callable[[C], C]:
    """Class decorator: register an executor class (see :mod:`genbench.executors`)."""

    def decorate(cls: C) -> C:
        EXECUTORS.add(name, cls)
        return cls

    return decorate


_loaded = False


def _load_all() -> None:
    """Import the built-in models, tasks, metrics and operators, the ``genbench.models`` entry points,
    then the plug-ins named by ``GENBENCH_PLUGINS`` (so that pytest and worker processes see them too)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    _load_entry_points()
    from genbench.plugins import _load_plugin

    for spec in plugins_from_env() if _ENV_PLUGINS["on"] else ():
        _load_plugin(spec)


_ENV_PLUGINS = {"on": True}


def use_env_plugins(on: bool) -> None:
    """Whether the first use of a registry imports ``GENBENCH_PLUGINS`` (the default; off for the CLI's
    ``list`` and ``report``, which run no plug-in code unless ``--plugin`` names it)."""
    _ENV_PLUGINS["on"] = on


MODELS: Registry[ModelSpec] = Registry("model", validate=_validate_model, load=_load_all)
TASKS: Registry[type] = Registry("task", validate=_validate_task, load=_load_all)
METRICS: Registry[Any] = Registry("metric", validate=_validate_metric, load=_load_all)
OPERATORS: Registry[OperatorSpec] = Registry("operator", validate=_validate_operator, load=_load_all)
DATASETS: Registry[Any] = Registry("dataset")  # filled by genbench.data (no torch-heavy load needed)
EXECUTORS: Registry[type] = Registry("executor", load=lambda: importlib.import_module("genbench.executors"))
# the stores themselves, for tests that set registrations aside
_MODELS, _TASKS = MODELS._items, TASKS._items


def load_entry_points() -> None:
    """Import the ``genbench.models`` entry points again: the registry does it once, on first use;
    call this after installing a plug-in package into a running interpreter. An entry point
    already imported is a no-op; one that fails to import is a warning, not an error."""
    if _loaded:
        _load_entry_points()
    else:
        _load_all()  # built-ins first: a plug-in reusing a built-in name is the one refused


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plug-in must not take the suite down
            warnings.warn(f"could not load genbench model plug-in {ep.name!r} ({ep.value}): {exc}",
                          stacklevel=2)


def available_models() -> dict[str, ModelSpec]:
    """Every registered model, built-ins and plug-ins, by name."""
    return MODELS.as_dict()


def get_model(name: str) -> ModelSpec:
    """The spec of a registered model; an unknown name raises :class:`RegistryError`."""
    return MODELS.get(name)


def available_tasks() -> dict[str, Any]:
    return TASKS.as_dict()


def get_task(name: str) -> Any:
    return TASKS.get(name)


def available_metrics() -> dict[str, Any]:
    """Every registered :class:`~genbench.metrics.Metric`, in registration order."""
    return METRICS.as_dict()


def get_metric(name: str) -> Any:
    return METRICS.get(name)


def available_operators() -> dict[str, OperatorSpec]:
    return OPERATORS.as_dict()


# the plug-in loaders live in genbench.plugins; these names stay importable from here
from genbench.plugins import _PLUGINS, load_plugins, loaded_plugins, plugins_from_env  # noqa: E402, F401
