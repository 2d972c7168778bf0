"""The epoch curve: how a model's validation score moves with its training epochs, from one fit per
(model, fit, seed) instead of one fit per epoch count. Is a preset's epoch count needed, or would
fewer give the same held-out error for less time?

No model on the shared backbone has a learning-rate schedule, so the first ``e`` epochs of a longer fit
are a fit of ``e`` epochs: after each listed count, :meth:`~genbench.generator_model.GeneratorModel.fitted_copy`
finishes a copy as ``fit`` would (BN statistics recalibrated), under a forked random state, and the
objective's own evaluation scores it. Each value is the score of a separate fit of that many epochs,
bit for bit on the CPU (tests/test_epochs.py; on CUDA as far as its kernels are deterministic); the fit
itself goes on as if nothing was taken. This holds while no model reads ``n_epochs`` in its steps (no
schedule): a plug-in with one would get a wrong curve.

The objectives are ``tune``'s (:class:`genbench.tuning.Objective`): a task variant under a protocol, fitted
on part of the training images and scored on the held-out rest (test images are never read). Objectives
that fit on the same images (every clean-train one; learn-from-corrupted ones of one variant) share a
fit. Each seed draws its own validation split, operator masks and initialisation; the data split is the
config's first seed's, as in ``tune``. Models without the shared epoch loop (RBM, DBN, PCA) are left out.

Writes ``<out>/epochs-<timestamp>/``: ``epochs.json`` (the settings, config and command), ``curve.csv``
(one row per model, objective, seed and epoch count: the value and the fit's seconds up to that count,
scoring excluded; appended as made, so a killed study resumes with ``--resume`` from its finished fits)
and ``epochs.md``: per objective, mean ± std over the seeds for each count, and per model the fewest
epochs whose mean is within one seed std of the configured count's on every objective.

Example::

    python run_benchmarks.py epochs --preset default --models abp,vae --latent-dim 10 --seeds 0,1 \\
        --objective reconstruction --objective inpainting:salt-pepper-0.7:learn-from-corrupted
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbench.config import ConfigError, RunConfig

Log = Callable[[str], None]
FIT_FAILED = "fit failed: "  # the error of the counts a failed fit did not reach; refitted on --resume
COLUMNS = ("model", "fit", "objective", "seed", "epochs", "metric", "value", "fit_seconds", "configured_epochs", "error")


@dataclass(frozen=True)
class EpochSettings:
    """What one epoch study fits and scores."""

    models: tuple[str, ...]
    objectives: tuple[str, ...] = ("reconstruction",)
    at: tuple[int, ...] = ()          # epoch counts to score; () = each model's configured count x 1/4, 1/2, 3/4, 1
    seeds: tuple[int, ...] = (0, 1)
    metric: str = "mae"
    validation_fraction: float = 0.2
    latent_dim: int = 10

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("epochs: no model to fit")
        if not self.objectives:
            raise ConfigError("epochs: no --objective")
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"epochs: an --objective is given twice: {', '.join(self.objectives)}")
        if any(e < 1 for e in self.at):
            raise ConfigError(f"epochs: --at counts must be >= 1, got {', '.join(map(str, self.at))}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"epochs: --seeds must be distinct and at least one, got {', '.join(map(str, self.seeds))}")
        if self.latent_dim < 1:
            raise ConfigError(f"epochs: --latent-dim must be >= 1, got {self.latent_dim}")
        if not 0 < self.validation_fraction < 1:
            raise ConfigError(f"epochs: --validation-fraction must be in (0, 1), got {self.validation_fraction}")

    def counts(self, configured: int) -> list[int]:
        """The epoch counts scored for a model configured with ``configured`` epochs (always included)."""
        at = self.at or tuple(max(1, round(configured * q)) for q in (0.25, 0.5, 0.75))
        return sorted(set(at) | {configured})


def epoch_curve(config: RunConfig, settings: EpochSettings, *, folder: Path | None = None, command: str = "",
                log: Log = print) -> Path:
    """Run (or, with ``folder``, resume) the study; returns its folder (module docstring)."""
    from genbench.config import resolve_device
    from genbench.generator_model import GeneratorModel
    from genbench.planning import cell_model_config, derive_seed
    from genbench.registry import get_model
    from genbench.tuning import _new_folder, _write, make_objective, training_split

    device = resolve_device(config.device)
    specs = {}
    for name in settings.models:
        spec = get_model(name)
        why = (f"reuses {spec.shares_fit_with}'s fit: study {spec.shares_fit_with}" if spec.shares_fit_with else
               "has no shared epoch loop to watch (GeneratorModel)" if not issubclass(spec.cls, GeneratorModel) else
               None)
        if why:
            log(f"epochs {name}: skipped ({why})")
        else:
            specs[name] = spec
    if not specs:
        raise ConfigError(f"epochs: none of {', '.join(settings.models)} trains with the shared epoch loop "
                          f"(abp, abp-gd, vae, dcgan do)")
    # every model config built, every objective parsed (and its metric checked) before anything is written
    bases = {}
    for name, spec in specs.items():
        try:  # the runner's model config: preset, --set, dry-run overrides and the execution switches
            bases[name] = cell_model_config(spec, config, settings.latent_dim)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"epochs: model {name}: {_one_line(err)}") from None
    first = training_split(config, settings.validation_fraction, settings.seeds[0], device)
    for text in settings.objectives:
        make_objective(text, config, *first, settings.seeds[0], settings.metric)
    if folder is None:
        folder = _new_folder(Path(config.out), "epochs")
        _write(folder / "epochs.json", json.dumps({"settings": dataclasses.asdict(settings), "config": config.to_dict(),
                                                   "command": command}, indent=2, default=str))
    path = folder / "curve.csv"
    if path.exists():
        _drop(path, lambda r: False)  # a row cut short by a crash mid-write goes
    log(f"genbench epochs: {len(specs)} model(s) x {len(settings.seeds)} seed(s); objectives "
        f"{', '.join(settings.objectives)} ({settings.metric}, {settings.validation_fraction:.0%} of the training "
        f"images held out); {folder}")
    for seed in settings.seeds:
        fit_x, val_x = first if seed == settings.seeds[0] else \
            training_split(config, settings.validation_fraction, seed, device)
        objectives = [make_objective(t, config, fit_x, val_x, seed, settings.metric) for t in settings.objectives]
        for name, spec in specs.items():
            base = bases[name]
            groups: dict[Any, list] = {}  # objectives that fit on the same observations share a fit
            for obj in objectives:
                if not isinstance(obj.op, spec.capabilities.operators):
                    log(f"epochs {name}: {obj.text} skipped (no {type(obj.op).__name__} operator)")
                    continue
                key = "clean" if obj.clean_train(spec) else (obj.task.name, obj.variant.name)
                groups.setdefault(key, []).append(obj)
            for key, group in groups.items():
                fit = "clean" if key == "clean" else "/".join(key)
                configured = base.fit_epochs(group[0].op.name)  # n_epochs, or n_epochs_by_operator[name]
                counts = settings.counts(configured)
                wanted = {(o.text, e) for o in group for e in counts}
                mine = _selector(name, seed, fit)
                rows = [r for r in _read(path) if mine(r)]
                have = {(r["objective"], int(r["epochs"])) for r in rows if not r["error"].startswith(FIT_FAILED)}
                if wanted <= have:
                    continue  # finished in an earlier part of the study
                if rows:  # killed midway, or its fit failed (a lack of memory may not recur): its rows go, it runs again
                    _drop(path, mine)
                log(f"epochs {name} seed={seed}: one fit of {max(counts)} epochs on the "
                    f"{'clean' if key == 'clean' else fit} images, scored at {', '.join(map(str, counts))} epochs on "
                    f"{', '.join(o.text for o in group)}")
                longest = dataclasses.replace(base, n_epochs=max(counts), n_epochs_by_operator={})  # whatever the data
                _study_fit(spec, longest, configured, counts, group,
                           fit=fit, seed=seed, device=device, name=name, path=path, log=log,
                           fit_seed=derive_seed(seed, name, "epochs", fit))
    write_report(folder, settings, log)
    return folder


def _study_fit(spec: Any, model_config: Any, configured: int, counts: list[int], group: list, *, fit: str, seed: int,
               device: Any, name: str, path: Path, log: Log, fit_seed: int) -> None:
    """One fit of ``max(counts)`` epochs, scoring every objective of ``group`` after each count."""
    import torch

    from genbench.planning import derive_seed

    clock = {"scoring": 0.0}
    t0 = time.perf_counter()
    wanted = set(counts)

    def on_epoch(model: Any, obs: Any, epochs: int) -> None:
        if epochs not in wanted:
            return
        s0 = time.perf_counter()
        fit_seconds = s0 - t0 - clock["scoring"]
        rows = []
        for obj in group:
            # the random state a fit of `epochs` epochs would finish with: forked, so the fit goes on unchanged
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                value, error = math.nan, ""
                try:
                    value = obj.score(model.fitted_copy(obs), derive_seed(seed, name, obj.text, "epochs"), device,
                                      seed)
                except Exception as err:  # noqa: BLE001 -- a diverged count is a row that says so
                    error = _one_line(err)[:300]
            rows.append({"model": name, "fit": fit, "objective": obj.text, "seed": seed, "epochs": epochs, "metric": obj.metric,
                         "value": value, "fit_seconds": round(fit_seconds, 3), "configured_epochs": configured,
                         "error": error})
        _append(path, rows)
        log(f"epochs {name} seed={seed} epoch {epochs}: " + ", ".join(
            f"{r['objective']} {r['value']:.5f}" for r in rows) + f" ({fit_seconds:.0f} s of fitting)")
        clock["scoring"] += time.perf_counter() - s0

    torch.manual_seed(fit_seed)
    try:
        spec.cls(model_config).fit(group[0].train_obs(spec), on_epoch=on_epoch)
    except Exception as err:  # noqa: BLE001 -- a fit that fails: the counts it did not reach say why
        reached = {int(r["epochs"]) for r in _read(path) if r["model"] == name and int(r["seed"]) == seed
                   and r["fit"] == fit}
        _append(path, [{"model": name, "fit": fit, "objective": obj.text, "seed": seed, "epochs": e,
                        "metric": obj.metric, "value": math.nan, "fit_seconds": "", "configured_epochs": configured,
                        "error": (FIT_FAILED + _one_line(err))[:300]}
                       for e in counts if e not in reached for obj in group])
        log(f"epochs {name} seed={seed}: fit failed ({_one_line(err)})"[:300])


# ------------------------------------------------------------------------------------ the table
def _read(path: Path) -> list[dict[str, str]]:
    """The rows of ``curve.csv``; a row cut short by a crash mid-write (fields missing) is left out."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if None not in r.values() and r.get("epochs", "").isdigit()]


