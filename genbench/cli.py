"""The command line: ``python run_benchmarks.py`` (or the ``genbench`` console script).

Reads top to bottom like a training script: parse the command line -> resolve the config (preset,
file, flags, ``--set``) -> load the data -> run every cell -> write the table and the summary.
Every choice (models, tasks, datasets, presets) is read from its registry.

Commands::

    python run_benchmarks.py [options]          run a sweep (default: the quick preset on mnist5k)
    python run_benchmarks.py list               models, tasks, datasets and presets
    python run_benchmarks.py report RUN_DIR... [--out DIR]
                                                summary.md, tables, plots from results.csv alone
    python run_benchmarks.py --resume RUN_DIR   continue a killed run (finished cells are skipped)

Nothing heavy is imported before the arguments are parsed: ``--help`` and ``list`` read the built-ins'
names from :mod:`genbench.catalog` (torch is imported only to run or report, or to load plug-ins).

Exit codes: 0 all cells ok; 1 some cells failed (listed at the end); 2 bad input (one line on
stderr, nothing written); 130 interrupted (finished cells are kept).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, get_args

from genbench import catalog
from genbench import config as config_lib
from genbench import registry
from genbench.config import ConfigError, available_presets, resolve_config
from genbench.dataconfig import DataError
from genbench.registry import RegistryError, load_plugins, loaded_plugins, plugins_from_env

PROG = "run_benchmarks.py"
EXECUTORS_BUILTIN = ("local", "processes", "ray")  # genbench.executors registers these (checked in tests/test_cli_start.py)
COMMANDS = ("run", "list", "report", "tune", "epochs")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"genbench: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _csv_list(cast: type):
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return [cast(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {cast.__name__}s, "
                                             f"got {text!r}") from None
    return parse


def _workers(text: str) -> int:
    """``--workers``: a positive integer, or ``auto`` (0: one per core)."""
    if text == "auto":
        return 0
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return n


def _executor(args: argparse.Namespace) -> object:
    """The executor of ``--executor`` and ``--workers``: a name, or a process pool when workers != 1."""
    if args.workers == 1 and args.executor != "processes":
        return args.executor
    if args.executor == "ray":
        raise config_lib.ConfigError(f"--workers runs local worker processes; it cannot be combined with "
                                     f"--executor {args.executor}")
    from genbench.executors import ProcessExecutor

    return ProcessExecutor(args.workers if args.workers > 1 else None)  # --executor processes: one per core


def build_parser() -> argparse.ArgumentParser:
    models = ", ".join(catalog.entries("models", loaded_plugins()))
    tasks = ", ".join(catalog.entries("tasks", loaded_plugins()))
    datasets = ", ".join(catalog.entries("datasets", loaded_plugins()))
    presets = available_presets()
    p = _Parser(prog=PROG, description="Compare latent generative models on one backbone and one set "
                "of recovery tasks; writes results/<run_id>/{results.csv, summary.md, config.json}.",
                epilog="Commands: 'list' shows models, tasks, datasets and presets; 'report RUN_DIR... "
                "[--out DIR]' rewrites summary.md, tables/ and plots/ from results.csv; 'tune' searches every "
                "model's hyper-parameters with an equal budget (tune --help); 'epochs' scores each model's "
                "validation error along its training epochs (epochs --help). Config flows: "
                "dataclass defaults -> --preset -> --config -> flags -> --set.")
    p.add_argument("--preset", choices=sorted(presets),
                   help="preset config shipped with genbench (default: quick)")
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML file of config keys, applied after the preset")
    p.add_argument("--models", type=_csv_list(str), metavar="A,B", help=f"models to compare, from: {models}")
    p.add_argument("--tasks", type=_csv_list(str), metavar="A,B", help=f"tasks to run, from: {tasks}")
    p.add_argument("--dataset", metavar="NAME", help=f"dataset, from: {datasets}")
    p.add_argument("--data-root", metavar="DIR", help="folder holding MNIST / Fashion-MNIST / CelebA files")
    p.add_argument("--download", action="store_true", default=None,
                   help="download the dataset into --data-root when it is missing (needs a network)")
    p.add_argument("--image-size", type=int, metavar="N", help="resize images to N x N")
    p.add_argument("--latent-dims", type=_csv_list(int), metavar="D1,D2", help="latent dimensions to sweep")
    p.add_argument("--seeds", type=_csv_list(int), metavar="S1,S2", help="seeds to sweep")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="auto picks CUDA when present (default)")
    p.add_argument("--out", metavar="DIR", help="where run folders are written (default: results)")
    p.add_argument("--dry-run", action="store_true", default=None,
                   help="run every cell for one step on a few images, with the likelihood and samples tasks' "
                   "steps and sample counts capped (a smoke test)")
    p.add_argument("--amp", action="store_true", default=None,
                   help="bf16 autocast of the generator-based models' forward passes in fit and inference "
                   "(CUDA only; a no-op on CPU)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the shared Generator and ConvTrunks (compilation costs time up front)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set model.abp.n_epochs=5 --set data.n_train=500")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a killed or failed run: skip its finished cells, load its checkpoints, re-run "
                   "failed and unfinished cells (config options, if given, must match its config.json; --device and "
                   "--executor may change; --out is not used)")
    p.add_argument("--executor", choices=tuple(EXECUTORS_BUILTIN), default="local",
                   help="local (default): cells in this process; processes: fit groups in local worker processes (see "
                   "--workers); ray: one Ray task per fitted model "
                   "(pip install 'genbench[distributed]'; RAY_ADDRESS selects a cluster)")
    p.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                   help="run independent fits in N local worker processes side by side (cores // N torch threads "
                   "each; auto: one per core); rows are still written by this process (default: 1, in-process)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                   help="import a file or module that registers models (@register_model) before the names "
                   "are read; repeatable, also with 'list'; GENBENCH_PLUGINS=a.py,pkg.mod does the same "
                   "(docs/adding_a_model.md)")
    p.add_argument("--cell-timeout", type=float, metavar="SECONDS", default=None,
                   help="wall-time limit per cell: a cell past it is a failed row and the sweep goes on "
                   "(local executor; default: none)")
    p.add_argument("--stack", type=int, metavar="M", default=None,
                   help="fit up to M fits of one model config (its seeds and learn-from-corrupted variants) at once "
                   "as one stacked ensemble, for models that can (abp, abp-gd); equal to separate fits up to float "
                   "rounding; meant for a GPU (on a CPU it is slower); may change on --resume (default: 1)")
    p.add_argument("--conv-path", choices=get_args(config_lib.ConvPath), default=None,
                   help="the generator's output layer on the CPU: im2col (PyTorch's own kernel, default: up to 1.3x "
                   "faster fits and 1.4x faster inference steps on 28x28 images than oneDNN) or native (oneDNN); float "
                   "rounding only; no effect on CUDA; a run keeps its path on --resume, and one saved before the "
                   "setting existed resumes on native)")
    p.add_argument("--fits-from", metavar="RUN_DIR", help="use another run's checkpoints as this run's fits where they "
                   "match (same data and task settings, same fit fields): re-score a finished run with other "
                   "inference settings (e.g. --set model.abp.infer_steps=300) or tasks without fitting again")
    p.add_argument("--trust-plugins", action="store_true",
                   help="with --resume: import the plug-ins the run's config.json names (by default they must be "
                   "given again with --plugin: a run folder someone sent you must not run code)")
    return p


def _flags(args: argparse.Namespace) -> dict:
    return {"models": args.models, "tasks": args.tasks, "data.name": args.dataset,
            "data.root": args.data_root, "data.download": args.download, "data.image_size": args.image_size,
            "latent_dims": args.latent_dims, "seeds": args.seeds, "device": args.device, "out": args.out,
            "dry_run": args.dry_run, "amp": args.amp, "compile": args.compile, "cell_timeout": args.cell_timeout,
            "stack": args.stack, "conv_path": args.conv_path, "fits_from": args.fits_from}


def cmd_run(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)  # --help and usage errors end here, before any heavy import
    if not args.resume:
        return _cmd_run(args, argv)
    from genbench.rundir import read_run_config
    from genbench.runlock import RunLock

    read_run_config(args.resume)  # not a run folder: that error first
    with RunLock(args.resume, "resume"):  # a second writer is refused before anything is printed or read
        return _cmd_run(args, argv)


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from genbench.runner import Runner  # torch-heavy: only when running

    if args.resume:
        runner = _resume(args)
        config = runner.config
    else:
        preset = args.preset or "quick"
        config = resolve_config(preset, args.config, _flags(args), args.overrides)
        meta = {"preset": preset, "command": " ".join(shlex.quote(a) for a in [PROG, *argv]),
                "plugins": loaded_plugins()}
        runner = Runner(config, run_id=time.strftime("%Y%m%d-%H%M%S") + f"-{preset}", meta=meta,
                        executor=_executor(args))
    runner.prepare()  # data and variants: bad input fails here, before anything is written
    if args.resume:
        runner.finished_cells()  # rows of another config: refused here, before the header
    n_cells = len(runner.cells())
    print(f"genbench: {n_cells} cells on {config.data.name} ({runner.device}): models "
          f"{', '.join(config.models)}; tasks {', '.join(config.tasks)}; latent dims "
          f"{', '.join(map(str, config.latent_dims))}; seeds {', '.join(map(str, config.seeds))}",
          file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops as cleanly as Ctrl-C
    try:
        summary = runner.run()
    except KeyboardInterrupt as stop:
        where = getattr(runner, "run_dir", config.out)
        how = "terminated (SIGTERM)" if isinstance(stop, _Terminated) else "interrupted"
        print(f"genbench: {how}; the finished cells are in {where}/results.csv", file=sys.stderr)
        return 143 if isinstance(stop, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if (summary.run_dir / "summary.md").exists():  # the report may have failed (a warning says why)
        print((summary.run_dir / "summary.md").read_text(encoding="utf-8"))
    minutes, seconds = divmod(summary.seconds, 60)
    n_unsupported = summary.n_cells - summary.n_skipped - summary.n_ok - len(summary.failed)
    status = (f"{summary.n_cells} cells ({summary.n_ok} ok, {len(summary.failed)} failed, {n_unsupported} "
              f"unsupported" + (f", {summary.n_skipped} finished before --resume)" if summary.n_skipped else ")"))
    for label, message in summary.failed:
        print(f"genbench: FAILED {label}: {message}", file=sys.stderr)
    print(f"genbench: {status} in {int(minutes)}m{seconds:04.1f}s; results in {summary.run_dir}/ "
          f"(results.csv, summary.md, config.json)", file=sys.stderr)
    return 1 if summary.failed else 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the sweep is, so that it stops like Ctrl-C: the finished cells are on disk."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def _run_plugins(recorded: list, run_dir: str, trust: bool) -> None:
    """The plug-ins a run was made with: code named in a run folder is never imported on its say-so. Each
    must be loaded already (``--plugin`` again, or ``GENBENCH_PLUGINS``), or ``--trust-plugins`` imports it."""
    if not isinstance(recorded, list) or not all(isinstance(p, str) for p in recorded):
        raise ConfigError(f"--resume {run_dir}: config.json's 'plugins' must be a list of names, got {recorded!r}")
    missing = [p for p in recorded if p not in set(loaded_plugins())]
    if missing and not trust:
        raise ConfigError(f"--resume {run_dir}: the run was made with plug-in(s) {', '.join(missing)}; --resume "
                          f"does not import code named in a run folder: pass --plugin again for each one you "
                          f"trust (or --trust-plugins)")
    load_plugins(missing)


def _resume(args: argparse.Namespace):
    """The runner of ``--resume RUN_DIR``: the run's own config, checked against any config options."""
    from genbench.rundir import read_run_config
    from genbench.runner import Runner

    blob = read_run_config(args.resume)
    _run_plugins(blob.get("plugins") or [], args.resume, args.trust_plugins)
    given = None
    flags = {k: v for k, v in _flags(args).items() if v is not None and k != "out"}
    if args.preset or args.config or flags or args.overrides:  # applied on top of the run's own config
        tree = config_lib.load_preset(args.preset) if args.preset else dict(blob["config"])
        if args.config:
            tree = config_lib.merge(tree, config_lib.load_config_file(args.config))
        for key, value in flags.items():
            config_lib.set_path(tree, key.split("."), value)
        for text in args.overrides:
            config_lib.set_path(tree, *config_lib.parse_override(text))
        given = config_lib.build_run_config(tree)
    return Runner.resume(args.resume, config=given, executor=_executor(args))


