"""Plug-ins: model (or task, metric, operator) files and modules that are not installed packages.

:func:`load_plugins` imports them so that their ``@register_*`` decorators run (``--plugin FILE.py`` or
``--plugin package.module`` on the command line; the registry itself loads those named by the
``GENBENCH_PLUGINS`` environment variable on first use), and :func:`loaded_plugins` says which were
loaded, so a run can record and reload them. A plug-in that fails to import, or registers nothing,
is refused with one line, and whatever it registered before failing is removed again.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from genbench import registry
from genbench.registry import PLUGINS_ENV, RegistryError

_PLUGINS: dict[str, str] = {}  # loaded plug-in (absolute file path or module name) -> module name


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
        registry._load_all()
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
    before = _snapshot()
    try:
        module_name, fresh = _import_file(Path(key)) if is_file else _import_module(spec)
    except Exception as exc:
        _forget(before)
        missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
        if not is_file and missing and (spec + ".").startswith(missing + "."):  # the plug-in itself
            raise RegistryError(f"plug-in module {spec!r} not found: install its package or add its folder "
                                f"to PYTHONPATH (give a file as a path ending in .py)") from None
        detail = str(exc) if isinstance(exc, RegistryError) else f"{type(exc).__name__}: {exc}"
        raise RegistryError(f"plug-in {spec!r} failed to import: {' '.join(detail.split())}") from exc
    if fresh and _snapshot() == before:
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


_PLUGGABLE = ("MODELS", "TASKS", "METRICS", "OPERATORS", "DATASETS")


def _snapshot() -> dict[str, set[str]]:
    return {kind: set(getattr(registry, kind)._items) for kind in _PLUGGABLE}


def _forget(before: dict[str, set[str]]) -> None:
    """Remove what a failed plug-in registered: it must not half-register."""
    for kind, names in before.items():
        store = getattr(registry, kind)
        for name in set(store._items) - names:
            store.remove(name)
