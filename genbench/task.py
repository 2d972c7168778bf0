"""What a task is: named variants (each an operator recipe with its numeric level), the protocols it
runs under, the splits it scores, the registered metrics it reports, and how it evaluates a fitted
model on one split, given an :class:`EvalContext`. The runner (:mod:`genbench.runner`) does the
rest (fits, seeds, devices, rows), identically for every task.

A task module (``tasks/<name>.py``) subclasses :class:`Task` (or :class:`RecoveryTask`, for "observe,
recover, score the recovery") and registers it::

    @register_task("reconstruction")
    class Reconstruction(RecoveryTask):
        def variants(self, image_shape):
            return [Variant("identity", lambda shape, seed: Identity(seed))]

A task that evaluates the model itself (a likelihood, sample quality) overrides :meth:`Task.evaluate`
and reads ``ctx.model``, ``ctx.observed``, ``ctx.clean`` and ``ctx.generator``.

Protocols:

- ``clean-train``: the model learned from clean training images (one fit per model, latent
  dim and seed, shared by every task and variant); it is evaluated on observations of ``splits``.
- ``learn-from-corrupted``: the model learns only from the observed (corrupted) training
  images of this variant, as in the ABP paper, and is evaluated on those training
  observations and on observed test images.

Variants carry their axis: ``Variant("block-14", ..., level=14, level_name="block", level_unit="px")``
puts ``level_name``, ``level`` and ``level_unit`` columns in ``results.csv``, from which the report
draws its sweep plots for any task; nothing is parsed back out of the variant's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from genbench.metrics import PIXEL_METRICS, Recovery
from genbench.operators import ImageShape, Observations, Operator
from genbench.registry import get_metric

if TYPE_CHECKING:
    import torch

    from genbench.model import LatentModel

CLEAN_TRAIN = "clean-train"
LEARN_FROM_CORRUPTED = "learn-from-corrupted"
PROTOCOLS = (CLEAN_TRAIN, LEARN_FROM_CORRUPTED)
SPLITS = ("train", "test", "negative")


@dataclass(frozen=True)
class Variant:
    """One setting of a task: a short stable name, how to build its operator, and its level.

    ``make_operator(image_shape, seed)`` returns a fresh operator; the runner builds one per
    (variant, seed) so a projection matrix is shared by the train and test observations.
    ``level`` is the variant's position on its axis (``0.7``, ``14``, ``100``), ``level_name``
    names the axis (``fraction``, ``block``, ``K``) and ``level_unit`` its unit (``px``; "" for
    none); a variant on no axis leaves them None.
    """

    name: str
    make_operator: Callable[[ImageShape, int], Operator]
    protocols: tuple[str, ...] = (CLEAN_TRAIN,)
    level: float | None = None
    level_name: str | None = None
    level_unit: str = ""

    def __post_init__(self) -> None:
        if (self.level is None) != (self.level_name is None):
            raise ValueError(f"variant {self.name!r}: give level and level_name together "
                             f"(got level={self.level!r}, level_name={self.level_name!r})")
        unknown = set(self.protocols) - set(PROTOCOLS)
        if unknown:
            raise ValueError(f"variant {self.name!r}: unknown protocol(s) {sorted(unknown)}; "
                             f"choose from {', '.join(PROTOCOLS)}")


@dataclass
class DataView:
    """The run's data for a task that trains a helper of its own (the samples task's feature net): the
    full clean splits on the device, their labels (CPU; None where the data has none), ``key`` naming the
    data settings, a cache every cell of the run shares, and a folder to keep files in (None: keep none)."""

    splits: Mapping[str, Tensor]
    labels: Mapping[str, Tensor | None]
    key: str
    cache: dict[Any, Any] = field(default_factory=dict)
    folder: Path | None = None


@dataclass
class EvalContext:
    """What a task sees when it evaluates one cell: the fitted model, the operator of the variant,
    each split observed through it and the clean images (both capped at ``n_eval`` images), a
    seeded CPU random generator, the device and the runner's clock (CUDA-synchronised).

    ``reconstruct(split)`` is the timed recovery most tasks need; it refuses non-finite output."""

    model: LatentModel
    op: Operator
    observed: Mapping[str, Observations]
    clean: Mapping[str, Tensor]
    generator: torch.Generator
    device: torch.device
    clock: Callable[[], float]
    #: what one split's evaluation leaves for a later split of the same cell (e.g. per-image
    #: scores of ``test`` for an out-of-domain AUROC on ``negative``)
    cache: dict[str, Any] = field(default_factory=dict)
    #: what is a property of the fit, not of the cell (a density: vae and vae-refine share one), kept for
    #: every cell on the same fit in this process; ``fit_seed`` seeds such work, so that whichever cell
    #: computes it first (after a resume, too) gets the same numbers
    fit_cache: dict[Any, Any] = field(default_factory=dict)
    fit_seed: int = 0
    #: the cell's run seed, and the run's data (None outside a runner)
    seed: int = 0
    data: DataView | None = None

    def reconstruct(self, split: str) -> tuple[Tensor, float]:
        """``(x_hat, seconds)``: the model's recovery of the observed ``split``."""
        import torch

        from genbench.model import DivergenceError

        t0 = self.clock()
        x_hat = self.model.reconstruct(self.observed[split])
        seconds = self.clock() - t0
        name = type(self.model).__name__
        if not bool(torch.isfinite(x_hat).all()):
            raise DivergenceError(f"{name}.reconstruct returned non-finite values (NaN or inf) on the {split} split")
        low, high = float(x_hat.min()), float(x_hat.max())
        if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:  # a score of such images means nothing
            raise DivergenceError(f"{name}.reconstruct returned values in [{low:.4g}, {high:.4g}] on the {split} "
                                  f"split; images are in [-1, 1] (clamp the recovery)")
        return x_hat, seconds


