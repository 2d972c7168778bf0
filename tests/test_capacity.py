"""Equal latent_dim is not equal capacity: every fit's parameter count and code, in fits.jsonl and the report."""

from __future__ import annotations

import json

import pandas as pd

from genbench.capacity import n_parameters
from genbench.cli import main
from genbench.operators import Identity
from genbench.registry import get_model


def test_parameter_counts_match_the_models_own_tensors(tiny):
    obs = Identity().observe(tiny.train)
    abp = get_model("abp").build(latent_dim=3, **get_model("abp").cls.dry_run_overrides).fit(obs)
    assert n_parameters(abp) == sum(p.numel() for p in abp.generator_.parameters())
    rbm = get_model("rbm").build(latent_dim=3, **get_model("rbm").cls.dry_run_overrides).fit(obs)
    assert n_parameters(rbm) == 64 * 3 + 64 + 3  # W, visible and hidden biases
    pca = get_model("pca").build(latent_dim=3).fit(obs)
    assert n_parameters(pca) == 3 * 64 + 64 + 1
    assert n_parameters(get_model("zero").build().fit(obs)) == 0
    assert n_parameters(get_model("mean-image").build().fit(obs)) == 64


def test_fits_are_recorded_and_reported(tmp_path):
    assert main(["--dataset", "digits", "--models", "abp,dbn,pca,zero", "--tasks", "reconstruction", "--latent-dims",
                 "2,4", "--dry-run", "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    lines = [json.loads(t) for t in (run_dir / "fits.jsonl").read_text().splitlines()]
    assert {(r["model"], r["latent_dim"]) for r in lines} >= {("abp", 2), ("abp", 4), ("dbn", 2), ("pca", 4)}
    table = pd.read_csv(run_dir / "tables" / "capacity.csv")
    dbn = table[(table.model == "dbn") & (table.latent_dim == 2)].iloc[0]
    assert dbn.code == "binary" and dbn.code_bits == 2 and dbn.parameters > 0
    abp = table[table.model == "abp"].set_index("latent_dim")
    assert abp.loc[4, "parameters"] > abp.loc[2, "parameters"]  # a wider code, a wider first layer
    assert table[table.model == "zero"].parameters.tolist() == [0]
    assert (run_dir / "plots" / "digits__capacity__reconstruction-mae.png").is_file()
