"""Planning a sweep: which cells run, which of them share a fit, and each cell's model config.

A *cell* is one (model, latent dim, seed, task, variant, protocol); it is scored on the splits its
task names for that protocol. Cells that use the same fitted model form a *fit group*: every
``clean-train`` cell of a (model, latent dim, seed) shares one fit on clean training images, and a
``learn-from-corrupted`` cell fits on its variant's observed training images. Models registered
with ``shares_fit_with`` (``vae-refine`` on ``vae``) join the fit group of the model they share with.

:func:`cell_model_config` is the only function that builds a cell's model config (the runner, the
config validation, the benchmarks and the tests all call it), and :func:`derive_seed` the only one
that derives seeds, so every random draw depends on (run seed, cell identity) and not on the order
in which cells run.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genbench.dataconfig import FOLDER_PREFIX
from genbench.registry import ModelSpec, get_model

if TYPE_CHECKING:
    from genbench.config import RunConfig
    from genbench.data import DataConfig
    from genbench.results import ResultRow
    from genbench.task import Variant

#: random stream of each split's observations (see Operator.reset)
SPLIT_STREAMS = {"train": 1, "test": 2, "negative": 3}
#: data sizes of a dry run: every cell, a few images, one step
DRY_RUN_DATA = {"n_train": 64, "n_test": 16, "n_negative": 16}
DRY_RUN_EVAL = 16
#: run-level switches a model config takes when it has the field (--amp / --compile)
EXECUTION_SWITCHES = ("amp", "compile")


@dataclass(frozen=True)
class Cell:
    """One (model, latent dim, seed, task, variant, protocol) of a sweep; ``latent_dim`` is None for a
    model without a latent code (its capabilities say so), which runs once per seed."""

    model: str
    latent_dim: int | None
    seed: int
    task: str
    variant: str
    protocol: str

    def label(self) -> str:
        dim = "" if self.latent_dim is None else f" d={self.latent_dim}"
        return f"{self.model}{dim} seed={self.seed} {self.task}/{self.variant} {self.protocol}"


@dataclass(frozen=True)
class FitKey:
    """Identity of one fit: the cache key, the parts its seed derives from, and whether it is the
    clean fit shared by every clean-train cell of its (model, latent dim, seed)."""

    key: tuple
    seed_parts: tuple
    clean: bool


#: what running one cell gives: (cell, its rows, status, message)
CellResult = tuple["Cell", list["ResultRow"], str, str]


@dataclass
class Job:
    """What an executor runs, as functions (it never sees the runner):

    - ``cells``: every cell to run, in the planned order; ``groups``: the same cells by fitted model;
    - ``run_local(cells)``: runs cells in this process, yielding each result as it finishes;
    - ``run_remote(group)``: a picklable function (a module-level function with plain data bound) that
      rebuilds everything in another process and returns the group's results;
    - ``failed(cell, message)``: the result of a cell whose worker returned nothing;
    - ``wants_gpu``: the run is on CUDA (a worker then asks for a GPU).
    """

    cells: Sequence[Cell]
    groups: Sequence[Sequence[Cell]]
    run_local: Callable[[Sequence[Cell]], Iterator[CellResult]]
    run_remote: Callable[[list[Cell]], list[CellResult]]
    failed: Callable[[Cell, str], CellResult]
    wants_gpu: bool = False



def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (crc32 of their text): independent of call order."""
    return zlib.crc32("/".join(map(str, parts)).encode("utf-8")) & 0x7FFFFFFF


def effective_data_config(cfg: RunConfig) -> DataConfig:
    """The data config of a run: a dry run caps the sizes to a few images (for an image folder that holds
    fewer, to what it holds: 80 % train, 20 % test)."""
    if not cfg.dry_run:
        return cfg.data
    caps = {k: min(v, getattr(cfg.data, k) or v) for k, v in DRY_RUN_DATA.items()}
    if cfg.data.name.startswith(FOLDER_PREFIX):
        from genbench.data import count_folder_images  # torchvision: only for a folder

        n = count_folder_images(cfg.data.name[len(FOLDER_PREFIX):])
        if 2 <= n < caps["n_train"] + caps["n_test"]:
            caps["n_test"] = max(1, round(0.2 * n))
            caps["n_train"] = n - caps["n_test"]
    return dataclasses.replace(cfg.data, **caps)


def latent_dims(cfg: RunConfig, spec: ModelSpec) -> tuple[int | None, ...]:
    """The latent dims a model runs at: the config's, or ``(None,)`` for a model without a latent code."""
    return tuple(cfg.latent_dims) if spec.capabilities.latent_code else (None,)


def cell_model_config(spec: ModelSpec, cfg: RunConfig, latent_dim: int | None) -> Any:
    """The model config of a cell: dataclass defaults <- registered defaults <- ``model.<name>.*`` of the
    run config <- the dry-run overrides <- the latent dim <- the run's execution switches."""
    overrides = dict(cfg.model.get(spec.name, {}))
    if cfg.dry_run:
        overrides.update(spec.cls.dry_run_overrides)
    if latent_dim is not None:
        overrides["latent_dim"] = latent_dim
    fields = {f.name for f in dataclasses.fields(spec.cls.Config)}
    for switch in EXECUTION_SWITCHES:  # --amp / --compile, for the models that have them
        if switch in fields:
            overrides.setdefault(switch, getattr(cfg, switch))
    return spec.make_config(**overrides)


