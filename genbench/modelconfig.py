"""Model configs: the root of every model's frozen config dataclass, the fields every model with a
latent code shares, checks by rule, and what of a config goes into a row's ``config_hash``.
Re-exported by :mod:`genbench.model`, where model files import them from."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar


@dataclass(frozen=True)
class BaseConfig:
    """The root of every model config: no fields. Derive from :class:`ModelConfig` for a model
    with a latent code, from :class:`ReferenceConfig` (or this) for one without.

    ``renamed_fields`` (old name -> new name) lists fields a class renamed: passing an old name
    (to the constructor, :meth:`from_dict` or :func:`check_renamed`) raises a ValueError that
    names the new one, instead of an "unexpected keyword" TypeError.

    ``added_fields`` (name -> the behaviour before the field existed) lists fields added after
    results were recorded: at that value they are left out of the config hash, so rows and
    checkpoints of earlier runs keep their hash and resume.
    """

    renamed_fields: ClassVar[dict[str, str]] = {}
    added_fields: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        """Check the field values (a subclass calls ``super().__post_init__()`` first)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> BaseConfig:
        check_renamed(cls, kwargs)  # the dataclass __init__ comes next and sees only known names
        return super().__new__(cls)

    @classmethod
    def from_dict(cls: type[B], values: Mapping[str, Any]) -> B:
        """The config from a mapping of field values (a saved ``config.json``, a preset),
        refusing renamed fields with a message that names the new one."""
        check_renamed(cls, values)
        return cls(**values)


B = TypeVar("B", bound=BaseConfig)


def _renames(config_cls: type) -> dict[str, str]:
    """Every rename (old -> new) declared by ``config_cls`` and the config classes it derives from."""
    out: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        out.update(vars(klass).get("renamed_fields", {}))
    return out


def check_renamed(config_cls: type, names: Iterable[str]) -> None:
    """Raise ``ValueError("model config field 'test_steps' was renamed to 'infer_steps'")`` for
    the first of ``names`` that ``config_cls`` (or a parent) declares in ``renamed_fields``."""
    renames = _renames(config_cls)
    for name in names:
        if name in renames:
            raise ValueError(f"model config field {name!r} was renamed to {renames[name]!r}")


@dataclass(frozen=True)
class ModelConfig(BaseConfig):
    """Hyper-parameters shared by every model with a latent code. Subclasses add their own fields."""

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


def added_fields(config_cls: type) -> dict[str, Any]:
    """Every added field (name -> its earlier behaviour) declared by ``config_cls`` and the config classes
    it derives from (:attr:`BaseConfig.added_fields`)."""
    out: dict[str, Any] = {}
    for klass in reversed(config_cls.__mro__):
        out.update(vars(klass).get("added_fields", {}))
    return out


#: config fields that choose how a model runs rather than what it computes; left out of config
#: hashes while off, so switching them on is visible and runs without them keep their hashes
EXECUTION_FIELDS = ("amp", "compile")


def hashed_config(config: BaseConfig) -> dict[str, Any]:
    """The config as a dict for hashing: every field, execution switches only when on, an added
    field (:attr:`BaseConfig.added_fields`) only away from its earlier behaviour."""
    added = added_fields(type(config))
    return {k: v for k, v in dataclasses.asdict(config).items()
            if not (k in EXECUTION_FIELDS and v is False) and not (k in added and v == added[k])}
