"""Which runs a report may pool: replicates only.

A report pools the rows of several runs of one dataset into mean ± std over seeds. That is right only when
the runs differ in nothing but their seeds: the same data as *used* (``config.json``'s ``data_effective``),
the same settings of every model and task the two runs share, the same images scored (``n_eval``), both
real or both dry runs. :func:`check_replicates` compares the runs' ``config.json`` files pairwise and refuses
(:class:`NotReplicates`, one line naming the settings that differ) when they are not; what only selects
cells (``models``, ``tasks``, ``latent_dims``, ``seeds``) or where they ran (``out``, ``device``,
``checkpoints``, ``cell_timeout``, ``stack``, ``conv_path``: float rounding only; ``fits_from``: where the
same fits were read from) may differ. A run folder without a readable ``config.json`` (made by hand, or by a
genbench before config.json existed) is not checked.

A dry run (``--dry-run``: one epoch, 16 images) is a smoke test, not a result: :func:`dry_runs` names them,
and the report marks their tables and ranks nothing in them (no "best").

Example::

    >>> check_replicates([Path("results/run-seed0"), Path("results/run-seed1")])   # or NotReplicates
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: top-level config keys that select cells or say where they ran, not what a cell computes
SELECTING = ("models", "tasks", "latent_dims", "seeds", "out", "device", "checkpoints", "cell_timeout", "stack",
             "conv_path", "fits_from")


class NotReplicates(ValueError):
    """Two runs of one dataset that differ in more than their seeds."""


def run_settings(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``config.json`` (``config`` plus ``data_effective``), or None when it cannot be read."""
    try:
        blob = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(blob, dict) or not isinstance(blob.get("config"), dict):
        return None
    data = dict(blob.get("data_effective") or blob["config"].get("data") or {})
    data.setdefault("vary_split", False)  # a run from before the field: one split for every seed
    if isinstance(blob.get("data_used"), dict):  # what the loader actually gave (a folder may hold fewer)
        data["used"] = {k: v for k, v in blob["data_used"].items() if k != "split_seeds"}  # split_seeds: per seed
    return {"config": blob["config"], "data": data}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": value}`` (also :func:`genbench.rundir.config_differences`)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): tree}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``key: A vs B`` for every setting two runs' :func:`run_settings` disagree on (see the module)."""
    ca, cb = a["config"], b["config"]
    shared = {"model": set(ca.get("models") or ()) & set(cb.get("models") or ()),
              "task": set(ca.get("tasks") or ()) & set(cb.get("tasks") or ())}
    fa, fb = flatten({**ca, "data": a["data"]}), flatten({**cb, "data": b["data"]})
    out = []
    first = ("dry_run", "n_eval")  # the most telling differences lead the message
    for key in sorted(set(fa) | set(fb), key=lambda k: (k not in first, k.startswith("data.used."), k)):
        head, *rest = key.split(".")
        if head in SELECTING:
            continue
        if head in shared and (not rest or rest[0] not in shared[head]):
            continue  # a model or task only one of the runs has: its settings decide nothing shared
        if fa.get(key) != fb.get(key):
            out.append(f"{key}: {fa.get(key, '(default)')!r} vs {fb.get(key, '(default)')!r}")
    return out


def check_replicates(run_dirs: Sequence[Path]) -> None:
    """Raise :class:`NotReplicates` when two runs of one dataset differ in more than their seeds."""
    settings = [(d, run_settings(d)) for d in run_dirs]
    known = [(d, s) for d, s in settings if s is not None]
    for i, (da, sa) in enumerate(known):
        for db, sb in known[i + 1:]:
            if sa["data"].get("name") != sb["data"].get("name"):
                continue  # different datasets are reported apart anyway
            diff = differences(sa, sb)
            if diff:
                shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
                raise NotReplicates(f"{da} and {db} are not replicates of one experiment ({shown}); a report "
                                    f"pools runs over seeds only when nothing else differs: report them one by one")


def dry_runs(run_dirs: Sequence[Path]) -> list[Path]:
    """The run folders whose ``config.json`` says ``dry_run``."""
    out = []
    for d in run_dirs:
        s = run_settings(d)
        if s is not None and s["config"].get("dry_run"):
            out.append(d)
    return out


def split_varies(run_dir: Path) -> bool:
    """Whether the run drew its train/test split per seed (``data.vary_split``): its seeds then scored
    different images (genbench.uncertainty's intervals over seeds depend on it)."""
    s = run_settings(run_dir)
    return bool(s is not None and s["data"].get("vary_split"))
