"""--fits-from RUN_DIR: another run's checkpoints serve as this run's fits where they match, so a finished run
is re-scored under other inference settings without fitting again; fits of other data are refused."""

from __future__ import annotations

import pandas as pd
import pytest

from genbench.cli import main
from genbench.results import read_results

SWEEP = ["--dataset", "digits", "--set", "data.n_train=100", "--set", "data.n_test=20", "--set", "data.n_negative=10",
         "--set", "n_eval=20", "--models", "abp-gd,zero", "--tasks", "reconstruction,inpainting", "--set",
         "task.inpainting.fractions=[0.7]", "--set", "task.inpainting.blocks=[]", "--latent-dims", "2",
         "--set", "model.abp-gd.n_epochs=2", "--set", "model.abp-gd.width=4", "--seeds", "0"]
KEYS = ["model", "latent_dim", "seed", "task", "variant", "protocol", "split", "metric"]


def _run(out, *args: str) -> pd.DataFrame:
    assert main([*SWEEP, "--out", str(out), *args]) == 0
    (run_dir,) = out.iterdir()
    return read_results(run_dir / "results.csv").sort_values(KEYS).reset_index(drop=True)


def _fitted_here(out) -> list:
    """The abp-gd fits this run made itself (a fit it loaded from another run is not saved again)."""
    (run_dir,) = out.iterdir()
    return sorted((run_dir / "checkpoints").glob("abp-gd__*.pt"))


@pytest.fixture
def source(tmp_path, one_thread):
    table = _run(tmp_path / "source")
    (run_dir,) = (tmp_path / "source").iterdir()
    return run_dir, table


def test_the_same_config_from_another_runs_fits_gives_its_table_without_fitting(source, tmp_path, capsys):
    run_dir, first = source
    capsys.readouterr()
    again = _run(tmp_path / "again", "--fits-from", str(run_dir))
    pd.testing.assert_frame_equal(first[KEYS + ["value", "config_hash", "fit_seconds"]],
                                  again[KEYS + ["value", "config_hash", "fit_seconds"]])
    assert len(_fitted_here(tmp_path / "source")) == 2 and _fitted_here(tmp_path / "again") == []
    assert f"fits from {run_dir}" in capsys.readouterr().err


def test_other_inference_settings_are_scored_on_the_same_fits(source, tmp_path, capsys):
    """infer_init=prior re-scores abp-gd on the source's fits: new hashes and values, no fit, the fit
    time of the source's fits; the zero floor's rows do not change."""
    run_dir, first = source
    capsys.readouterr()
    prior = _run(tmp_path / "prior", "--fits-from", str(run_dir), "--set", "model.abp-gd.infer_init=prior")
    assert _fitted_here(tmp_path / "prior") == []
    gd_first, gd_prior = first[first.model == "abp-gd"], prior[prior.model == "abp-gd"]
    assert (gd_first.config_hash.values != gd_prior.config_hash.values).all()
    assert (gd_first.value.values != gd_prior.value.values).any()
    assert (gd_first.fit_seconds.values == gd_prior.fit_seconds.values).all()
    pd.testing.assert_frame_equal(first[first.model == "zero"][KEYS + ["value"]],
                                  prior[prior.model == "zero"][KEYS + ["value"]])


def test_a_changed_fit_field_fits_again(source, tmp_path):
    """The checkpoints are keyed by the fit fields: another learning rate is another fit, run here."""
    run_dir, first = source
    other = _run(tmp_path / "other", "--fits-from", str(run_dir), "--set", "model.abp-gd.lr=0.005")
    assert len(_fitted_here(tmp_path / "other")) == 2
    assert (first[first.model == "abp-gd"].value.values != other[other.model == "abp-gd"].value.values).any()


@pytest.mark.parametrize("args, text", [
    (["--set", "data.n_train=90"], "data.n_train"),
    (["--set", "task.inpainting.fractions=[0.5]"], "task.inpainting.fractions"),
])
def test_fits_of_other_data_or_task_settings_are_refused(source, tmp_path, capsys, args, text):
    run_dir, _ = source
    capsys.readouterr()
    assert main([*SWEEP, "--out", str(tmp_path / "refused"), "--fits-from", str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "--fits-from" in err and text in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "refused").exists()


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    assert main([*SWEEP, "--out", str(tmp_path / "x"), "--fits-from", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genbench: error: --fits-from") and "no config.json" in err


def test_the_init_study_scripts_read_the_runs(source, tmp_path, capsys):
    """benchmarks/init_study.py pairs a run with its re-scored copy; benchmarks/flat_origin.py re-infers a
    run's learn-from-corrupted fits from z = 0 with and without noise (both stay in step with the code)."""
    import importlib.util
    from pathlib import Path

    def script(name):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    run_dir, _ = source
    _run(tmp_path / "prior", "--fits-from", str(run_dir), "--set", "model.abp-gd.infer_init=prior")
    (prior_dir,) = (tmp_path / "prior").iterdir()
    capsys.readouterr()
    assert script("init_study").main([str(run_dir), str(prior_dir), "--out", str(tmp_path / "t.md")]) == 0
    table = (tmp_path / "t.md").read_text()
    assert "| inpainting | salt-pepper-0.7 | learn-from-corrupted | train | 1 |" in table and "### d = 2" in table
    assert script("flat_origin").main([str(run_dir), "--models", "abp-gd", "--latent-dims", "2", "--seeds", "0",
                                       "--images", "5"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| abp-gd | 2 | 0 |")]
    assert len(row) == 1 and "no checkpoint" not in row[0]