#: how far outside [-1, 1] a recovery may stray (float rounding) before its cell fails
RANGE_TOLERANCE = 1e-3


@dataclass
class SplitResult:
    """A task's evaluation of one split: a value per metric it names (or, in ``unsupported``, why this
    model has none: those rows get ``status=unsupported`` and the message), how many images, inference
    time per image and steps, optionally the recovery (kept as a few images for the grids), and in
    ``notes`` a message for a scored row (how the value was obtained, e.g. "a lower bound"), in
    ``intervals`` the bootstrap interval over images of the metrics that have one."""

    scores: dict[str, float]
    n_images: int
    infer_seconds: float = float("nan")
    infer_steps: int = 0
    recovery: tuple[Observations, Tensor, Tensor] | None = field(default=None, repr=False)  # (obs, x, x_hat)
    unsupported: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    #: a metric's 95% bootstrap interval over the split's images (genbench.uncertainty), where it has one
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


class Task(ABC):
    """Base class of tasks. ``params`` come from the run config (``task.<name>.<key>``)."""

    name: ClassVar[str] = "task"
    #: which splits are scored under each protocol
    splits: ClassVar[Mapping[str, tuple[str, ...]]] = {CLEAN_TRAIN: ("test",),
                                                       LEARN_FROM_CORRUPTED: ("train", "test")}
    #: parameter names and defaults this task accepts
    default_params: ClassVar[Mapping[str, Any]] = {}
    #: registered metric names :meth:`evaluate` returns, one result row each
    metrics: ClassVar[tuple[str, ...]] = PIXEL_METRICS
    #: caps on numeric parameters under ``--dry-run`` (a smoke test: e.g. a few annealing steps, not 1000)
    dry_run_caps: ClassVar[Mapping[str, int]] = {}

    def __init__(self, params: Mapping[str, Any] | None = None, *, dry_run: bool = False) -> None:
        params = dict(params or {})
        unknown = set(params) - set(self.default_params)
        if unknown:
            raise ValueError(f"task {self.name!r} has no parameter(s) {sorted(unknown)}; "
                             f"its parameters are {sorted(self.default_params)}")
        self.params = {**self.default_params, **params}
        if dry_run:  # caps, not replacements: a smaller value the user set stays; a bad one is still refused
            for key, cap in self.dry_run_caps.items():
                value = self.params[key]
                if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                    self.params[key] = cap

    @abstractmethod
    def variants(self, image_shape: ImageShape) -> list[Variant]:
        """The variants to run on images of this shape (validated: bad parameters raise)."""

    @abstractmethod
    def evaluate(self, ctx: EvalContext, split: str) -> SplitResult:
        """Evaluate ``ctx.model`` on one split; ``scores`` holds every metric of :meth:`metric_names`."""

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        """The metrics of this task's rows, in order: the ones it names (:attr:`metrics`), then the
        registered metrics that add themselves to it (``Metric.tasks``), in registration order."""
        from genbench.registry import available_metrics

        extra = [m.name for m in available_metrics().values() if cls.name in m.tasks and m.name not in cls.metrics]
        return (*cls.metrics, *extra)

    def metrics_for(self, split: str) -> tuple[str, ...]:
        """The metrics of one split's rows: :meth:`metric_names` unless a task scores splits differently
        (a split need not be a data split: a task may name one of its own, e.g. data it simulates)."""
        return self.metric_names()

    def check_scores(self, result: SplitResult, split: str) -> None:
        """Raise when ``result`` lacks a supported metric of ``split`` (ValueError) or holds a non-finite one
        (:class:`~genbench.model.DivergenceError`): the runner then fails the cell's rows with the message."""
        import math

        from genbench.model import DivergenceError

        metrics = [m for m in self.metrics_for(split) if m not in result.unsupported]
        missing = [m for m in metrics if m not in result.scores]
        if missing:
            raise ValueError(f"task {self.name!r} returned no value for metric(s) {missing} on the {split} split")
        bad = [m for m in metrics if not math.isfinite(result.scores[m])]
        if bad:
            raise DivergenceError(f"non-finite {', '.join(bad)} on the {split} split")

    def degenerate(self, op: Operator, protocol: str, capabilities: Any) -> str:
        """Why a cell is degenerate by construction ("" when it is not): its rows are computed, and
        ``results.csv``'s ``flag`` column, ``summary.md`` and the plots mark them. By default: learning
        from observations through one shared linear map with a null space (``op.shared_null_space``) by a
        model that cannot learn that null space (``capabilities.learns_null_space`` False: PCA, RBM, DBN)."""
        if (protocol == LEARN_FROM_CORRUPTED and op.shared_null_space and capabilities.learns
                and not capabilities.learns_null_space):
            return (f"degenerate: learned from one {op.name} shared by every image, so this linear or pixel-wise "
                    f"model never sees the null space of A; the row measures the architecture (about A⁺y), "
                    f"not learning")
        return ""


