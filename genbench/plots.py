"""Figures of a run: image grids of recoveries, samples and latent interpolations.

The runner keeps a few images of every cell in the run folder (``images/``, small ``torch.save``
files, loaded back with ``weights_only=True``): for each cell the first :data:`N_KEEP` images
of its scored split, their observation (the operator's naive inverse: zero-filled occlusions,
``A^T y`` for projections) and the model's recovery; for each clean fit, prior samples and
linear / spherical interpolations between the inferred codes of test images (as in the ABP
paper's figures). :func:`write_grids` turns them into PNGs under ``grids/``:

- ``grids/recoveries/<task>__<variant>__<protocol>__<split>__d<d>__s<seed>.png``: rows
  "original", "observed", then one row per model, side by side;
- ``grids/samples/<model>__d<d>__s<seed>.png``: 64 prior samples;
- ``grids/interpolations/<model>__d<d>__s<seed>__<linear|spherical>.png``: one row per pair.

Example::

    >>> write_grids("results/20261123-101500")
    [PosixPath('results/20261123-101500/grids/recoveries/...png'), ...]
"""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402

#: images kept per cell, samples per fit, interpolation pairs and steps
N_KEEP = 8
N_SAMPLES = 64
N_PAIRS = 4
N_STEPS = 8
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
def recovery_path(run_dir: Path, task: str, variant: str, protocol: str, split: str, model: str,
                  latent_dim: int, seed: int) -> Path:
    name = _SEP.join([task, variant, protocol, split, model, f"d{latent_dim}", f"s{seed}"])
    return Path(run_dir) / "images" / "recoveries" / f"{name}.pt"


def samples_path(run_dir: Path, model: str, latent_dim: int, seed: int) -> Path:
    return Path(run_dir) / "images" / "samples" / f"{_SEP.join([model, f'd{latent_dim}', f's{seed}'])}.pt"


def save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    """``torch.save`` CPU copies (write to a temporary name, then rename: never a torn file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # clone: a slice of a big tensor would otherwise save the whole underlying storage
    torch.save({k: v.detach().float().cpu().clone() for k, v in tensors.items()}, tmp)
    tmp.replace(path)


# ------------------------------------------------------------------------------------------- grids
def _to01(x: Tensor) -> Tensor:
    return ((x.clamp(-1, 1) + 1) / 2).float()


def _strip(images: Tensor) -> Tensor:
    """(N, C, H, W) in [-1, 1] -> one row image (H', W', C) in [0, 1] for imshow."""
    grid = make_grid(_to01(images), nrow=len(images), padding=1, pad_value=1.0)
    return grid.permute(1, 2, 0)


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
        return torch.load(path, map_location="cpu", weights_only=True)
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


def write_grids(run_dir: str | Path) -> list[Path]:
    """Write every grid of a run folder from its ``images/`` (see the module docstring)."""
    run_dir = Path(run_dir)
    written: list[Path] = []
    order = _model_order(run_dir)
    groups: dict[tuple, dict[tuple[str, int], Path]] = defaultdict(dict)
    for path in sorted((run_dir / "images" / "recoveries").glob("*.pt")):
        parts = path.stem.split(_SEP)
        if len(parts) != 7:
            continue
        task, variant, protocol, split, model, d, seed = parts
        groups[(task, variant, protocol, split, seed)][(model, int(d[1:]))] = path
    for (task, variant, protocol, split, seed), members in groups.items():
        dims = sorted({d for _, d in members if d != 0}) or [0]
        for d in dims:  # latent-free reference methods (d=0) join every latent dim's grid
            chosen = sorted((((order.get(m, len(order)), m), dd), p) for (m, dd), p in members.items()
                            if dd in (d, 0))
            rows: list[tuple[str, Tensor]] = []
            for ((_, model), _), path in chosen:
                blob = _load(path)
                if blob is None:
                    continue
                if not rows:
                    rows = [("original", blob["x"]), ("observed", blob["observed"])]
                rows.append((model, blob["x_hat"]))
            if rows:
                name = _SEP.join([task, variant, protocol, split, f"d{d}", seed]) + ".png"
                title = f"{task} / {variant} / {protocol} / {split} (d={d}, seed {seed[1:]})"
                written.append(_labelled_rows(rows, run_dir / "grids" / "recoveries" / name, title))
    for path in sorted((run_dir / "images" / "samples").glob("*.pt")):
        blob = _load(path)
        if blob is None:
            continue
        if "samples" in blob:
            out = run_dir / "grids" / "samples" / f"{path.stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            save_image(_to01(blob["samples"]), out, nrow=int(math.sqrt(len(blob["samples"]))) or 1,
                       padding=1, pad_value=1.0)
            written.append(out)
        for kind in ("linear", "spherical"):
            if kind in blob:
                out = run_dir / "grids" / "interpolations" / f"{path.stem}{_SEP}{kind}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                save_image(_to01(blob[kind]), out, nrow=N_STEPS, padding=1, pad_value=1.0)
                written.append(out)
    return written
