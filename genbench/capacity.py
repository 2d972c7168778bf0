"""Equal ``latent_dim`` is not equal capacity: what each fitted model holds, recorded per fit.

For every fit a run makes, ``fits.jsonl`` in the run folder gets one line (:func:`record`): the model, its
latent dim, seed and fit (clean, or a variant's), the number of learned numbers (``parameters``), its training curves
(``history``: :func:`curves`, drawn by the report's training-curves plot), the kind of latent code (``continuous``, ``binary``: the RBM's and DBN's top units, so ``latent_dim`` bits; ``none``:
a reference method) and the fit's seconds. The report turns them into ``tables/capacity.csv`` and a plot of
the held-out reconstruction error against the parameter count.

``parameters`` counts what the fit learned: every parameter of a model's networks (``GeneratorModel``'s
``networks``: ABP's generator; the VAE's encoder and decoder; the GAN's generator and discriminator), the
RBM/DBN layers' weights and biases, PCA's components and mean (+ its noise variance), the mean image's
pixels; a method that learns nothing has 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FITS = "fits.jsonl"


def n_parameters(model: Any) -> int:
    """The learned numbers of a fitted model (see the module docstring)."""
    import torch

    nets = getattr(model, "networks", ())
    if nets:
        seen: set[int] = set()
        total = 0
        for name in nets:
            for p in getattr(model, f"{name}_").parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
        return total
    if hasattr(model, "layers_"):  # RBM / DBN
        return sum(t.numel() for layer in model.layers_ for t in layer.state().values())
    if hasattr(model, "components_"):  # PCA
        return model.components_.numel() + model.mean_.numel() + 1
    if isinstance(getattr(model, "mean_", None), torch.Tensor):  # the mean image
        return model.mean_.numel()
    return 0


def code_kind(model: Any) -> str:
    if not model.capabilities.latent_code:
        return "none"
    return "binary" if hasattr(model, "layers_") else "continuous"


def curves(model: Any) -> dict[str, list[float]]:
    """The fit's training curves from its ``history_``, by name: one per loss component of a network model
    (per epoch), one per RBM layer (per epoch), PCA's EM relative change (per iteration); {} without one."""
    history = getattr(model, "history_", None)
    if not history:
        return {}
    name = getattr(model, "loss_name", "loss")
    if hasattr(model, "layers_"):  # RBM / DBN: one list per layer
        return {f"layer {i + 1}": [float(v) for v in c] for i, c in enumerate(history)}
    if isinstance(history[0], (list, tuple)):  # several losses per epoch (e.g. a GAN's two), named by the model
        parts = getattr(model, "loss_parts", ()) or tuple(f"{name} [{j}]" for j in range(len(history[0])))
        return {parts[j]: [float(e[j]) for e in history] for j in range(len(history[0]))}
    return {name: [float(v) for v in history]}


def record(run_dir: Path, dataset: str, key: tuple, model: Any, seconds: float) -> None:
    """Append one fit's line to ``<run_dir>/fits.jsonl`` (one write; a torn last line is skipped when read)."""
    name, config_hash, d, seed, *variant = key
    line = {"dataset": dataset, "model": name, "config_hash": config_hash, "latent_dim": d, "seed": seed,
            "fit": "/".join(variant) or "clean", "parameters": n_parameters(model), "code": code_kind(model),
            "fit_seconds": round(float(seconds), 3), "history": curves(model),
            "loss_name": getattr(model, "loss_name", "")}
    data = (json.dumps(line) + "\n").encode("utf-8")
    fd = os.open(Path(run_dir) / FITS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Every readable line of the runs' ``fits.jsonl`` (the last line per fit key wins)."""
    found: dict[tuple, dict[str, Any]] = {}
    for run_dir in run_dirs:
        path = Path(run_dir) / FITS
        if not path.is_file():
            continue
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
                found[(str(run_dir), line.get("dataset"), line["model"], line["config_hash"], line["latent_dim"], line["seed"],
                       line["fit"])] = line
            except (ValueError, KeyError, TypeError):
                continue
    return list(found.values())


def capacity_table(run_dirs: list[Path]) -> Any:
    """One row per (dataset, model, latent dim) of the clean fits: parameters (mean over seeds), code kind, code bits
    (binary codes), latent dim and the mean fit seconds; None when no run recorded a fit."""
    import pandas as pd

    every = read(run_dirs)
    clean = {r["model"] for r in every if r["fit"] == "clean"}
    lines = [r for r in every if r["fit"] == "clean" or r["model"] not in clean]  # a method that learns nothing
    if not lines:                                                                    # has per-variant fits only
        return None
    df = pd.DataFrame(lines)
    df["latent_dim"] = df["latent_dim"].astype("Int64")
    out = df.groupby(["dataset", "model", "latent_dim", "code"], sort=False, dropna=False).agg(
        parameters=("parameters", "mean"), fit_seconds=("fit_seconds", "mean"), fits=("seed", "count")).reset_index()
    out["fit_seconds"] = out["fit_seconds"].round(2)
    out["parameters"] = out["parameters"].round().astype("int64")
    out["code_bits"] = out["latent_dim"].where(out["code"] == "binary").astype("Int64")
    return out[["dataset", "model", "latent_dim", "code", "code_bits", "parameters", "fit_seconds", "fits"]]
