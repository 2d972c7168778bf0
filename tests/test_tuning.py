"""The tuning harness (genbench.tuning, `run_benchmarks.py tune`): equal budgets, a validation split of the
training images, never the test images; the chosen configs as a config file a sweep accepts."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import yaml

from genbench.cli import main
from genbench.registry import MODELS, get_model
from genbench.space import search_space
from genbench.tuning import validation_split

TINY = ["--dataset", "digits", "--latent-dim", "3", "--set", "data.n_train=150", "--set", "model.abp-gd.width=8",
        "--set", "model.abp-gd.n_epochs=2", "--set", "model.rbm.n_epochs=2"]


def _folder(out):
    (folder,) = out.iterdir()
    return folder


def test_tune_never_reads_test_images_and_writes_a_usable_config(tmp_path, no_test_images, capsys):
    out = tmp_path / "tune"
    assert main(["tune", *TINY, "--models", "pca,abp-gd,rbm", "--trials", "3", "--budget", "120",
                 "--out", str(out)]) == 0
    folder = _folder(out)
    trials = pd.read_csv(folder / "trials.csv")
    assert set(trials.model) == {"pca", "abp-gd", "rbm"}
    assert (trials.groupby("model").size() == 3).all()  # the same number of trials for every model
    assert "param.n_epochs" not in trials.columns  # --set fixed it (abp-gd, rbm): not searched
    first = trials[trials.trial == 0].set_index("model")
    cfg = get_model("abp-gd").make_config(latent_dim=3)
    assert first.loc["abp-gd", "param.lr"] == cfg.lr  # trial 0 is the default config
    tuned = yaml.safe_load((folder / "tuned.yaml").read_text())
    assert set(tuned["model"]) == {"pca", "abp-gd", "rbm"}
    best = trials[trials.state == "COMPLETE"].sort_values("value").groupby("model").head(1).set_index("model")
    assert tuned["model"]["abp-gd"]["lr"] == pytest.approx(best.loc["abp-gd", "param.lr"])
    text = (folder / "tuning.md").read_text()
    assert "test images never read" in text and "| abp-gd | 3 |" in text
    assert "| abp-gd | 3 |" in capsys.readouterr().out  # the command prints tuning.md
    # the chosen configs are a config file a sweep accepts
    from genbench.config import resolve_config
    config = resolve_config("quick", folder / "tuned.yaml")
    assert config.model["abp-gd"]["lr"] == tuned["model"]["abp-gd"]["lr"]


def test_a_killed_search_resumes_with_its_trials_and_budget(tmp_path):
    out = tmp_path / "tune"
    assert main(["tune", *TINY, "--models", "pca", "--trials", "2", "--budget", "60", "--out", str(out)]) == 0
    folder = _folder(out)
    assert main(["tune", "--resume", str(folder)]) == 0  # the budget is spent: nothing more runs
    assert sorted(pd.read_csv(folder / "trials.csv").trial) == [0, 1]
    assert main(["tune", "--resume", str(folder), "--trials", "4"]) == 0  # a longer search, for every model
    trials = pd.read_csv(folder / "trials.csv")
    assert sorted(trials.trial) == [0, 1, 2, 3]  # two kept, two more
    assert '"trials": 4' in (folder / "tune.json").read_text()


def test_the_validation_split_is_a_seeded_partition_of_the_training_images():
    import torch
    train = torch.arange(50, dtype=torch.float32).view(50, 1, 1, 1)
    fit, val = validation_split(train, 0.2, seed=3)
    assert len(fit) == 40 and len(val) == 10
    assert sorted(torch.cat([fit, val]).flatten().tolist()) == list(range(50))
    assert torch.equal(validation_split(train, 0.2, seed=3)[1], val)


def test_every_declared_search_space_holds_the_models_default():
    for name, spec in MODELS.as_dict().items():
        space = search_space(spec.cls.Config)
        if not space:
            continue
        cfg = spec.make_config(**({"latent_dim": 10} if spec.capabilities.latent_code else {}))
        fields = {f.name for f in dataclasses.fields(cfg)}
        for field, param in space.items():
            assert field in fields, (name, field)
            assert param.holds(getattr(cfg, field)), (name, field, getattr(cfg, field))


@pytest.mark.parametrize("argv, match", [
    (["--trials", "0"], "--trials"), (["--budget", "0"], "--budget"), (["--validation-fraction", "1"], "fraction"),
    (["--objective", "inpainting:block-99"], "no variant"), (["--objective", "nope"], "nope"),
    (["--models", "nope"], "nope")])
def test_bad_tune_input_is_one_line(tmp_path, capsys, argv, match):
    assert main(["tune", *TINY, "--out", str(tmp_path), "--models", "pca", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err


def test_a_reference_method_is_tuned_on_its_own_operator(tmp_path):
    """Lasso-DCT learns nothing and observes only projections: it is tuned on a projection objective, its fit
    given the observed images as the runner gives them."""
    out = tmp_path / "tune"
    assert main(["tune", "--dataset", "digits", "--set", "data.n_train=100", "--models", "lasso-dct", "--objective",
                 "projection:k-16", "--trials", "2", "--budget", "60", "--out", str(out)]) == 0
    trials = pd.read_csv(_folder(out) / "trials.csv")
    assert (trials.state == "COMPLETE").all() and len(trials) == 2