def _append(path: Path, rows: Sequence[dict]) -> None:
    """Append rows (header first on a new file), flushed and fsynced: a crash loses at most the fit in progress."""
    new = not path.exists() or path.stat().st_size == 0
    torn = not new and _last_byte(path) != b"\n"  # a row cut short by a crash: end it, _read leaves it out
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        if torn:
            f.write("\r\n")
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _drop(path: Path, drop: Callable[[dict], bool]) -> None:
    """Rewrite ``path`` without the rows ``drop`` picks (atomically)."""
    from genbench.fsutil import atomic_write

    keep = [r for r in _read(path) if not drop(r)]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(keep)

    atomic_write(path, write)


def resume_settings(folder: Path) -> tuple[dict, EpochSettings, str]:
    """``(config dict, settings, command)`` of a study folder's ``epochs.json``."""
    try:
        blob = json.loads((Path(folder) / "epochs.json").read_text(encoding="utf-8"))
        settings = {k: tuple(v) if isinstance(v, list) else v for k, v in blob["settings"].items()}
        blob["config"].setdefault("conv_path", "native")  # saved before the setting existed: the native path ran
        return blob["config"], EpochSettings(**settings), blob.get("command", "")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"epochs --resume {folder}: not an epoch-study folder ({type(err).__name__}: {err})") from None