def cmd_list(argv: Sequence[str]) -> int:
    if argv:
        raise ConfigError(f"'list' takes no arguments, got {' '.join(argv)}")
    plugins = loaded_plugins()
    sections = {
        "models": catalog.entries("models", plugins),
        "tasks": catalog.entries("tasks", plugins),
        "datasets": catalog.entries("datasets", plugins),
        "presets": available_presets(),
    }
    for title, entries in sections.items():
        print(f"{title}:")
        width = max(map(len, entries), default=0)
        for name, text in entries.items():
            print(f"  {name:<{width}}  {text}")
    return 0


def cmd_report(argv: Sequence[str]) -> int:
    from genbench.report import ReportInputError, write_report  # matplotlib: only when reporting

    p = _Parser(prog=f"{PROG} report", description="Regenerate summary.md, tables/ (CSV) and plots/ (PNG, PDF) "
                "from results.csv. One run: into its folder, with its image grids. Several runs: pooled over "
                "seeds per dataset, into --out.")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folders holding results.csv")
    p.add_argument("--out", metavar="DIR", help="report folder (default: the run folder for one run, "
                   "report-<timestamp> beside the first run folder for several)")
    args = p.parse_args(argv)
    if not args.run_dirs:
        raise ConfigError("'report' needs one or more run folders: report RUN_DIR [RUN_DIR ...] [--out DIR]")
    try:
        out = write_report([Path(d) for d in args.run_dirs], args.out and Path(args.out),
                           log=lambda line: print(f"{PROG}: {line}", file=sys.stderr))
    except ReportInputError as err:
        raise ConfigError(str(err)) from None
    print((out / "summary.md").read_text(encoding="utf-8"))
    print(f"genbench: wrote the report in {out}/ (summary.md, tables/, plots/)", file=sys.stderr)
    return 0