class RecoveryTask(Task):
    """A task scored on the model's recovery of observed images: every registered metric it names
    is computed on :meth:`scored_region` (or the whole image, for metrics whose region is ``all``)."""

    def scored_region(self, obs: Observations) -> Tensor | None:
        """The entries a recovery is scored on: every pixel by default (None)."""
        return None

    def evaluate(self, ctx: EvalContext, split: str) -> SplitResult:
        obs, x = ctx.observed[split], ctx.clean[split]
        x_hat, seconds = ctx.reconstruct(split)
        recovery = Recovery(x, x_hat, self.scored_region(obs))
        metrics = [get_metric(m) for m in self.metrics_for(split) if get_metric(m).needs == "recovery"]
        scores = {m.name: m.score(recovery) for m in metrics}
        return SplitResult(scores, len(x), seconds / len(x), ctx.model.infer_steps, (obs, x, x_hat),
                           intervals=recovery_intervals(recovery, metrics, ctx.generator.initial_seed()))

    def score(self, obs: Observations, x: Tensor, x_hat: Tensor) -> dict[str, float]:
        """The metrics of one recovery (the same numbers :meth:`evaluate` reports)."""
        recovery = Recovery(x, x_hat, self.scored_region(obs))
        return {m: get_metric(m).score(recovery) for m in self.metric_names()}


def recovery_intervals(recovery: Recovery, metrics: Sequence[Any], seed: int) -> dict[str, tuple[float, float]]:
    """The bootstrap interval over images of each metric that declares its per-image parts, from one
    set of resamples seeded by ``seed`` (genbench.uncertainty)."""
    from genbench.uncertainty import bootstrap_weights, ratio_interval

    metrics = [m for m in metrics if m.per_image is not None]
    if not metrics or len(recovery.x) == 0:
        return {}
    weights = bootstrap_weights(len(recovery.x), seed)
    return {m.name: ratio_interval(*m.per_image(recovery, m.region), weights) for m in metrics}


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