def _selector(model: str, seed: int, fit: str) -> Callable[[dict], bool]:
    """Whether a row of ``curve.csv`` belongs to this fit."""
    return lambda r: r["model"] == model and int(r["seed"]) == seed and r["fit"] == fit


# ------------------------------------------------------------------------------------ the report
def write_report(folder: Path, settings: EpochSettings, log: Log = print) -> str:
    """``epochs.md`` from ``curve.csv``: per objective, each model's counts (mean ± std over seeds, fit seconds)
    per model the fewest epochs within one seed std of its configured count on every objective, and whether the
    last step to the configured count still improved, seed by seed."""
    import pandas as pd

    from genbench.registry import get_metric
    from genbench.tuning import _write

    rows = _read(folder / "curve.csv")
    higher = get_metric(settings.metric).higher_is_better
    text = ["# Epoch curve", "",
            f"{settings.metric} on a validation split ({settings.validation_fraction:.0%} of the training images; test "
            f"images never read), latent dim {settings.latent_dim}, seeds {', '.join(map(str, settings.seeds))}; "
            f"mean ± std over the seeds (n when fewer finished). One fit per model, fit and seed, scored after each "
            f"count: each value is the score of a fit of that many epochs. `*` the model's configured count; "
            f"'fit s' the seconds of fitting up to the count (mean over seeds). Written by `run_benchmarks.py epochs`.",
            ""]
    if not rows:
        _write(folder / "epochs.md", "\n".join([*text, "_No fit finished yet._", ""]))
        return ""
    df = pd.DataFrame(rows)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["fit_seconds"] = pd.to_numeric(df["fit_seconds"], errors="coerce")
    df["epochs"] = df["epochs"].astype(int)
    df["configured_epochs"] = df["configured_epochs"].astype(int)
    qualifying: dict[tuple[str, str], dict[str, set[int] | str]] = {}  # (model, fit) -> per objective
    n_seeds = len(settings.seeds)
    improving: list[str] = []  # per model and objective: the last step's same-seed change
    for objective in settings.objectives:
        part = df[df.objective == objective]
        if part.empty:
            continue
        text += [f"## `{objective}`", "", f"| model | epochs | fit s | {settings.metric} | vs configured (+ worse) |",
                 "|---|---|---|---|---|"]
        for model in [m for m in settings.models if m in set(part.model)]:
            mine = part[part.model == model]
            configured = int(mine.configured_epochs.iloc[0])
            stats = mine.groupby("epochs").agg(mean=("value", "mean"), std=("value", "std"), n=("value", "count"),
                                               seconds=("fit_seconds", "mean"))
            ref = stats.loc[configured] if configured in stats.index else None
            for e, st in stats.iterrows():
                cell = "failed" if st.n == 0 else f"{st['mean']:.5f}" + (f" ± {st['std']:.5f}" if st.n > 1 else "") + \
                    ("" if st.n == n_seeds else f" ({int(st.n)})")
                worse = None if ref is None or st.n == 0 or ref.n == 0 or e == configured else \
                    (ref["mean"] - st["mean"] if higher else st["mean"] - ref["mean"])
                text.append(f"| {model} | {e}{'*' if e == configured else ''} | "
                            f"{_seconds(st.seconds)} | {cell} | {'' if worse is None else f'{worse:+.5f}'} |")
            qualifying.setdefault((model, mine.fit.iloc[0]), {})[objective] = _qualifying(stats, configured, higher)
            improving.append(_last_step(model, objective, mine, configured, higher))
        text.append("")
    # the fit seconds of each fit (a fit's objectives share them) at each count, mean over seeds
    fit_seconds = df.groupby(["model", "fit", "epochs"]).fit_seconds.mean()
    text += ["## Fewest epochs within one seed std of the configured count", "",
             "Per model and fit (`clean`: the clean-train objectives' one fit, configured by `n_epochs`; `TASK/VARIANT`: "
             "a learn-from-corrupted fit, configured by `n_epochs_by_operator` of its operator, else `n_epochs`), the "
             "fewest scored epochs at which every objective of that fit has a mean, over as many seeds as the "
             "configured count finished, no worse than the configured count's mean by more than its seed std (per "
             "objective: the fewest such counts); and the share of the configured count's fit seconds it takes. "
             "`1 seed`: no seed std to compare with (two seeds or more needed); `failed`: the configured count has no "
             "value; `n/a`: not studied (the model lacks the operator, or the objective is another fit's). With two "
             "seeds the std rests on one difference: a loose criterion.", "",
             "| model | fit | configured | enough | " + " | ".join(f"`{o}`" for o in settings.objectives) +
             " | fit time |",
             "|---|---|---|---|" + "---|" * len(settings.objectives) + "---|"]
    for (model, fit), per in qualifying.items():
        configured = int(df[(df.model == model) & (df.fit == fit)].configured_epochs.iloc[0])
        sets = [per.get(o, "n/a") for o in settings.objectives]
        found = [q for q in sets if q != "n/a"]
        overall = None if any(isinstance(q, str) for q in found) else min(set.intersection(*found))
        share = "—"
        if overall is not None:
            try:
                share = f"{fit_seconds.loc[(model, fit, overall)] / fit_seconds.loc[(model, fit, configured)]:.0%}"
            except (KeyError, ZeroDivisionError):
                pass
        text.append(f"| {model} | {fit} | {configured} | {'—' if overall is None else overall} | " +
                    " | ".join(q if isinstance(q, str) else str(min(q)) for q in sets) + f" | {share} |")
    text += ["", "## Still improving at the configured count?", "",
             "Per model and objective, the last step: the configured count against the scored count before it, seed "
             "by seed on the same data (a paired difference, free of the spread between seeds that the table above "
             "compares with), its mean ± std over the seeds that scored both (+ worse), and in how many of them the "
             "configured count was better. Better in every seed: the model may want more epochs than it has.", "",
             "| model | objective | last step | change | better in |", "|---|---|---|---|---|", *improving]
    failures = sorted({(r["model"], r["seed"], r["fit"], r["error"]) for r in rows if r["error"]})
    if failures:
        text += ["", "## Failures", "", *[f"- {m} seed {sd}, fit `{f}`: {err}" for m, sd, f, err in failures[:20]]]
        if len(failures) > 20:
            text.append(f"- ... and {len(failures) - 20} more (curve.csv)")
    text.append("")
    out = "\n".join(text)
    _write(folder / "epochs.md", out)
    log(f"genbench epochs: wrote {folder}/ (epochs.md, curve.csv)")
    return out


