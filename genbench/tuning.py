"""Equal tuning budgets: every model searches its own declared space with the same number of trials and
the same wall-clock budget, on a validation split carved from the training images. Test images are
never loaded into the search: :func:`tune` reads the training split only.

Each model config declares its search space beside its fields (``search_space``, a class attribute of
the config dataclass: field name -> :class:`FloatRange`, :class:`IntRange` or :class:`Choice`), always
holding the current default, which is the first trial of every study: the "before" of a model is
measured in the same protocol and the same budget as its "after". The search is Optuna's TPE sampler
(seeded), one study per model, kept in a journal file in the tuning folder, so a killed search resumes
(``tune --resume FOLDER``) with its finished trials and its budget's remaining seconds.

The objective is one task's variant under one protocol (``--objective reconstruction``,
``inpainting:block-14:learn-from-corrupted``, ``projection:k-100``: the task-family choice): the model
fits on the fit part of the training images (clean, or observed through the variant's operator for
``learn-from-corrupted``) and is scored by the task's own evaluation on the held-out part, observed
through the same operator. A model whose spec shares another's fit (``vae-refine``) is tuned through it.
With ``data.vary_split`` the search uses the split of the config's first seed: that seed's test images
are never seen; other seeds' test images may have been training images of the search (hyper-parameters,
not weights, carry that over: for a strict protocol, compare on the first seed or tune per seed).

Writes ``<out>/tune-<timestamp>/``: ``tune.json`` (the settings and the command), ``trials.csv`` (every
trial: model, number, state, value, seconds, parameters), ``tuned.yaml`` (the chosen configs: a config
file for ``--config``), ``tuning.md`` (per model: budget used, default and best validation score, the
chosen values) and ``studies.log`` (Optuna's journal).

Example::

    python run_benchmarks.py tune --preset default --models abp,vae --latent-dims 10 --trials 20 \\
        --budget 1800 --set data.n_train=2000
    python run_benchmarks.py --preset default --config results/tune-<id>/tuned.yaml
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbench.config import ConfigError, RunConfig
from genbench.space import Choice, FloatRange, IntRange, search_space  # noqa: F401 -- the spaces, re-exported

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class TuneSettings:
    """What one tuning run searches: models, the equal budget, the objective and the validation split."""

    models: tuple[str, ...]
    trials: int = 20
    budget_seconds: float = 1800.0
    objective: str = "reconstruction"  # task[:variant[:protocol]]
    metric: str = "mae"
    validation_fraction: float = 0.2
    latent_dim: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"tune: --trials must be >= 1, got {self.trials}")
        if not self.budget_seconds > 0:
            raise ConfigError(f"tune: --budget must be > 0 seconds, got {self.budget_seconds}")
        if not 0 < self.validation_fraction < 1:
            raise ConfigError(f"tune: --validation-fraction must be in (0, 1), got {self.validation_fraction}")


def parse_objective(text: str, task: Any, image_shape: tuple) -> tuple[Any, str]:
    """``task[:variant[:protocol]]`` -> (the task's variant, the protocol); the first variant and the
    clean-train protocol by default. Raises ConfigError naming the choices."""
    from genbench.task import CLEAN_TRAIN

    parts = text.split(":")
    if len(parts) > 3:
        raise ConfigError(f"--objective is TASK[:VARIANT[:PROTOCOL]], got {text!r}")
    variants = task.variants(image_shape)
    name = parts[1] if len(parts) > 1 and parts[1] else variants[0].name
    variant = next((v for v in variants if v.name == name), None)
    if variant is None:
        raise ConfigError(f"--objective: task {task.name!r} has no variant {name!r}; its variants: "
                          f"{', '.join(v.name for v in variants)}")
    protocol = parts[2] if len(parts) > 2 else CLEAN_TRAIN
    if protocol not in variant.protocols:
        raise ConfigError(f"--objective: variant {name!r} runs under {', '.join(variant.protocols)}, not {protocol!r}")
    return variant, protocol


# ------------------------------------------------------------------------------------ the search
def tune(config: RunConfig, settings: TuneSettings, *, folder: Path | None = None, command: str = "",
         log: Log = print) -> Path:
    """Run (or, with ``folder``, resume) the search; returns the tuning folder (module docstring)."""
    import optuna
    import torch

    from genbench.config import resolve_device
    from genbench.planning import cell_model_config, derive_seed
    from genbench.registry import get_model
    from genbench.results import config_hash

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = resolve_device(config.device)
    fit_x, val_x = training_split(config, settings.validation_fraction, settings.seed, device)
    obj = make_objective(settings.objective, config, fit_x, val_x, settings.seed, settings.metric)
    if folder is None:  # every input checked: only now is anything written
        folder = _new_folder(Path(config.out))
        _write(folder / "tune.json", json.dumps({"settings": dataclasses.asdict(settings), "config": config.to_dict(),
                                                 "command": command}, indent=2, default=str))
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "studies.log")))
    log(f"genbench tune: {len(settings.models)} model(s), {settings.trials} trials and {settings.budget_seconds:g} s "
        f"each; objective {obj.label} {settings.metric} on {len(val_x)} validation images "
        f"(fit on {len(fit_x)}); {folder}")
    for name in settings.models:
        spec = get_model(name)
        space = search_space(spec.cls.Config)
        if spec.shares_fit_with or not space or not isinstance(obj.op, spec.capabilities.operators) or \
                not search_space_left(space, config.model.get(name, {})):
            why = (f"reuses {spec.shares_fit_with}'s fit: tuned through it" if spec.shares_fit_with else
                   "declares no search space" if not space else
                   f"does not support the {type(obj.op).__name__} operator" if not isinstance(obj.op, spec.capabilities.operators)
                   else "every field of its search space is fixed by the config")
            log(f"tune {name}: skipped ({why})")
            continue
        fixed = dict(config.model.get(name, {}))  # set by the preset, --config or --set: fixed, not searched
        space = {k: p for k, p in space.items() if k not in fixed}
        # the runner's model config (preset, --set, dry-run overrides, the execution switches --amp / --compile)
        base = cell_model_config(spec, config, settings.latent_dim if spec.capabilities.latent_code else None)
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                    direction="maximize" if obj.higher_is_better else "minimize",
                                    sampler=optuna.samplers.TPESampler(
                                        seed=derive_seed(settings.seed, name, "tpe") % 2 ** 32))
        if not study.trials:
            study.enqueue_trial({k: getattr(base, k) for k in space})  # trial 0: the defaults
        done = [t for t in study.trials if t.state.is_finished()]
        used = sum(t.user_attrs.get("seconds", 0.0) for t in done)
        left, budget = settings.trials - len(done), settings.budget_seconds - used
        if left <= 0 or budget <= 0:
            log(f"tune {name}: budget spent ({len(done)} trials, {used:.0f} s)")
            continue

        def objective(trial: Any, spec: Any = spec, base: Any = base, space: dict = space, name: str = name) -> float:
            params = {k: p.suggest(trial, k) for k, p in space.items()}
            t0 = time.perf_counter()
            try:
                model_config = dataclasses.replace(base, **params)
                torch.manual_seed(derive_seed(settings.seed, name, trial.number, "fit"))
                model = spec.cls(model_config).fit(obj.train_obs(spec))
                value = obj.score(model, derive_seed(settings.seed, name, trial.number), device, settings.seed)
            except Exception as err:  # noqa: BLE001 -- a diverged or broken trial is pruned, the search goes on
                trial.set_user_attr("seconds", time.perf_counter() - t0)
                trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:300])
                log(f"tune {name} trial {trial.number}: failed ({type(err).__name__}: {err})"[:200])
                raise optuna.TrialPruned() from None
            seconds = time.perf_counter() - t0
            trial.set_user_attr("seconds", seconds)
            trial.set_user_attr("config_hash", config_hash(dataclasses.asdict(model_config)))
            log(f"tune {name} trial {trial.number}: {settings.metric} {value:.5f} in {seconds:.0f} s ({params})")
            return value

        study.optimize(objective, n_trials=left, timeout=budget)
    write_outputs(folder, settings, storage, log)
    return folder


def _new_folder(out: Path, prefix: str = "tune") -> Path:
    """``out/<prefix>-<timestamp>`` (``-2``, ``-3`` ... when a search started in the same second)."""
    stem = out / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 100):
        folder = stem if i == 1 else stem.with_name(f"{stem.name}-{i}")
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:
            continue
    raise ConfigError(f"cannot create a new folder beside {stem}")


def search_space_left(space: dict, fixed: dict) -> bool:
    """Whether a field of ``space`` is left to search once the config's own settings are fixed."""
    return any(k not in fixed for k in space)


def validation_split(train: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(fit, validation): a seeded permutation of the training images, the last ``fraction`` held out."""
    import numpy as np
    import torch

    n_val = max(1, round(len(train) * fraction))
    if len(train) - n_val < 1:
        raise ConfigError(f"{len(train)} training images are too few to hold out {fraction:.0%} for validation")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(train)))
    return train[perm[: len(train) - n_val]], train[perm[len(train) - n_val:]]


def training_split(config: RunConfig, fraction: float, seed: int, device: Any) -> tuple[Any, Any]:
    """(fit, validation) images on ``device``: :func:`validation_split` of the training split of the
    config's data (with ``data.vary_split``, the split of the config's first seed, whose test images
    stay unseen). Test images are never read."""
    from genbench.backbone import set_conv_path
    from genbench.data import load_data
    from genbench.planning import effective_data_config

    set_conv_path(config.conv_path)  # as the runner does: the fits run on the run's convolution path
    data_config = effective_data_config(config)
    if data_config.vary_split:
        from genbench.rundata import split_seed
        data_config = dataclasses.replace(data_config, seed=split_seed(data_config.seed, config.seeds[0]))
    train = load_data(data_config).train  # the training split only: test is never read
    fit_x, val_x = validation_split(train, fraction, seed)
    return fit_x.to(device), val_x.to(device)


@dataclass
class Objective:
    """One task variant under one protocol on a validation split (``TASK[:VARIANT[:PROTOCOL]]``): the
    observations a model fits on and the score of a fitted model on the held-out part, observed through
    the same operator. Made by :func:`make_objective`; shared by ``tune`` and the epoch curve."""

    text: str
    task: Any
    variant: Any
    protocol: str
    op: Any
    metric: str
    higher_is_better: bool
    clean_fit: Any       # the fit images as clean-train fits see them
    observed_fit: Any    # ... and through the variant's operator (learn-from-corrupted)
    observed_val: Any
    val_x: Any

    @property
    def label(self) -> str:
        return f"{self.task.name}/{self.variant.name}/{self.protocol}"

    def clean_train(self, spec: Any) -> bool:
        """Whether ``spec`` fits on the clean images for this objective (as the runner's fit_key decides)."""
        from genbench.task import CLEAN_TRAIN
        return self.protocol == CLEAN_TRAIN and spec.capabilities.learns

    def train_obs(self, spec: Any) -> Any:
        return self.clean_fit if self.clean_train(spec) else self.observed_fit

    def score(self, model: Any, generator_seed: int, device: Any, seed: int) -> float:
        """The task's own evaluation of ``model`` on the validation images; raises on a non-finite value."""
        import torch

        from genbench.task import EvalContext
        ctx = EvalContext(model=model, op=self.op, observed={"validation": self.observed_val},
                          clean={"validation": self.val_x}, generator=torch.Generator().manual_seed(generator_seed),
                          device=device, clock=time.perf_counter, seed=seed)
        value = float(self.task.evaluate(ctx, "validation").scores[self.metric])
        if not math.isfinite(value):
            raise ValueError(f"non-finite {self.metric}")
        return value


def make_objective(text: str, config: RunConfig, fit_x: Any, val_x: Any, seed: int, metric: str) -> Objective:
    """Parse ``text`` against the config's tasks and observe the fit and validation images through the
    variant's operator (seeded by ``seed``, the task and the variant). Raises ConfigError when the task
    does not score ``metric``."""
    from genbench.operators import Identity
    from genbench.planning import derive_seed
    from genbench.registry import get_metric, get_task

    name = text.split(":")[0]
    task = get_task(name)(config.task.get(name))
    variant, protocol = parse_objective(text, task, tuple(fit_x.shape[1:]))
    if metric not in task.metrics_for("validation"):
        raise ConfigError(f"--metric: task {task.name!r} does not score {metric!r}; it scores "
                          f"{', '.join(task.metrics_for('validation'))}")
    op = variant.make_operator(tuple(fit_x.shape[1:]), derive_seed(seed, task.name, variant.name))
    op.reset(1)
    observed_fit = op.observe(fit_x)
    op.reset(2)
    observed_val = op.observe(val_x)
    return Objective(text=text, task=task, variant=variant, protocol=protocol, op=op, metric=metric,
                     higher_is_better=get_metric(metric).higher_is_better,
                     clean_fit=Identity(seed=seed).observe(fit_x), observed_fit=observed_fit,
                     observed_val=observed_val, val_x=val_x)


# ------------------------------------------------------------------------------------ outputs
def write_outputs(folder: Path, settings: TuneSettings, storage: Any, log: Log) -> None:
    """``trials.csv``, ``tuned.yaml`` and ``tuning.md`` from the studies in ``storage``."""
    import optuna
    import pandas as pd
    import yaml

    rows, tuned, lines = [], {}, []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        name = study.study_name
        for t in study.trials:
            rows.append({"model": name, "trial": t.number, "state": t.state.name, "value": t.value,
                         "seconds": t.user_attrs.get("seconds"), "error": t.user_attrs.get("error", ""),
                         **{f"param.{k}": v for k, v in t.params.items()}})
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            lines.append(f"| {name} | {len(study.trials)} | - | - | - | no trial completed |")
            continue
        best = study.best_trial
        default = next((t for t in complete if t.number == 0), None)
        seconds = sum(t.user_attrs.get("seconds", 0.0) for t in study.trials)
        tuned[name] = {k: _plain(v) for k, v in best.params.items()}
        chosen = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        lines.append(f"| {name} | {len(study.trials)} | {seconds:.0f} | "
                     f"{'-' if default is None else f'{default.value:.5f}'} | {best.value:.5f} (trial {best.number}) | "
                     f"{chosen} |")
    _write(folder / "trials.csv", pd.DataFrame(rows).to_csv(index=False))
    header = (f"# genbench tune: chosen on {settings.objective} {settings.metric} of a {settings.validation_fraction:.0%} "
              f"validation split of the training images\n# (trials <= {settings.trials}, budget "
              f"{settings.budget_seconds:g} s per model; tuning.md has the search). Use with --config.\n")
    _write(folder / "tuned.yaml", header + yaml.safe_dump({"model": tuned}, sort_keys=True))
    text = ["# Tuning", "", f"Objective: `{settings.objective}`, {settings.metric} on a validation split "
            f"({settings.validation_fraction:.0%} of the training images; test images never read). Budget per "
            f"model: {settings.trials} trials, {settings.budget_seconds:g} s (Optuna TPE, seed {settings.seed}; "
            f"trial 0 is the model's default config). Latent dim {settings.latent_dim}.", "",
            "| model | trials | seconds | default | best | chosen |", "|---|---|---|---|---|---|", *lines, ""]
    _write(folder / "tuning.md", "\n".join(text))
    log(f"genbench tune: wrote {folder}/ (tuned.yaml, tuning.md, trials.csv)")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _write(path: Path, text: str) -> None:
    from genbench.fsutil import write_text

    write_text(path, text)


def resume_settings(folder: Path) -> tuple[dict, TuneSettings, str]:
    """``(config dict, settings, command)`` of a tuning folder's ``tune.json``."""
    try:
        blob = json.loads((Path(folder) / "tune.json").read_text(encoding="utf-8"))
        settings = dict(blob["settings"])
        settings["models"] = tuple(settings["models"])
        blob["config"].setdefault("conv_path", "native")  # saved before the setting existed: the native path ran
        return blob["config"], TuneSettings(**settings), blob.get("command", "")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"tune --resume {folder}: not a tuning folder ({type(err).__name__}: {err})") from None


def rewrite_settings(folder: Path, settings: TuneSettings) -> None:
    """Record raised ``--trials`` / ``--budget`` of a resumed search in its ``tune.json``."""
    blob = json.loads((Path(folder) / "tune.json").read_text(encoding="utf-8"))
    blob["settings"] = dataclasses.asdict(settings)
    _write(Path(folder) / "tune.json", json.dumps(blob, indent=2, default=str))


def models_of(config: RunConfig, names: Sequence[str] | None) -> tuple[str, ...]:
    """The models to tune: those named, else the config's learned models."""
    from genbench.registry import get_model

    chosen = tuple(names) if names else tuple(m for m in config.models if get_model(m).capabilities.learns
                                              and not get_model(m).capabilities.floor)
    for m in chosen:
        get_model(m)  # an unknown name: the registry's error
    return chosen
