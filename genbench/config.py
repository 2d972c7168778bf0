"""Run configuration: dataclass defaults -> preset YAML -> ``--config FILE`` -> ``--set key=value``.

Configuration flows one way and every key and type is checked on the way:

1. :class:`RunConfig`'s defaults (and :class:`~genbench.data.DataConfig`'s for ``data.*``);
2. a preset shipped with the package (``genbench/presets/<name>.yaml``: ``quick``, ``default``);
3. an optional user YAML file (``--config FILE.yaml``, loaded with ``yaml.safe_load``);
4. the CLI flags (``--models``, ``--latent-dims`` ... are shorthands for top-level keys) and
   ``--set key.sub=value`` overrides, values parsed as YAML scalars/lists (``10``, ``0.5``,
   ``true``, ``[0, 1]``).

Keys: the fields of :class:`RunConfig` (``models``, ``tasks``, ``latent_dims``, ``seeds``, ``device``,
``out``, ``n_eval``, ``dry_run``, ``checkpoints``, ``amp``, ``compile``, ``cell_timeout``, ``stack``, ``conv_path``,
``fits_from``), ``data.<field>`` (a
:class:`~genbench.data.DataConfig` field),
``model.<name>.<field>`` (a field of that registered model's config dataclass, e.g.
``model.abp.n_epochs=5``) and ``task.<name>.<param>`` (a task parameter). An unknown key or a
value of the wrong type raises :class:`ConfigError` with a sentence that says what was expected.
The resolved config is saved as ``config.json`` in the run folder.

Example::

    >>> cfg = resolve_config(preset="quick", overrides=["model.abp.n_epochs=2", "seeds=[0, 1]"])
    >>> cfg.seeds
    (0, 1)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

if TYPE_CHECKING:
    import torch

from genbench.dataconfig import DataConfig
from genbench.registry import RegistryError, get_model, get_task

Device = Literal["auto", "cpu", "cuda"]
ConvPath = Literal["native", "im2col"]  # genbench.backbone.set_conv_path
_PRESETS = resources.files("genbench") / "presets"


class ConfigError(ValueError):
    """A configuration the user can fix: an unknown key, a wrong type, an unknown preset."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a sweep needs; ``config.json`` in the run folder is this, resolved."""

    data: DataConfig = field(default_factory=DataConfig)
    models: tuple[str, ...] = ("abp", "abp-gd", "pca")
    tasks: tuple[str, ...] = ("reconstruction",)
    latent_dims: tuple[int, ...] = (10,)
    seeds: tuple[int, ...] = (0,)
    device: Device = "auto"
    out: str = "results"
    n_eval: int | None = 1000       # images scored per split at most (None: all of them)
    dry_run: bool = False           # every cell for one step on a few images
    checkpoints: bool = True        # save every fit under <run>/checkpoints/ (resume loads them)
    amp: bool = False               # bf16 autocast of the networks' forward passes (CUDA; no-op on CPU)
    compile: bool = False           # torch.compile the shared Generator and ConvTrunks
    cell_timeout: float | None = None  # wall seconds per cell (local executor); a cell past it fails (None: off)
    stack: int = 1                  # fit up to this many fits of one stackable model config at once (a GPU's switch)
    conv_path: ConvPath = "im2col"  # the generator's output layer on the CPU: im2col (backbone.py) or native (oneDNN)
    fits_from: str | None = None    # another run folder whose checkpoints serve as fits (genbench.rundir.fits_source)
    model: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per-model config overrides
    task: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)   # per-task parameters

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------- presets
def available_presets() -> dict[str, str]:
    """Preset name -> its first comment line (the description)."""
    out = {}
    for entry in sorted(_PRESETS.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            lines = entry.read_text(encoding="utf-8").splitlines() or [""]
            out[entry.name[:-5]] = lines[0].lstrip("# ").strip()
    return out


def load_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse YAML safely into a mapping; malformed YAML is a :class:`ConfigError` naming ``source``."""
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as err:  # e.g. !!python/object: safe_load builds plain data only
        raise ConfigError(f"{source} is refused: {_yaml_problem(err)}; genbench reads YAML with "
                          f"yaml.safe_load, which builds no Python objects (no !!python/... tags): "
                          f"write plain keys and values") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {_yaml_problem(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of config keys, got a {type(data).__name__}")
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line: where (1-based line and column) and what, without PyYAML's source excerpt."""
    mark = getattr(err, "problem_mark", None)
    if mark is None or not getattr(err, "problem", None):
        return " ".join(str(err).split())
    context = f" ({err.context})" if getattr(err, "context", None) else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: {err.problem}{context}"


def load_preset(name: str) -> dict[str, Any]:
    presets = available_presets()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(presets)}")
    text = _PRESETS.joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return load_yaml(text, f"preset {name!r}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (a binary file?); give a YAML file") from None
    if "\x00" in text:
        raise ConfigError(f"config file {path} holds NUL bytes (a binary file?); give a YAML file")
    return load_yaml(text, f"config file {path}")


