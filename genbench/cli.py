"""The command line: ``python run_benchmarks.py`` (or the ``genbench`` console script).

Reads top to bottom like a training script: parse the command line -> resolve the config (preset,
file, flags, ``--set``) -> load the data -> run every cell -> write the table and the summary.
Every choice (models, tasks, datasets, presets) is read from its registry.

Commands::

    python run_benchmarks.py [options]          run a sweep (default: the quick preset on mnist5k)
    python run_benchmarks.py list               models, tasks, datasets and presets
    python run_benchmarks.py report RUN_DIR...  rewrite summary.md from each run's results.csv

Exit codes: 0 all cells ok; 1 some cells failed (listed at the end); 2 bad input (one line on
stderr, nothing written); 130 interrupted (finished cells are kept).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from genbench.config import ConfigError, available_presets, resolve_config
from genbench.data import DataError, list_datasets
from genbench.registry import RegistryError, available_models, available_tasks
from genbench.results import read_results, write_summary

PROG = "run_benchmarks.py"
COMMANDS = ("run", "list", "report")


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


def build_parser() -> argparse.ArgumentParser:
    models = ", ".join(sorted(available_models()))
    tasks = ", ".join(sorted(available_tasks()))
    datasets = ", ".join(list_datasets())
    presets = available_presets()
    p = _Parser(prog=PROG, description="Compare latent generative models on one backbone and one set "
                "of recovery tasks; writes results/<run_id>/{results.csv, summary.md, config.json}.",
                epilog="Commands: 'list' shows models, tasks, datasets and presets; 'report RUN_DIR...' "
                "rewrites summary.md from results.csv. Config flows: dataclass defaults -> --preset -> "
                "--config -> flags -> --set.")
    p.add_argument("--preset", default="quick", choices=sorted(presets),
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
                   help="run every cell for one step on a few images (a smoke test)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set model.abp.n_epochs=5 --set data.n_train=500")
    return p


def _flags(args: argparse.Namespace) -> dict:
    return {"models": args.models, "tasks": args.tasks, "data.name": args.dataset,
            "data.root": args.data_root, "data.download": args.download, "data.image_size": args.image_size,
            "latent_dims": args.latent_dims, "seeds": args.seeds, "device": args.device, "out": args.out,
            "dry_run": args.dry_run}


def cmd_run(argv: Sequence[str]) -> int:
    from genbench.runner import Runner  # torch-heavy: only when running

    args = build_parser().parse_args(argv)
    config = resolve_config(args.preset, args.config, _flags(args), args.overrides)
    meta = {"preset": args.preset, "command": " ".join(shlex.quote(a) for a in [PROG, *argv])}
    runner = Runner(config, run_id=time.strftime("%Y%m%d-%H%M%S") + f"-{args.preset}", meta=meta)
    runner.prepare()  # data and variants: bad input fails here, before anything is written
    n_cells = len(runner.cells())
    print(f"genbench: {n_cells} cells on {config.data.name} ({runner.device}): models "
          f"{', '.join(config.models)}; tasks {', '.join(config.tasks)}; latent dims "
          f"{', '.join(map(str, config.latent_dims))}; seeds {', '.join(map(str, config.seeds))}",
          file=sys.stderr)
    try:
        summary = runner.run()
    except KeyboardInterrupt:
        where = getattr(runner, "run_dir", config.out)
        print(f"genbench: interrupted; the finished cells are in {where}/results.csv", file=sys.stderr)
        return 130
    print((summary.run_dir / "summary.md").read_text(encoding="utf-8"))
    minutes, seconds = divmod(summary.seconds, 60)
    status = (f"{summary.n_cells} cells ({summary.n_ok} ok, {len(summary.failed)} failed, "
              f"{summary.n_cells - summary.n_ok - len(summary.failed)} unsupported)")
    for label, message in summary.failed:
        print(f"genbench: FAILED {label}: {message}", file=sys.stderr)
    print(f"genbench: {status} in {int(minutes)}m{seconds:04.1f}s; results in {summary.run_dir}/ "
          f"(results.csv, summary.md, config.json)", file=sys.stderr)
    return 1 if summary.failed else 0


def cmd_list(argv: Sequence[str]) -> int:
    if argv:
        raise ConfigError(f"'list' takes no arguments, got {' '.join(argv)}")
    sections = {
        "models": {n: s.description for n, s in sorted(available_models().items())},
        "tasks": {n: _task_line(cls) for n, cls in sorted(available_tasks().items())},
        "datasets": list_datasets(),
        "presets": available_presets(),
    }
    for title, entries in sections.items():
        print(f"{title}:")
        width = max(map(len, entries), default=0)
        for name, text in entries.items():
            print(f"  {name:<{width}}  {text}")
    return 0


def _task_line(cls: type) -> str:
    """A task's first doc line and its default variants on 28x28 digits."""
    text = (cls.__doc__ or "").strip().splitlines()[0]
    try:
        names = [v.name for v in cls().variants((1, 28, 28))]
    except ValueError:
        return text
    return f"{text} Variants on 28x28: {', '.join(names)}."


def cmd_report(argv: Sequence[str]) -> int:
    if not argv:
        raise ConfigError("'report' needs one or more run folders: report RUN_DIR [RUN_DIR ...]")
    for folder in argv:
        path = Path(folder) / "results.csv"
        if not path.is_file():
            raise ConfigError(f"{folder} is not a genbench run folder (no results.csv in it)")
        try:
            df = read_results(path)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        out = write_summary(df, Path(folder) / "summary.md")
        print(out.read_text(encoding="utf-8"))
        print(f"genbench: wrote {out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``run_benchmarks.py`` and the ``genbench`` script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    try:
        return {"run": cmd_run, "list": cmd_list, "report": cmd_report}[command](argv)
    except (ConfigError, RegistryError, DataError) as err:
        print(f"genbench: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, already reported)
        return int(exit_.code or 0)
