"""A report pools replicates only: runs that differ in more than their seeds are refused; dry runs rank nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from genbench.cli import main
from genbench.report import ReportInputError, write_report

BASE = ["--dataset", "digits", "--set", "data.n_train=100", "--set", "data.n_test=30", "--set", "data.n_negative=10",
        "--tasks", "reconstruction", "--latent-dims", "3"]


def _run(out, *args):
    assert main([*BASE, "--out", str(out), *args]) == 0
    (run_dir,) = out.iterdir()
    return run_dir


def test_runs_that_differ_in_more_than_seeds_are_refused_with_the_settings(tmp_path):
    a = _run(tmp_path / "a", "--models", "pca", "--seeds", "0")
    b = _run(tmp_path / "b", "--models", "pca", "--seeds", "1", "--set", "data.n_train=80")
    with pytest.raises(ReportInputError, match=r"not replicates.*data\.n_train: 100 vs 80"):
        write_report([a, b], tmp_path / "rep")
    assert not (tmp_path / "rep").exists()  # refused before anything is written
    dry = _run(tmp_path / "dry", "--models", "pca", "--seeds", "2", "--dry-run")
    with pytest.raises(ReportInputError, match=r"dry_run: False vs True"):
        write_report([a, dry], tmp_path / "rep")


def test_replicates_pool_and_settings_of_a_model_only_one_run_has_do_not_matter(tmp_path, capsys):
    a = _run(tmp_path / "a", "--models", "pca", "--seeds", "0")
    b = _run(tmp_path / "b", "--models", "pca,zero", "--seeds", "1", "--set", "model.abp.n_epochs=3")
    out = write_report([a, b], tmp_path / "rep")
    agg = pd.read_csv(out / "tables" / "aggregated.csv")
    pca = agg[(agg.model == "pca") & (agg.metric == "mae") & (agg.split == "test")]
    assert pca["count"].tolist() == [2] and pca.seeds.tolist() == ["0 1"]
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "rep2")]) == 0


def test_a_dry_run_is_marked_and_ranks_nothing(tmp_path):
    run_dir = _run(tmp_path / "dry", "--models", "pca,zero", "--dry-run")
    text = (run_dir / "summary.md").read_text()
    assert "**DRY RUN**" in text and "**0." not in text and "**1." not in text
    agg = pd.read_csv(run_dir / "tables" / "aggregated.csv")
    assert not agg["best"].any()
    real = _run(tmp_path / "real", "--models", "pca,zero")
    assert pd.read_csv(real / "tables" / "aggregated.csv")["best"].any()
    assert "DRY RUN" not in (real / "summary.md").read_text()


def test_a_data_set_smaller_than_asked_warns_and_config_json_records_what_was_used(tmp_path, capsys):
    import json

    from tests.test_data import _write_idx

    _write_idx(tmp_path / "data", "FashionMNIST", n_train=30, n_test=12)
    assert main(["--dataset", "fashion-mnist", "--data-root", str(tmp_path / "data"), "--set", "data.n_train=50",
                 "--set", "data.n_test=12", "--set", "data.n_negative=5", "--models", "zero", "--tasks",
                 "reconstruction", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "fewer images than asked" in line]
    assert len(warning) == 1 and "n_train 30 (asked 50)" in warning[0] and "n_test" not in warning[0]
    (run_dir,) = (tmp_path / "out").iterdir()
    blob = json.loads((run_dir / "config.json").read_text())
    assert blob["data_used"] == {"n_train": 30, "n_test": 12, "n_negative": 5, "image_shape": [1, 28, 28]}
    assert blob["config"]["data"]["n_train"] == 50  # what was asked stays beside it
