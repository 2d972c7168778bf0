"""Figures of a run: image grids of recoveries, samples and latent interpolations.

The runner keeps a few images of every cell in the run folder (``images/``, small ``torch.save``
files, loaded back with ``weights_only=True``): for each cell the first :data:`N_KEEP` images
of its scored split, their observation (the operator's naive inverse: zero-filled occlusions,
``A^T y`` for projections) and the model's recovery; for each clean fit, prior samples and
linear / spherical interpolations between the inferred codes of test images (as in the ABP
paper's figures). :func:`write_grids` turns them into PNGs under ``grids/``:

- ``grids/recoveries/<task>__<variant>__<protocol>__<split>__d<d>__s<seed>.png``: rows
  "original", "observed" (occluded pixels in :data:`OCCLUDED_COLOUR`), then one row per model, side
  by side (a method without a latent code joins the grid of every latent dim); the test split, and
  for learn-from-corrupted cells also the training split (the images the model learned from, the
  ABP paper's table);
- ``grids/samples/<model>__d<d>__s<seed>.png``: 64 prior samples;
- ``grids/samples-side-by-side/d<d>__s<seed>.png``: every model's first :data:`N_SIDE` samples, one labelled
  row per model, in the order of the run's config;
- ``grids/interpolations/<model>__d<d>__s<seed>__<linear|spherical>.png``: one row per pair.

Which file holds what is recorded in ``images/manifest.jsonl`` (one JSON object per kept file:
``kind``, ``file`` and the cell's keys), which :func:`keep_images` appends and :func:`write_grids`
reads; file names are written, never parsed back.

Example::

    >>> write_grids("results/20261123-101500")
    [PosixPath('results/20261123-101500/grids/recoveries/...png'), ...]
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402

from genbench.fsutil import atomic_write  # noqa: E402
from genbench.model import safe_load  # noqa: E402

#: images kept per cell, samples per fit, interpolation pairs and steps
N_KEEP = 8
N_SAMPLES = 64
N_PAIRS = 4
N_STEPS = 8
N_SIDE = 16
_SEP = "__"


def interpolate(z0: Tensor, z1: Tensor, steps: int = N_STEPS, kind: str = "linear") -> Tensor:
    """Codes on the path from each ``z0[i]`` to ``z1[i]``: shape (N * steps, d), row-major by pair.

    ``linear``: (1 - t) z0 + t z1. ``spherical`` (slerp): along the great circle, with the norm
    interpolated linearly; nearly parallel codes fall back to linear.
    """
    if kind not in ("linear", "spherical"):
        raise ValueError(f"kind must be 'linear' or 'spherical', got {kind!r}")
    t = torch.linspace(0, 1, steps, device=z0.device, dtype=z0.dtype).view(1, steps, 1)
    a, b = z0.unsqueeze(1), z1.unsqueeze(1)
    if kind == "linear":
        return ((1 - t) * a + t * b).reshape(-1, z0.shape[1])
    na, nb = a.norm(dim=2, keepdim=True).clamp_min(1e-12), b.norm(dim=2, keepdim=True).clamp_min(1e-12)
    cos = ((a / na) * (b / nb)).sum(2, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) * a / na + torch.sin(t * omega) * b / nb) / so
    path = direction * ((1 - t) * na + t * nb)
    flat = (cos.abs() > 1 - 1e-5).expand_as(path[..., :1])
    path = torch.where(flat, (1 - t) * a + t * b, path)
    return path.reshape(-1, z0.shape[1])


# ----------------------------------------------------------------------------------- keeping images
MANIFEST = "manifest.jsonl"


def keep_images(run_dir: Path, kind: str, tensors: dict[str, Tensor], **keys: object) -> Path:
    """Save ``tensors`` for the grids and record them in the manifest: ``kind`` is ``recoveries``
    (keys task, variant, protocol, split, model, latent_dim, seed) or ``samples`` (model, latent_dim,
    seed). Returns the tensor file."""
    parts = [str(v) if v is not None else "-" for v in keys.values()]
    name = _SEP.join(re.sub(r"[^A-Za-z0-9_.-]+", "-", p) for p in parts) + ".pt"
    path = Path(run_dir) / "images" / kind / name
    save_tensors(path, tensors)
    record = {"kind": kind, "file": str(path.relative_to(run_dir)), **keys}
    with (Path(run_dir) / "images" / MANIFEST).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")  # one short line per append: never interleaved
    return path


def keep_recoveries(run_dir: Path, obs, x: Tensor, x_hat: Tensor, **keys: object) -> Path:
    """Keep the first :data:`N_KEEP` images of a scored split: the clean images, their observation
    (the operator's naive inverse) and the recovery."""
    n = min(N_KEEP, len(x))
    kept = {"x": x[:n], "observed": obs[:n].naive_inverse(), "x_hat": x_hat[:n]}
    if obs.occluded() is not None:
        kept["occluded"] = obs[:n].occluded()  # the grid paints these in OCCLUDED_COLOUR
    return keep_images(run_dir, "recoveries", kept, **keys)


def keep_samples(run_dir: Path, fitted, x_test: Tensor, identity, **keys: object) -> Path:
    """Keep :data:`N_SAMPLES` prior samples (if the model samples) and linear / spherical interpolations
    between the codes inferred for pairs of test images (observed through ``identity``). The caller seeds."""
    kept: dict[str, Tensor] = {}
    if fitted.capabilities.samples:
        kept["samples"] = fitted.sample(N_SAMPLES)
    x = x_test[: 2 * N_PAIRS]
    if len(x) >= 2:
        z = fitted.infer(identity.observe(x))
        for kind in ("linear", "spherical"):
            path = interpolate(z[0::2][: len(z) // 2], z[1::2], kind=kind)
            kept[kind] = fitted.decode(path).clamp(-1, 1)
    return keep_images(run_dir, "samples", kept, **keys)


def _manifest(run_dir: Path, kind: str) -> list[dict]:
    """The manifest's records of ``kind``, the last record per file winning; unreadable lines skipped."""
    path = run_dir / "images" / MANIFEST
    if not path.exists():
        return []
    records: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if isinstance(record, dict) and record.get("kind") == kind and (run_dir / str(record.get("file"))).is_file():
            records[record["file"]] = record
    return list(records.values())


def save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    """``torch.save`` CPU copies (write to a temporary name, then rename: never a torn file)."""
    # clone: a slice of a big tensor would otherwise save the whole underlying storage
    blob = {k: v.detach().float().cpu().clone() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: torch.save(blob, tmp))


# ------------------------------------------------------------------------------------------- grids
def _to01(x: Tensor) -> Tensor:
    return ((x.clamp(-1, 1) + 1) / 2).float()


#: the colour of occluded pixels in the "observed" row of a recovery grid: no grey-scale pixel has it,
#: and a natural image rarely does (pure magenta)
OCCLUDED_COLOUR = (1.0, 0.0, 1.0)


def _strip(images: Tensor) -> Tensor:
    """(N, C, H, W) in [-1, 1] -> one row image (H', W', C) in [0, 1] for imshow."""
    grid = make_grid(_to01(images), nrow=len(images), padding=1, pad_value=1.0)
    return grid.permute(1, 2, 0)


def paint_occluded(images: Tensor, occluded: Tensor) -> Tensor:
    """``images`` (N, C, H, W) in [-1, 1] as RGB with the ``occluded`` (N, 1, H, W) pixels in
    :data:`OCCLUDED_COLOUR` (in [-1, 1] too), so a zero-filled hole is not mistaken for grey data."""
    rgb = images.expand(-1, 3, -1, -1).clone() if images.shape[1] == 1 else images.clone()
    colour = torch.tensor(OCCLUDED_COLOUR, dtype=rgb.dtype).view(1, 3, 1, 1) * 2 - 1
    hole = occluded.bool().expand_as(rgb)
    return torch.where(hole, colour.expand_as(rgb), rgb)


def _labelled_rows(rows: list[tuple[str, Tensor]], path: Path, title: str) -> Path:
    width = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.0 + 0.6 * width, 0.75 * len(rows) + 0.5),
                             squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows):
        ax.imshow(_strip(images).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _load(path: Path) -> dict[str, Tensor] | None:
    try:
        return safe_load(path)
    except Exception as err:  # noqa: BLE001 -- one unreadable file must not stop the others
        warnings.warn(f"skipping unreadable image file {path}: {err}", stacklevel=2)
        return None


def _model_order(run_dir: Path) -> dict[str, int]:
    """Models in the order the run's config lists them (alphabetical when it cannot be read)."""
    try:
        models = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["config"]["models"]
        return {m: i for i, m in enumerate(models)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _dim(d: object) -> str:
    return "d-" if d is None else f"d{d}"


def write_grids(run_dir: str | Path) -> list[Path]:
    """Write every grid of a run folder from the images its manifest lists (see the module docstring)."""
    run_dir = Path(run_dir)
    written: list[Path] = []
    order = _model_order(run_dir)
    groups: dict[tuple, dict[tuple[str, int | None], Path]] = defaultdict(dict)
    for r in _manifest(run_dir, "recoveries"):
        key = (r["task"], r["variant"], r["protocol"], r["split"], r["seed"])
        groups[key][(r["model"], r["latent_dim"])] = run_dir / r["file"]
    for (task, variant, protocol, split, seed), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        dims = sorted({d for _, d in members if d is not None}) or [None]
        for d in dims:  # methods without a latent code join every latent dim's grid
            chosen = sorted(((order.get(m, len(order)), m), p) for (m, dd), p in members.items()
                            if dd in (d, None))
            rows: list[tuple[str, Tensor]] = []
            for (_, model), path in chosen:
                blob = _load(path)
                if blob is None:
                    continue
                if not rows:
                    observed = blob["observed"] if "occluded" not in blob else \
                        paint_occluded(blob["observed"], blob["occluded"])
                    rows = [("original", blob["x"]), ("observed", observed)]
                rows.append((model, blob["x_hat"]))
            if rows:
                name = _SEP.join([task, variant, protocol, split, _dim(d), f"s{seed}"]) + ".png"
                title = f"{task} / {variant} / {protocol} / {split} ({'' if d is None else f'd={d}, '}seed {seed})"
                written.append(_labelled_rows(rows, run_dir / "grids" / "recoveries" / name, title))
    side: dict[tuple, list[tuple[tuple, str, Tensor]]] = defaultdict(list)
    for r in sorted(_manifest(run_dir, "samples"), key=lambda r: r["file"]):
        blob = _load(run_dir / r["file"])
        if blob is None:
            continue
        stem = _SEP.join([r["model"], _dim(r["latent_dim"]), f"s{r['seed']}"])
        if "samples" in blob:
            side[r["latent_dim"], r["seed"]].append(((order.get(r["model"], len(order)), r["model"]), r["model"],
                                                    blob["samples"][:N_SIDE]))
            out = run_dir / "grids" / "samples" / f"{stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            save_image(_to01(blob["samples"]), out, nrow=int(math.sqrt(len(blob["samples"]))) or 1,
                       padding=1, pad_value=1.0)
            written.append(out)
        for kind in ("linear", "spherical"):
            if kind in blob:
                out = run_dir / "grids" / "interpolations" / f"{stem}{_SEP}{kind}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                save_image(_to01(blob[kind]), out, nrow=N_STEPS, padding=1, pad_value=1.0)
                written.append(out)
    for (d, seed), members in sorted(side.items(), key=lambda kv: str(kv[0])):
        rows = [(model, images) for _, model, images in sorted(members, key=lambda m: m[0])]
        name = f"{_dim(d)}{_SEP}s{seed}.png"
        title = f"prior samples, every model ({'' if d is None else f'd={d}, '}seed {seed})"
        written.append(_labelled_rows(rows, run_dir / "grids" / "samples-side-by-side" / name, title))
    return written
