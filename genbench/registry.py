"""Registries of models and tasks: a dict plus a decorator that validates.

Models register with :func:`register_model`; a variant of the same class registers again
under another name with fixed config values::

    @register_model("abp", description="ABP with Langevin inference")
    @register_model("abp-gd", description="ABP, gradient descent (no noise)", langevin_noise=False)
    class ABP(LatentModel): ...

Packages outside genbench add models through the ``genbench.models`` entry-point group: each
entry point names a module (or object) whose import registers its models. A single file or a
module that is not installed is a *plug-in*: :func:`load_plugins` imports it (``--plugin FILE.py``
or ``--plugin package.module`` on the command line; the registry itself loads those named by the
``GENBENCH_PLUGINS`` environment variable on first use) and :func:`loaded_plugins` says which were
loaded, so a run can record and reload them.
The CLI reads every choice from here; nothing else in genbench dispatches on a model's name.
See docs/adding_a_model.md.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from genbench.model import LatentModel, ModelConfig

ENTRY_POINT_GROUP = "genbench.models"
PLUGINS_ENV = "GENBENCH_PLUGINS"  # comma-separated plug-in files / modules, loaded on first use
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
_PLUGINS: dict[str, str] = {}  # loaded plug-in (absolute file path or module name) -> module name

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
    """Import the built-in models and tasks, the ``genbench.models`` entry points, then the
    plug-ins named by ``GENBENCH_PLUGINS`` (so that pytest and worker processes see them too)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in (*BUILTIN_MODEL_MODULES, *BUILTIN_TASK_MODULES):
        importlib.import_module(module)
    _load_entry_points()
    for spec in plugins_from_env():
        _load_plugin(spec)


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


# ---------------------------------------------------------------------------------------- plug-ins
def plugins_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The plug-ins named by ``GENBENCH_PLUGINS`` (comma-separated files or modules), in order."""
    text = (os.environ if environ is None else environ).get(PLUGINS_ENV, "")
    return [item.strip() for item in text.split(",") if item.strip()]


def load_plugins(specs: Iterable[str]) -> list[str]:
    """Import plug-ins so that their ``@register_model`` / ``@register_task`` decorators run.

    Each spec is a Python file (``path/to/mine.py``: it ends in ``.py`` or names a path; imported
    by file path as module ``mine``) or an importable module (``mypackage.models``). The built-in
    models are loaded first, so a plug-in that reuses a built-in name is the one blamed. Loading
    the same plug-in twice is a no-op. Returns the canonical names of ``specs`` (absolute paths for
    files), as :func:`loaded_plugins` records them.

    A missing file, a module that cannot be imported, an import that raises, or a new file or
    module that registers nothing raises :class:`RegistryError` with one line that says which
    plug-in and why; whatever that plug-in registered before failing is removed again.
    """
    specs = list(specs)
    if specs:  # the built-ins first (torch-heavy: not for a command that names no plug-in)
        _load_all()
    return [_load_plugin(spec) for spec in specs]


def loaded_plugins() -> list[str]:
    """Plug-ins loaded so far, in load order: absolute file paths and module names (for
    ``config.json``: ``load_plugins(loaded_plugins())`` in another process registers the same
    models)."""
    return list(_PLUGINS)


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def _load_plugin(spec: str) -> str:
    spec = spec.strip()
    if not spec:
        raise RegistryError("empty plug-in name: give a file (mine.py) or a module (package.module)")
    is_file = _is_file_spec(spec)
    key = str(Path(spec).expanduser().resolve()) if is_file else spec
    if key in _PLUGINS:
        return key
    if is_file and _already_imported(spec, Path(key)):  # e.g. imported with sys.path set up
        _PLUGINS[key] = Path(key).stem
        return key
    models, tasks = set(_MODELS), set(_TASKS)
    try:
        module_name, fresh = _import_file(Path(key)) if is_file else _import_module(spec)
    except Exception as exc:
        _forget(models, tasks)
        missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
        if not is_file and missing and (spec + ".").startswith(missing + "."):  # the plug-in itself
            raise RegistryError(f"plug-in module {spec!r} not found: install its package or add its folder "
                                f"to PYTHONPATH (give a file as a path ending in .py)") from None
        detail = str(exc) if isinstance(exc, RegistryError) else f"{type(exc).__name__}: {exc}"
        raise RegistryError(f"plug-in {spec!r} failed to import: {' '.join(detail.split())}") from exc
    if fresh and set(_MODELS) == models and set(_TASKS) == tasks:
        raise RegistryError(f"plug-in {spec!r} registered no model: decorate its model class with "
                            f"@register_model(\"name\") from genbench.registry")
    _PLUGINS[key] = module_name
    return key


def _already_imported(spec: str, file: Path) -> bool:
    """Check the file can be imported as a module named after it; True if it already was."""
    if not file.is_file():
        raise RegistryError(f"plug-in file {spec!r} does not exist (looked for {file})")
    if file.suffix != ".py":
        raise RegistryError(f"plug-in file {spec!r} is not a Python file (*.py)")
    if not file.stem.isidentifier():
        raise RegistryError(f"plug-in file {spec!r}: {file.stem!r} is not a valid module name; rename "
                            f"the file (letters, digits and '_')")
    other = sys.modules.get(file.stem)
    if other is None:
        return False
    where = getattr(other, "__file__", None)
    if where and Path(where).resolve() == file:
        return True
    raise RegistryError(f"plug-in file {spec!r} would replace the module {file.stem!r} already imported "
                        f"from {where or 'the standard library'}; rename the file")


def _import_file(file: Path) -> tuple[str, bool]:
    """Import ``file`` as a top-level module named after it: (module name, True)."""
    name = file.stem
    module_spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickle look classes up through sys.modules
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return name, True


def _import_module(spec: str) -> tuple[str, bool]:
    """Import a module by dotted name: (its name, whether this call imported it)."""
    fresh = spec not in sys.modules
    importlib.import_module(spec)
    return spec, fresh


def _forget(models: set[str], tasks: set[str]) -> None:
    """Remove what a failed plug-in registered: it must not half-register."""
    for name in set(_MODELS) - models:
        del _MODELS[name]
    for name in set(_TASKS) - tasks:
        del _TASKS[name]
