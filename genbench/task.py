"""What a task is: named variants (each an operator recipe), the protocols it runs under, the
splits it scores, and how one recovery is scored. The runner (:mod:`genbench.runner`) does the
rest, identically for every task.

A task module (``tasks/<name>.py``) subclasses :class:`Task` and registers it::

    @register_task("reconstruction")
    class Reconstruction(Task):
        def variants(self, image_shape):
            return [Variant("identity", lambda shape, seed: Identity(seed))]

Protocols:

- ``clean-train``: the model learned from clean training images (one fit per model, latent
  dim and seed, shared by every task and variant); it recovers observations of ``splits``.
- ``learn-from-corrupted``: the model learns only from the observed (corrupted) training
  images of this variant, as in the ABP paper, and recovery is scored on those training
  observations and on observed test images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from genbench.metrics import METRICS, score
from genbench.operators import ImageShape, Observations, Operator

CLEAN_TRAIN = "clean-train"
LEARN_FROM_CORRUPTED = "learn-from-corrupted"
PROTOCOLS = (CLEAN_TRAIN, LEARN_FROM_CORRUPTED)
SPLITS = ("train", "test", "negative")


@dataclass(frozen=True)
class Variant:
    """One setting of a task: a short stable name and how to build its operator.

    ``make_operator(image_shape, seed)`` returns a fresh operator; the runner builds one per
    (variant, seed) so a projection matrix is shared by the train and test observations.
    """

    name: str
    make_operator: Callable[[ImageShape, int], Operator]
    protocols: tuple[str, ...] = (CLEAN_TRAIN,)


class Task(ABC):
    """Base class of tasks. ``params`` come from the run config (``task.<name>.<key>``)."""

    name: ClassVar[str] = "task"
    #: which splits are scored under each protocol
    splits: ClassVar[Mapping[str, tuple[str, ...]]] = {CLEAN_TRAIN: ("test",),
                                                       LEARN_FROM_CORRUPTED: ("train", "test")}
    #: parameter names and defaults this task accepts
    default_params: ClassVar[Mapping[str, Any]] = {}
    #: the metrics :meth:`score` returns, one result row each
    metrics: ClassVar[tuple[str, ...]] = METRICS

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        params = dict(params or {})
        unknown = set(params) - set(self.default_params)
        if unknown:
            raise ValueError(f"task {self.name!r} has no parameter(s) {sorted(unknown)}; "
                             f"its parameters are {sorted(self.default_params)}")
        self.params = {**self.default_params, **params}

    @abstractmethod
    def variants(self, image_shape: ImageShape) -> list[Variant]:
        """The variants to run on images of this shape (validated: bad parameters raise)."""

    def score(self, obs: Observations, x: Tensor, x_hat: Tensor) -> dict[str, float]:
        """Metrics of one recovery: by default over every pixel of the image."""
        return score(x, x_hat)


def number_list(value: Any, name: str, kind: type) -> list:
    """Check a task parameter that lists numbers (``kind`` int or float): a list, no bools, no
    duplicates. Raises ValueError naming the parameter."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError(f"{name} must be a list, got {value!r}")
    out = []
    for v in value:
        ok = isinstance(v, (int, float)) if kind is float else isinstance(v, int)
        if isinstance(v, bool) or not ok:
            raise ValueError(f"{name} must hold {'numbers' if kind is float else 'integers'}, got {v!r}")
        out.append(kind(v))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} lists a value twice: {out}")
    return out