def shared_fit_warnings(cfg: RunConfig) -> list[str]:
    """One line per model that would share another's fit (``shares_fit_with``, e.g. vae-refine on vae) but whose
    config differs from it in a field that changes the fit: it then trains a fit of its own, no longer "the same
    weights, other inference". Decided here, said by the runner; the fit keys already keep the two apart."""
    from genbench.model import hashed_config

    out = []
    for name in cfg.models:
        spec = get_model(name)
        if spec.shares_fit_with is None:
            continue
        owner = get_model(spec.shares_fit_with)
        d = latent_dims(cfg, spec)[0]
        mine, theirs = (hashed_config(cell_model_config(s, cfg, d)) for s in (spec, owner))
        differ = sorted(k for k in mine if k not in spec.cls.inference_fields and mine[k] != theirs.get(k))
        if differ:
            shown = ", ".join(f"{k} {mine[k]!r} vs {theirs.get(k)!r}" for k in differ)
            out.append(f"warning: {name} no longer shares {owner.name}'s fit ({shown}): it trains one of its own; "
                       f"set the same values under model.{name} and model.{owner.name} to share it")
    return out


def plan_cells(cfg: RunConfig, variants: Mapping[str, Sequence[Variant]]) -> list[Cell]:
    """Every cell of a sweep, in the order the local executor runs them: by model, latent dim, seed,
    task, variant, protocol (so one clean fit serves its cells back to back)."""
    out = []
    for model in cfg.models:
        for d in latent_dims(cfg, get_model(model)):
            for seed in cfg.seeds:
                for task, task_variants in variants.items():
                    for v in task_variants:
                        out += [Cell(model, d, seed, task, v.name, p) for p in v.protocols]
    return out


def fit_key(cell: Cell, spec: ModelSpec, model_config: Any, *, clean_protocol: str = "clean-train") -> FitKey:
    """The fit a cell uses.

    A clean-train cell of a model that learns shares the one clean fit of its (model, latent dim, seed);
    any other cell fits on its variant's observations (a method that learns nothing only sees them).
    Models that share a fit are keyed by the shared name and the config fields that change the fit
    (all but the class's ``inference_fields``), and the fit is seeded by the shared name.
    """
    from genbench.model import hashed_config
    from genbench.results import config_hash

    clean = cell.protocol == clean_protocol and spec.capabilities.learns
    where = (cell.latent_dim, cell.seed) + (() if clean else (cell.task, cell.variant))
    fit_config = {k: v for k, v in hashed_config(model_config).items() if k not in spec.cls.inference_fields}
    return FitKey((spec.fit_name, config_hash(fit_config)) + where, (spec.fit_name,) + where, clean)


def fit_keys(cells: Sequence[Cell], cfg: RunConfig) -> list[tuple]:
    """The key of the fit each cell uses (:func:`fit_key`)."""
    keys = []
    for cell in cells:
        spec = get_model(cell.model)
        keys.append(fit_key(cell, spec, cell_model_config(spec, cfg, cell.latent_dim)).key)
    return keys


def fit_groups(cells: Sequence[Cell], cfg: RunConfig) -> list[list[Cell]]:
    """The cells grouped by the fitted model they use, in first-seen order."""
    groups: dict[tuple, list[Cell]] = {}
    for cell, key in zip(cells, fit_keys(cells, cfg)):
        groups.setdefault(key, []).append(cell)
    return list(groups.values())


def stack_plan(cells: Sequence[Cell], cfg: RunConfig, size: int,
               done: Callable[[tuple], bool] = lambda key: False) -> list[list[tuple[Cell, FitKey]]]:
    """The fits of ``cells`` that ``--stack size`` trains together: fits of model classes that define
    ``fit_stacked`` themselves (an inherited one would ignore a subclass's overrides) and whose capabilities
    say they stack, not ``done`` yet (fitted or checkpointed), grouped by (fit name, full model config; and by
    variant when the config sets ``n_epochs_by_operator``, so a stack trains one epoch count) and cut into
    chunks of at most ``size``, one (first cell, fit key) per fit; chunks of one are left to the usual
    one-at-a-time fit."""
    buckets: dict[tuple, dict[tuple, tuple[Cell, FitKey]]] = {}
    for cell in cells:
        spec = get_model(cell.model)
        if not (spec.capabilities.stacks and spec.capabilities.learns and "fit_stacked" in vars(spec.cls)):
            continue
        model_config = cell_model_config(spec, cfg, cell.latent_dim)
        fk = fit_key(cell, spec, model_config)
        if not done(fk.key):
            # n_epochs_by_operator: fits of other variants may train other epoch counts, so they stack apart
            apart = () if not model_config.n_epochs_by_operator else \
                ("clean",) if fk.clean else (cell.task, cell.variant)
            bucket = (spec.fit_name, repr(model_config), apart)
            buckets.setdefault(bucket, {}).setdefault(fk.key, (cell, fk))
    chunks = []
    for fits in buckets.values():
        members = list(fits.values())
        chunks += [members[i:i + size] for i in range(0, len(members), size)]
    return [c for c in chunks if len(c) > 1]
