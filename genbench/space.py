"""Search spaces a model config declares beside its fields (``search_space``: field -> range), read by
the tuner (:mod:`genbench.tuning`). No imports: every model file can use them.

Example::

    @dataclass(frozen=True)
    class MyConfig(ModelConfig):
        lr: float = 1e-3
        search_space: ClassVar[dict] = {"lr": FloatRange(1e-4, 1e-2, log=True)}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FloatRange:
    """A float in [low, high], sampled on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def holds(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class IntRange:
    """An integer in [low, high] in steps of ``step``."""

    low: int
    high: int
    step: int = 1

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step)

    def holds(self, value: Any) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high and (value - self.low) % self.step == 0


@dataclass(frozen=True)
class Choice:
    """One of ``options``."""

    options: tuple

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))

    def holds(self, value: Any) -> bool:
        return value in self.options


def search_space(config_cls: type) -> dict[str, Any]:
    """The config class's declared search space (``{}``: nothing to tune)."""
    return dict(getattr(config_cls, "search_space", {}) or {})
