"""genbench: compare latent generative models on one backbone and one set of tasks.

From Python (each imports torch on first use, so ``import genbench`` stays light)::

    import genbench
    df = genbench.load_results("results/20261202-101500-default")         # the tidy table, one row per metric
    model = genbench.load_model("results/RUN/checkpoints/abp__....pt")    # a fitted LatentModel, ready to use
    x_hat = genbench.reconstruct(model, images, scale="01")              # plain tensors in [0, 1] in and out
    x = genbench.sample(model, 16, scale="01")

The command line is ``python run_benchmarks.py`` (``genbench``); see the README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_results", "load_model", "reconstruct", "sample"]
_SCALES = ("01", "pm1")


def load_results(run_dir: str | Path) -> Any:
    """A run folder's ``results.csv`` as a pandas DataFrame (:func:`genbench.results.read_results`: typed
    columns, the numeric ``level`` beside ``level_name`` / ``level_unit``)."""
    from genbench.results import read_results

    path = Path(run_dir)
    return read_results(path / "results.csv" if path.is_dir() else path)


def load_model(checkpoint: str | Path, model: str | None = None, map_location: Any = "cpu") -> Any:
    """The fitted model in a checkpoint a run wrote (``<run>/checkpoints/*.pt``), loaded safely (tensors,
    numbers and strings only). ``model``: the registered name, needed only for a checkpoint written before
    genbench recorded it (the file's name starts with it)."""
    from genbench.model import safe_load
    from genbench.registry import get_model

    blob = safe_load(checkpoint, map_location)
    extra = blob.get("extra") if isinstance(blob, dict) else None
    name = model or (extra if isinstance(extra, dict) else {}).get("model")
    if not name:
        raise ValueError(f"{Path(checkpoint).name} does not say which model it holds (written by an older genbench); "
                         f"pass model=..., the registered name its file name starts with")
    return get_model(name).cls.load(checkpoint, map_location=map_location)


def _to_model(x: Any, scale: str) -> Any:
    import torch

    if scale not in _SCALES:
        raise ValueError(f"scale must be '01' (images in [0, 1]) or 'pm1' (in [-1, 1]), got {scale!r}")
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() == 3:
        x = x[None]
    low, high = (0.0, 1.0) if scale == "01" else (-1.0, 1.0)
    if x.dim() != 4 or float(x.min()) < low - 1e-4 or float(x.max()) > high + 1e-4:
        raise ValueError(f"expected images (N, C, H, W) with values in [{low:g}, {high:g}] (scale={scale!r}), "
                         f"got shape {tuple(x.shape)} with values in [{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return x * 2 - 1 if scale == "01" else x


def _from_model(x: Any, scale: str) -> Any:
    return (x + 1) / 2 if scale == "01" else x


def reconstruct(model: Any, images: Any, scale: str = "01") -> Any:
    """The model's reconstruction of fully observed ``images`` (N, C, H, W) (or one (C, H, W)) on ``scale``:
    ``"01"`` for [0, 1], ``"pm1"`` for the [-1, 1] the models use; returned on the same scale."""
    from genbench.operators import Identity

    x = _to_model(images, scale).to(getattr(model, "device_", "cpu"))
    return _from_model(model.reconstruct(Identity().observe(x)).detach().cpu(), scale)


def sample(model: Any, n: int, scale: str = "01") -> Any:
    """``n`` samples of a model that can sample, on ``scale`` (see :func:`reconstruct`)."""
    if scale not in _SCALES:
        raise ValueError(f"scale must be '01' or 'pm1', got {scale!r}")
    return _from_model(model.sample(n).detach().cpu(), scale)