# ----------------------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.abp.lr=0.002"`` -> (["model", "abp", "lr"], 0.002). Values are YAML scalars/lists."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects key=value (e.g. model.abp.n_epochs=5), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # a bare string such as a path with a colon
    return key.split("."), value


def set_path(tree: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for path (a, b, c), creating mappings on the way."""
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------- type checks
def check_value(value: Any, hint: Any, key: str) -> Any:
    """Return ``value`` converted to ``hint`` (int -> float, list -> tuple), or raise ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return check_value(value, arg, key)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        inner = args[0] if args else Any
        return tuple(check_value(v, inner, f"{key}[{i}]") for i, v in enumerate(items))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def check_fields(values: Mapping[str, Any], cls: type, prefix: str,
                 exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Check a mapping against the fields of dataclass ``cls``: names and types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]
    out = {}
    for name, value in values.items():
        if name not in names:
            raise ConfigError(f"unknown config key '{prefix}{name}'; valid keys under "
                              f"{prefix.rstrip('.') or 'the top level'}: {', '.join(names)}")
        out[name] = check_value(value, hints[name], f"{prefix}{name}")
    return out


# -------------------------------------------------------------------------------------------- resolve
def resolve_config(preset: str = "quick", config_file: str | Path | None = None,
                   flags: Mapping[str, Any] | None = None,
                   overrides: Sequence[str] = ()) -> RunConfig:
    """Resolve defaults -> preset -> config file -> flags -> ``--set`` overrides into a checked
    :class:`RunConfig`. Raises :class:`ConfigError` on any unknown key, type or name."""
    tree: dict[str, Any] = load_preset(preset)
    if config_file is not None:
        tree = merge(tree, load_config_file(config_file))
    for key, value in (flags or {}).items():
        if value is not None:
            set_path(tree, key.split("."), value)
    for text in overrides:
        path, value = parse_override(text)
        set_path(tree, path, value)
    return build_run_config(tree)


def build_run_config(tree: Mapping[str, Any]) -> RunConfig:
    """Check a nested mapping and build the :class:`RunConfig` (registries are consulted for
    model and task names, model config fields and task parameters)."""
    top = check_fields({k: v for k, v in tree.items() if k not in ("data", "model", "task")},
                       RunConfig, "", exclude=("data", "model", "task"))
    data = tree.get("data", {}) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"data must be a mapping of DataConfig fields, got {data!r}")
    try:
        data_cfg = DataConfig(**check_fields(data, DataConfig, "data."))
    except ValueError as err:  # DataError: a bad value
        raise ConfigError(str(err)) from None
    cfg = RunConfig(data=data_cfg, **top)
    _check_names(cfg)
    model = _check_sections(tree.get("model", {}) or {}, "model", _model_fields)
    task = _check_sections(tree.get("task", {}) or {}, "task", _task_params)
    cfg = dataclasses.replace(cfg, model=model, task=task)
    _check_model_configs(cfg)
    return cfg


