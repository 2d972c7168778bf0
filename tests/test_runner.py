"""The runner and the CLI: dry runs, reproducibility, shared fits, failure isolation, oracle and
null scores, and bad input (one line on stderr, exit code 2, nothing written)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
import torch

import genbench.registry as registry
from conftest import MeanModel
from genbench.cli import main
from genbench.config import resolve_config
from genbench.metrics import MAE, PSNR, score
from genbench.model import DivergenceError, ModelConfig
from genbench.operators import Identity, Observations
from genbench.registry import register_model, register_task
from genbench.results import read_results
from genbench.runner import Runner
from genbench.task import CLEAN_TRAIN, RecoveryTask, Variant

TINY = ["--dataset", "digits", "--set", "data.n_train=60", "--set", "data.n_test=20",
        "--set", "data.n_negative=10", "--set", "n_eval=20", "--tasks", "reconstruction"]


# ---------------------------------------------------------------- test doubles (registered per test)
@dataclass(frozen=True)
class _Cfg(ModelConfig):
    fail: bool = False


class _Mean(MeanModel):
    """Null model: always the training mean; ``fail=True`` makes its fit raise."""

    Config = _Cfg

    def fit(self, obs: Observations) -> "_Mean":
        if self.config.fail:
            raise DivergenceError("training loss is NaN (test double)")
        return super().fit(obs)


class _Oracle(_Mean):
    """Returns the truth: for identity observations y is the image."""

    def reconstruct(self, obs: Observations) -> torch.Tensor:
        return obs.y.clone()


class _TwoVariants(RecoveryTask):
    name = "test-two-variants"
    splits = {CLEAN_TRAIN: ("test",)}

    def variants(self, image_shape):
        return [Variant(f"copy-{i}", lambda shape, seed: Identity(seed)) for i in (1, 2)]


@pytest.fixture
def doubles() -> Iterator[None]:
    register_model("test-mean")(_Mean)
    register_model("test-oracle")(_Oracle)
    register_model("test-fails", fail=True)(_Mean)
    register_task("test-two-variants")(_TwoVariants)
    yield
    for name in ("test-mean", "test-oracle", "test-fails"):
        registry._MODELS.pop(name)
    registry._TASKS.pop("test-two-variants")


def _run(tmp_path, *args: str) -> pd.DataFrame:
    assert main([*TINY, "--out", str(tmp_path), *args]) in (0, 1)
    (run_dir,) = tmp_path.iterdir()
    return read_results(run_dir / "results.csv")


# ------------------------------------------------------------------------------------------ tests
def test_dry_run_writes_every_cell(tmp_path, capsys):
    # the quick preset's K = 100 projections do not fit 8x8 digits: the clear error, then a fix
    assert main(["--dry-run", "--dataset", "digits", "--out", str(tmp_path)]) == 2
    assert "task.projection.ks=[...]" in capsys.readouterr().err
    assert main(["--dry-run", "--dataset", "digits", "--out", str(tmp_path), "--set", "task.projection.ks=[16]"]) == 0
    (run_dir,) = tmp_path.iterdir()
    df = read_results(run_dir / "results.csv")
    assert set(df.model) == set(resolve_config("quick").models)
    assert set(df.split) == {"train", "test", "negative", "simulated"} and set(df.status) == {"ok", "unsupported"}
    assert "likelihood" in set(df.task)  # the quick preset runs the likelihood task too
    recon = df[df.task == "reconstruction"]
    assert len(recon) == len(set(recon.model)) * (3 * 4 + 2)  # models x (splits x (mae, mse, psnr, ssim) + 2 ood)
    assert {"likelihood", "samples"} <= set(df.task)
    recovery = df[~df.task.isin(["likelihood", "samples"])]  # (which cannot sample or has no density: elsewhere)
    assert set(recovery[recovery.status == "unsupported"].model) == {"biharmonic", "lasso-dct", "naive-inverse"}
    assert set(df[(df.task == "samples") & (df.status == "ok")].model) == {"abp", "abp-gd", "vae", "vae-refine",
                                                                           "dcgan", "rbm", "dbn", "pca"}
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["dry_run"] is True and config["device"] == "cpu"
    assert "| abp (d=10)" in (run_dir / "summary.md").read_text()
    err = capsys.readouterr().err
    assert f"results in {run_dir}" in err
    assert {"torch=", "genbench="} <= {v.split("=")[0] + "=" for v in df.versions[0].split()}


def test_same_config_and_seed_give_the_same_numbers(tmp_path):
    args = ["--models", "abp,pca", "--dry-run", "--seeds", "3"]
    a = _run(tmp_path / "a", *args)
    b = _run(tmp_path / "b", *args)
    keys = ["model", "split", "metric", "value", "config_hash"]
    pd.testing.assert_frame_equal(a[keys], b[keys])
    c = _run(tmp_path / "c", "--models", "abp,pca", "--dry-run", "--seeds", "4")
    assert not a[a.model == "abp"].value.equals(c[c.model == "abp"].value)


def test_oracle_scores_zero_and_mean_scores_its_known_value(tmp_path, doubles, tiny):
    df = _run(tmp_path, "--models", "test-oracle,test-mean")
    ok = df.set_index(["model", "split", "metric"]).value
    for split in ("train", "test", "negative"):
        assert ok["test-oracle", split, MAE] == 0 and ok["test-oracle", split, PSNR] == 100
    from genbench.data import DataConfig, load_data
    data = load_data(DataConfig(name="digits", n_train=60, n_test=20, n_negative=10))
    mean = data.train.mean(0, keepdim=True).expand_as(data.test)
    assert math.isclose(ok["test-mean", "test", MAE], score(data.test, mean)[MAE], rel_tol=1e-6)


def test_clean_fit_is_shared_by_every_clean_train_cell(doubles):
    config = resolve_config("quick", flags={"models": ["test-mean", "pca"], "tasks":
                                            ["reconstruction", "test-two-variants"],
                                            "data.name": "digits", "seeds": [0, 1], "dry_run": True})
    runner = Runner(config, log=lambda _: None)
    runner.prepare()
    assert len(runner.cells()) == 2 * 2 * 3  # models x seeds x (1 + 2 variants)
    import tempfile
    with tempfile.TemporaryDirectory() as out:
        runner.run(out)
    assert runner.fit_count == 2 * 2  # one fit per (model, seed)


def test_a_failing_model_becomes_failed_rows_and_the_sweep_goes_on(tmp_path, doubles, capsys):
    code = main([*TINY, "--out", str(tmp_path), "--models", "test-fails,test-mean"])
    assert code == 1
    (run_dir,) = tmp_path.iterdir()
    df = read_results(run_dir / "results.csv")
    failed = df[df.model == "test-fails"]
    assert (failed.status == "failed").all() and failed.value.isna().all()
    assert failed.message.str.contains("DivergenceError: training loss is NaN").all()
    assert (df[df.model == "test-mean"].status == "ok").all()
    err = capsys.readouterr().err
    assert "FAILED test-fails" in err and "1 failed" in err
    assert "Failed or unsupported cells" in (run_dir / "summary.md").read_text()


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("abp-gd", "pca", "reconstruction", "mnist5k", "folder:PATH", "quick", "default"):
        assert word in out


def test_report_rewrites_the_summary(tmp_path, capsys):
    main(["--dry-run", "--dataset", "digits", "--models", "pca", "--tasks", "reconstruction", "--out", str(tmp_path)])
    (run_dir,) = tmp_path.iterdir()
    (run_dir / "summary.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "pca (d=10)" in (run_dir / "summary.md").read_text()


@pytest.mark.parametrize("args, match", [
    (["--set", "model.abp.n_epochs=ten"], "model.abp.n_epochs must be an integer"),
    (["--set", "model.abp.bogus=1"], "unknown config key 'model.abp.bogus'"),
    (["--preset", "nope"], "invalid choice"),
    (["--dataset", "mnist", "--data-root", "{tmp}/none"], "not found in"),
    (["--config", "{tmp}/missing.yaml"], "cannot read config file"),
    (["report", "{tmp}"], "not a genbench run folder"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, args, match):
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] != "report":
        args += ["--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("genbench: error:") and match in err, err
    assert not out.exists()


def test_malformed_yaml_config_is_rejected(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [abp\n")
    assert main(["--config", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