EXIT_IO = 74  # sysexits.h EX_IOERR: the run could not write its files


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``run_benchmarks.py`` and the ``genbench`` script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # one line per warning (e.g. a corrupt image skipped), not Python's two with the source line
    warnings.formatwarning = lambda message, category, filename, lineno, line=None: \
        f"genbench: warning: {message}\n"
    try:
        # plug-ins first, so that --help, 'list' and the name checks see their models
        pre = _Parser(prog=PROG, add_help=False)
        pre.add_argument("--plugin", action="append", default=[])
        known, rest = pre.parse_known_args(argv)
        command = rest[0] if rest and rest[0] in COMMANDS else "run"
        # GENBENCH_PLUGINS is for sweeps; 'list' and 'report' import only what --plugin names
        registry.use_env_plugins(command == "run")
        load_plugins([*(plugins_from_env() if command == "run" else ()), *known.plugin])
        if rest[:1] == [command]:
            argv.remove(command)
            rest.pop(0)
        commands = {"run": cmd_run, "list": cmd_list, "report": cmd_report}
        if command in ("tune", "epochs"):  # the study commands: genbench/cli_studies.py
            from genbench.cli_studies import cmd_epochs, cmd_tune
            commands.update(tune=cmd_tune, epochs=cmd_epochs)
        return commands[command](
            argv if command == "run" else rest)  # run keeps --plugin (its parser knows it) in the recorded command
    except (ConfigError, RegistryError, DataError) as err:
        print(f"genbench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a folder that became unwritable: what finished is on disk, untorn
        where = f" ({err.filename})" if err.filename else ""
        print(f"genbench: error: cannot write{where}: {err.strerror or err}; the finished cells are saved: free "
              f"space (or fix the folder) and --resume the run", file=sys.stderr)
        return EXIT_IO
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, already reported)
        return int(exit_.code or 0)