def _check_names(cfg: RunConfig) -> None:
    for what, names in (("models", cfg.models), ("tasks", cfg.tasks), ("latent_dims", cfg.latent_dims),
                        ("seeds", cfg.seeds)):
        if not names:
            raise ConfigError(f"{what} is empty: give at least one")
        if len(set(names)) != len(names):
            raise ConfigError(f"{what} lists a value twice: {list(names)}")
    try:
        for name in cfg.models:
            get_model(name)
        for name in cfg.tasks:
            get_task(name)
    except RegistryError as err:
        raise ConfigError(str(err)) from None
    for d in cfg.latent_dims:
        if d <= 0:
            raise ConfigError(f"latent_dims must be positive integers, got {d}")
    for s in cfg.seeds:
        if not 0 <= s < 2 ** 31:
            raise ConfigError(f"seeds must be integers in [0, 2^31), got {s}")
    if cfg.cell_timeout is not None and not cfg.cell_timeout > 0:
        raise ConfigError(f"cell_timeout must be a positive number of seconds or null (no limit), got "
                          f"{cfg.cell_timeout}")
    if not 1 <= cfg.stack <= 1024:
        raise ConfigError(f"stack must be an integer in [1, 1024] (fits trained at once), got {cfg.stack}")
    if cfg.stack > 1 and (cfg.compile or cfg.cell_timeout is not None):
        raise ConfigError("--stack cannot be combined with " + ("--compile (the stacked network is not compiled)"
                          if cfg.compile else "--cell-timeout (a stack of fits is no one cell's work to time)"))
    if cfg.n_eval is not None and cfg.n_eval <= 0:
        raise ConfigError(f"n_eval must be a positive integer or null (all images), got {cfg.n_eval}")


def _model_fields(name: str) -> tuple[type, tuple[str, ...]]:
    try:
        return get_model(name).cls.Config, ("latent_dim",)  # latent_dim comes from latent_dims
    except RegistryError as err:
        raise ConfigError(f"model.{name}: {err}") from None


def _task_params(name: str) -> Mapping[str, Any]:
    try:
        return get_task(name).default_params
    except RegistryError as err:
        raise ConfigError(f"task.{name}: {err}") from None


def _check_sections(section: Any, kind: str, lookup) -> dict[str, dict[str, Any]]:
    if not isinstance(section, Mapping):
        raise ConfigError(f"{kind} must map {kind} names to their settings, got {section!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, values in section.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{kind}.{name} must be a mapping of settings, got {values!r}")
        found = lookup(name)
        if kind == "model":
            config_cls, exclude = found
            from genbench.model import check_renamed

            try:
                check_renamed(config_cls, values)
            except ValueError as err:
                raise ConfigError(f"model.{name}: {err} (one name for an inference budget across models)") from None
            out[name] = check_fields(values, config_cls, f"model.{name}.", exclude=exclude)
        else:
            unknown = set(values) - set(found)
            if unknown:
                raise ConfigError(f"unknown config key task.{name}.{sorted(unknown)[0]}; task {name!r} "
                                  f"takes {', '.join(sorted(found)) or 'no parameters'}")
            out[name] = dict(values)
    return out


def _check_model_configs(cfg: RunConfig) -> None:
    """Build every cell's model config once now, so a bad value fails before any training."""
    from genbench.planning import cell_model_config, latent_dims

    for name in cfg.models:
        spec = get_model(name)
        for d in latent_dims(cfg, spec):
            try:
                cell_model_config(spec, cfg, d)
            except (ValueError, TypeError) as err:
                where = f" (latent_dim={d})" if d is not None else ""
                raise ConfigError(f"model {name!r}{where}: {err}") from None


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else CPU. ``cuda`` without a GPU is an error."""
    import torch  # here only: the CLI reads configs before it needs torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA GPU on this machine; "
                          "use --device cpu or --device auto")
    return torch.device(name)
