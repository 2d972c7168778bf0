"""The study commands of the command line (:mod:`genbench.cli` dispatches to them): ``tune`` searches every
model's declared space with one equal budget (:mod:`genbench.tuning`), ``epochs`` scores each model's
validation error along its epochs from one fit (:mod:`genbench.epochs`). Both read only the training split."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from genbench.cli import PROG, _csv_list, _Parser
from genbench.config import available_presets, resolve_config


def _shared_options(p: _Parser) -> None:
    """The options ``tune`` and ``epochs`` share (what the fits read and how they are scored)."""
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML file of config keys, applied after the preset")
    p.add_argument("--dataset", metavar="NAME", help="dataset (its training split only is read)")
    p.add_argument("--latent-dim", type=int, default=10, metavar="D", help="latent dim of the fits (default 10)")
    p.add_argument("--validation-fraction", type=float, default=0.2, metavar="F",
                   help="share of the training images held out for scoring (default 0.2)")


def cmd_tune(argv: Sequence[str]) -> int:
    from genbench.tuning import TuneSettings, models_of, resume_settings, rewrite_settings, tune

    p = _Parser(prog=f"{PROG} tune", description="Tune every model with the same budget: each searches its "
                "declared space (Optuna TPE) with the same number of trials and wall-clock seconds, fitted on "
                "part of the training images and scored on the rest (never on test images). Writes "
                "<out>/tune-<id>/ with tuned.yaml (use it with --config), tuning.md and trials.csv.")
    p.add_argument("--preset", choices=sorted(available_presets()), help="the config the search starts from "
                   "(default: default); its model settings are the defaults and the fixed fields")
    p.add_argument("--models", type=_csv_list(str), metavar="A,B", help="models to tune (default: the preset's "
                   "learned models)")
    p.add_argument("--trials", type=int, help="trials per model (default 20; trial 0 is the default config)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="wall-clock seconds per model (default 1800); no trial starts after it")
    p.add_argument("--objective", default="reconstruction", metavar="TASK[:VARIANT[:PROTOCOL]]",
                   help="what is scored, e.g. reconstruction, inpainting:block-14:learn-from-corrupted, "
                   "projection:k-100 (default: reconstruction)")
    p.add_argument("--metric", default="mae", help="the objective's metric (default mae)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the sampler and the fits (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", metavar="DIR", help="where the tuning folder is written (default: results)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set data.n_train=2000")
    p.add_argument("--resume", metavar="TUNE_DIR", help="continue a killed search: its finished trials and the "
                   "rest of each model's budget; --trials and --budget may raise them (the same for every model), "
                   "other options are not used")
    _shared_options(p)
    args = p.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.resume:
        from genbench.config import build_run_config

        tree, settings, command = resume_settings(Path(args.resume))
        raised = {k: v for k, v in (("trials", args.trials), ("budget_seconds", args.budget)) if v is not None}
        if raised:  # a longer search, still equal for every model: recorded in tune.json
            settings = dataclasses.replace(settings, **raised)
            rewrite_settings(Path(args.resume), settings)
        tune(build_run_config(tree), settings, folder=Path(args.resume), command=command, log=log)
        print((Path(args.resume) / "tuning.md").read_text(encoding="utf-8"))
        return 0
    config = resolve_config(args.preset or "default", args.config,
                            {"models": args.models, "data.name": args.dataset, "device": args.device,
                             "out": args.out}, args.overrides)
    settings = TuneSettings(models=models_of(config, args.models), trials=20 if args.trials is None else args.trials,
                            budget_seconds=1800.0 if args.budget is None else args.budget,
                            objective=args.objective, metric=args.metric, validation_fraction=args.validation_fraction,
                            latent_dim=args.latent_dim, seed=args.seed)
    folder = tune(config, settings, command=" ".join(shlex.quote(a) for a in [PROG, "tune", *argv]), log=log)
    print((folder / "tuning.md").read_text(encoding="utf-8"))
    return 0


def cmd_epochs(argv: Sequence[str]) -> int:
    from genbench.epochs import EpochSettings, epoch_curve, resume_settings
    from genbench.tuning import models_of

    p = _Parser(prog=f"{PROG} epochs", description="Does a model need its configured epochs? One fit per model, "
                "seed and objective's fit, scored on a validation split of the training images after each epoch "
                "count (each value: what a fit of that many epochs scores). Writes <out>/epochs-<id>/ with curve.csv "
                "and epochs.md. Models on the shared epoch loop only (abp, abp-gd, vae, dcgan).")
    p.add_argument("--preset", choices=sorted(available_presets()), help="the config the models come from "
                   "(default: default); its model settings are the fits' settings")
    p.add_argument("--models", type=_csv_list(str), metavar="A,B", help="models to study (default: the preset's "
                   "learned models; those without the shared epoch loop are skipped)")
    p.add_argument("--objective", action="append", metavar="TASK[:VARIANT[:PROTOCOL]]",
                   help="what is scored, as in tune; repeat for several (default: reconstruction); clean-train "
                   "objectives share one fit")
    p.add_argument("--at", type=_csv_list(int), metavar="E1,E2", help="epoch counts to score, besides each "
                   "model's configured count (default: 1/4, 1/2 and 3/4 of it)")
    p.add_argument("--seeds", type=_csv_list(int), default=[0, 1], metavar="S1,S2",
                   help="each seed its own validation split, masks and initialisation (default 0,1)")
    p.add_argument("--metric", default="mae", help="the objectives' metric (default mae)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", metavar="DIR", help="where the study's folder is written (default: results)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set data.n_train=2000")
    p.add_argument("--resume", metavar="EPOCHS_DIR", help="continue a killed study from its finished fits "
                   "(other options are not used)")
    _shared_options(p)
    args = p.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.resume:
        from genbench.config import build_run_config

        tree, settings, command = resume_settings(Path(args.resume))
        if ignored := [a.split("=")[0] for a in argv if a.startswith("--") and a.split("=")[0] != "--resume"]:
            print(f"genbench: warning: epochs --resume uses the study's own settings; ignored: {', '.join(ignored)}",
                  file=sys.stderr)
        epoch_curve(build_run_config(tree), settings, folder=Path(args.resume), command=command, log=log)
        print((Path(args.resume) / "epochs.md").read_text(encoding="utf-8"))
        return 0
    config = resolve_config(args.preset or "default", args.config,
                            {"models": args.models, "data.name": args.dataset, "device": args.device,
                             "out": args.out}, args.overrides)
    settings = EpochSettings(models=models_of(config, args.models), objectives=tuple(args.objective or
                             ["reconstruction"]), at=tuple(args.at or ()), seeds=tuple(args.seeds),
                             metric=args.metric, validation_fraction=args.validation_fraction,
                             latent_dim=args.latent_dim)
    folder = epoch_curve(config, settings, command=" ".join(shlex.quote(a) for a in [PROG, "epochs", *argv]),
                         log=log)
    print((folder / "epochs.md").read_text(encoding="utf-8"))
    return 0
