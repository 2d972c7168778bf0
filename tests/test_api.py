"""The Python API: load a run's table and a checkpoint as a model; plain image tensors in and out."""

from __future__ import annotations

import pytest
import torch

import genbench
from genbench.cli import main
from genbench.data import DataConfig, load_data
from genbench.operators import Identity


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    assert main(["--dataset", "digits", "--set", "data.n_train=100", "--set", "data.n_test=20", "--set",
                 "data.n_negative=10", "--models", "pca,vae-refine", "--tasks", "reconstruction", "--latent-dims", "3",
                 "--set", "model.vae-refine.n_epochs=2", "--out", str(out)]) == 0
    (run_dir,) = out.iterdir()
    return run_dir


def test_load_results_is_the_typed_table(run):
    df = genbench.load_results(run)
    assert set(df.model) == {"pca", "vae-refine"} and df.latent_dim.dtype == "int64"
    assert df.equals(genbench.load_results(run / "results.csv"))


def test_load_model_round_trips_a_checkpoint_to_identical_reconstructions(run):
    x = load_data(DataConfig(name="digits", n_train=100, n_test=20, n_negative=10)).test
    for checkpoint in sorted((run / "checkpoints").glob("*.pt")):
        model = genbench.load_model(checkpoint)
        assert model.is_fitted
        first = genbench.reconstruct(model, (x + 1) / 2)
        assert torch.equal(first, genbench.reconstruct(model, (x + 1) / 2))
        assert float(first.min()) >= 0 and float(first.max()) <= 1
        same = (genbench.reconstruct(model, x, scale="pm1") + 1) / 2
        assert torch.allclose(first, same, atol=1e-6)
        ours = model.reconstruct(Identity().observe(x))
        assert torch.equal(genbench.reconstruct(model, x, scale="pm1"), ours)
    vae = genbench.load_model(next((run / "checkpoints").glob("vae__*.pt")))  # vae-refine's fit is vae's
    assert type(vae).__name__ == "VAE" and genbench.sample(vae, 5).shape == (5, 1, 8, 8)


def test_bad_input_is_refused_clearly(run, tmp_path):
    model = genbench.load_model(next((run / "checkpoints").glob("pca__*.pt")))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        genbench.reconstruct(model, torch.full((1, 1, 8, 8), -0.5))
    with pytest.raises(ValueError, match="scale must be"):
        genbench.reconstruct(model, torch.zeros(1, 1, 8, 8), scale="255")
    blob = torch.load(next((run / "checkpoints").glob("pca__*.pt")), weights_only=True)
    blob["extra"].pop("model")
    old = tmp_path / "old.pt"
    torch.save(blob, old)
    with pytest.raises(ValueError, match="pass model="):
        genbench.load_model(old)
    assert type(genbench.load_model(old, model="pca")).__name__ == "PCA"


def test_the_example_runs_on_a_run(run, capsys):
    import runpy

    module = runpy.run_path(str(__import__("pathlib").Path(__file__).parents[1] / "examples" / "use_a_run.py"))
    module["main"](str(run))
    out = capsys.readouterr().out
    assert "reconstruction mae:" in out and "checkpoints" not in out.split("\n")[0]