def _seconds(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _last_step(model: str, objective: str, mine: Any, configured: int, higher: bool) -> str:
    """One row of the "still improving" table: configured count against the scored count before it, per seed."""
    below = sorted(e for e in mine.epochs.unique() if e < configured)
    if not below or configured not in set(mine.epochs):
        return f"| {model} | `{objective}` | — | — | — |"
    per_seed = mine.pivot_table(index="seed", columns="epochs", values="value", dropna=False)
    per_seed = per_seed.reindex(columns=[below[-1], configured]).dropna()  # a failed count has no value
    change = per_seed[below[-1]] - per_seed[configured] if higher else per_seed[configured] - per_seed[below[-1]]
    if change.empty:
        return f"| {model} | `{objective}` | {below[-1]} → {configured} | — | — |"
    spread = f" ± {change.std():.5f}" if len(change) > 1 else ""
    return (f"| {model} | `{objective}` | {below[-1]} → {configured} | {round(change.mean(), 5) + 0.0:+.5f}{spread} | "
            f"{int((change < 0).sum())}/{len(change)} |")


def _qualifying(stats: Any, configured: int, higher: bool) -> set[int] | str:
    """The counts whose mean, over as many seeds as the configured count finished, is within one seed std of the
    configured count's mean (it is always one); or why there is no std to compare with."""
    if configured not in stats.index or stats.loc[configured].n == 0:
        return "failed"
    ref = stats.loc[configured]
    if ref.n < 2 or math.isnan(ref["std"]):
        return "1 seed"
    return {int(e) for e, st in stats.iterrows() if st.n == ref.n and
            (st["mean"] >= ref["mean"] - ref["std"] if higher else st["mean"] <= ref["mean"] + ref["std"])}
