"""Use a finished run from Python: its table, and one of its fitted models on plain image tensors.

    python examples/use_a_run.py results/<run>            # any run folder that kept checkpoints
"""

from __future__ import annotations

import sys
from pathlib import Path

import genbench


def main(run_dir: str) -> None:
    df = genbench.load_results(run_dir)
    ok = df[(df.status == "ok") & (df.metric == "mae") & (df.split == "test")]
    print(ok.groupby(["model", "latent_dim", "task", "variant"], dropna=False).value.mean().head(10).to_string())

    checkpoint = sorted((Path(run_dir) / "checkpoints").glob("*.pt"))[0]
    model = genbench.load_model(checkpoint)  # a fitted LatentModel
    print(f"{checkpoint.name}: {type(model).__name__}, {model.config}")

    from genbench.data import DataConfig, load_data

    images = (load_data(DataConfig(name="digits")).test[:4] + 1) / 2  # [0, 1]; use the run's own dataset
    if tuple(images.shape[1:]) == tuple(model.image_shape_):
        x_hat = genbench.reconstruct(model, images, scale="01")
        print("reconstruction mae:", float((x_hat - images).abs().mean()))
    if model.capabilities.samples:
        print("samples:", tuple(genbench.sample(model, 8).shape))


if __name__ == "__main__":
    main(sys.argv[1])
