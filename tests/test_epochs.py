"""The epoch curve (genbench.epochs, `run_benchmarks.py epochs`): each value is the score of a separate fit of
that many epochs, bit for bit; scoring mid-fit leaves the fit unchanged; a killed study resumes to the same
table; the test images are never read; the report's "enough" is the fewest epochs within a seed std."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from genbench.cli import main
from genbench.config import resolve_config
from genbench.epochs import COLUMNS, EpochSettings, epoch_curve, write_report
from genbench.planning import derive_seed
from genbench.registry import get_model
from genbench.tuning import make_objective, training_split

TINY = ["--dataset", "digits", "--latent-dim", "3", "--set", "data.n_train=120", "--device", "cpu",
        "--set", "model.abp-gd.width=8", "--set", "model.abp-gd.n_epochs=3",
        "--set", "model.abp.width=8", "--set", "model.abp.n_epochs=3",
        "--set", "model.vae.width=8", "--set", "model.vae.n_epochs=3",
        "--set", "model.dcgan.width=8", "--set", "model.dcgan.n_epochs=3", "--set", "model.dcgan.infer_steps=5"]


def _config(tmp_path, device="cpu"):
    overrides = [TINY[i + 1] for i, a in enumerate(TINY) if a == "--set"]
    return resolve_config("default", None, {"data.name": "digits", "device": device, "out": str(tmp_path)}, overrides)


def _study(tmp_path, models, objectives, at, seeds=(0,), device="cpu"):
    settings = EpochSettings(models=tuple(models), objectives=tuple(objectives), at=tuple(at), seeds=tuple(seeds),
                             latent_dim=3)
    folder = epoch_curve(_config(tmp_path, device), settings, log=lambda line: None)
    return folder, pd.read_csv(folder / "curve.csv")


def _separate_fit_score(tmp_path, name, objective_text, epochs, seed=0, device="cpu"):
    """What the study's value at ``epochs`` claims to be: a fit of that many epochs, scored the same way."""
    config = _config(tmp_path, device)
    spec = get_model(name)
    fit_x, val_x = training_split(config, 0.2, seed, torch.device(device))
    obj = make_objective(objective_text, config, fit_x, val_x, seed, "mae")
    base = spec.make_config(latent_dim=3, **config.model.get(name, {}))
    fit = "clean" if obj.clean_train(spec) else f"{obj.task.name}/{obj.variant.name}"
    torch.manual_seed(derive_seed(seed, name, "epochs", fit))
    model = spec.cls(dataclasses.replace(base, n_epochs=epochs)).fit(obj.train_obs(spec))
    return obj.score(model, derive_seed(seed, name, obj.text, "epochs"), torch.device(device), seed), model


@pytest.mark.parametrize("name", ["abp", "abp-gd", "vae", "dcgan"])
def test_each_value_is_the_score_of_a_separate_fit_of_that_many_epochs(tmp_path, name):
    """Scored after epochs 1 and 2 of a 3-epoch fit: the values at 1, 2 and 3 equal three separate fits' scores
    exactly (the copies' recalibration and scoring draw from a forked random state, so the fit goes on as if
    nothing was taken; the VAE and the GAN draw random numbers in every step)."""
    _, curve = _study(tmp_path, [name], ["inpainting:salt-pepper-0.5:learn-from-corrupted"], at=[1, 2])
    assert sorted(curve.epochs) == [1, 2, 3] and (curve.configured_epochs == 3).all()
    for epochs in (1, 2, 3):
        expected, _ = _separate_fit_score(tmp_path, name, "inpainting:salt-pepper-0.5:learn-from-corrupted", epochs)
        assert curve.loc[curve.epochs == epochs, "value"].item() == expected, (name, epochs)
    values = curve.sort_values("epochs").value.tolist()
    assert len(set(values)) == 3  # the counts are different models, not one copy scored three times


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["abp", "vae", "dcgan"])
def test_on_cuda_each_value_is_a_separate_fits_score_up_to_its_kernels_rounding(tmp_path, name):
    """On CUDA the fork covers the device's random state too; cuDNN's kernels need not be deterministic, so the
    values agree up to rounding, not bit for bit."""
    objective = "inpainting:salt-pepper-0.5:learn-from-corrupted"
    _, curve = _study(tmp_path, [name], [objective], at=[1, 2], device="cuda")
    for epochs in (1, 2, 3):
        expected, _ = _separate_fit_score(tmp_path, name, objective, epochs, device="cuda")
        assert curve.loc[curve.epochs == epochs, "value"].item() == pytest.approx(expected, rel=1e-3), (name, epochs)


def test_scoring_mid_fit_leaves_the_fit_unchanged(tmp_path):
    config = _config(tmp_path)
    fit_x, val_x = training_split(config, 0.2, 0, torch.device("cpu"))
    obj = make_objective("reconstruction", config, fit_x, val_x, 0, "mae")
    spec = get_model("vae")
    cfg = spec.make_config(latent_dim=3, **config.model["vae"])

    def fit(on_epoch=None):
        torch.manual_seed(5)
        model = spec.cls(cfg).fit(obj.clean_fit, on_epoch=on_epoch)
        return model.state_dict(), torch.rand(1)  # the weights, and where the random stream stands after

    def score_each_epoch(model, obs, epochs):
        with torch.random.fork_rng(devices=[]):
            obj.score(model.fitted_copy(obs), 1, torch.device("cpu"), 0)

    plain, hooked = fit(), fit(score_each_epoch)
    assert plain[1] == hooked[1]
    _assert_same(plain[0], hooked[0])


def _assert_same(a, b, where="state"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_clean_train_objectives_share_one_fit_and_each_objective_is_scored(tmp_path):
    folder, curve = _study(tmp_path, ["abp-gd"], ["reconstruction", "inpainting:salt-pepper-0.5",
                                                 "inpainting:salt-pepper-0.5:learn-from-corrupted"], at=[1])
    assert list(curve.columns) == list(COLUMNS)
    fits = curve.groupby("fit").objective.unique().apply(sorted).to_dict()
    assert fits == {"clean": ["inpainting:salt-pepper-0.5", "reconstruction"],
                    "inpainting/salt-pepper-0.5": ["inpainting:salt-pepper-0.5:learn-from-corrupted"]}
    # the clean fit's two objectives: one fit, so the same fit seconds at each count
    clean = curve[curve.fit == "clean"].pivot(index="epochs", columns="objective", values="fit_seconds")
    assert (clean.nunique(axis=1) == 1).all()
    expected, _ = _separate_fit_score(tmp_path, "abp-gd", "inpainting:salt-pepper-0.5", 3)
    assert curve.query("objective == 'inpainting:salt-pepper-0.5' and epochs == 3").value.item() == expected
    assert "## `reconstruction`" in (folder / "epochs.md").read_text()


def test_a_killed_study_resumes_to_the_same_table(tmp_path):
    argv = ["epochs", *TINY, "--models", "abp-gd,vae", "--objective", "reconstruction", "--at", "1", "--seeds", "0,1"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    (whole,) = (tmp_path / "whole").iterdir()
    assert main([*argv, "--out", str(tmp_path / "killed")]) == 0
    (killed,) = (tmp_path / "killed").iterdir()
    lines = (killed / "curve.csv").read_text().splitlines()
    # killed in seed 1's VAE fit, after its first count: that fit's row goes, the finished ones stay
    (killed / "curve.csv").write_text("\n".join(lines[:-1]) + "\n")
    (killed / "epochs.md").unlink()
    assert main(["epochs", "--resume", str(killed)]) == 0
    a, b = pd.read_csv(whole / "curve.csv"), pd.read_csv(killed / "curve.csv")
    key = ["model", "seed", "objective", "epochs"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert len(b) == len(a) == 2 * 2 * 2
    pd.testing.assert_series_equal(a.value, b.value)
    assert (killed / "epochs.md").exists()


def test_a_failed_fit_is_written_said_and_fitted_again_on_resume(tmp_path, monkeypatch):
    """A fit that fails at its second epoch (a lack of memory, say): its first count keeps its value, the counts
    it did not reach are rows that say why, epochs.md lists it; --resume fits it again, to the table of a study
    that never failed. The other fit group is not refitted (its fit seconds unchanged)."""
    from genbench.abp import ABP

    argv = ["epochs", *TINY, "--models", "abp-gd", "--objective", "reconstruction", "--objective",
            "inpainting:salt-pepper-0.5:learn-from-corrupted", "--at", "1", "--seeds", "0"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    real, calls = ABP._train_step, {"n": 0}

    def failing(self, state, obs_b, idx):
        calls["n"] += obs_b.mask is not None  # the corrupted fit's steps: 2 per epoch (96 images, batch 50)
        if obs_b.mask is not None and calls["n"] > 2:  # its second epoch
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")
        return real(self, state, obs_b, idx)

    monkeypatch.setattr(ABP, "_train_step", failing)
    assert main([*argv, "--out", str(tmp_path / "failed")]) == 0
    (folder,) = (tmp_path / "failed").iterdir()
    curve = pd.read_csv(folder / "curve.csv", keep_default_na=False)
    bad = curve[curve.error != ""]
    assert set(bad.fit) == {"inpainting/salt-pepper-0.5"} and sorted(bad.epochs) == [3]
    assert bad.error.str.startswith("fit failed: RuntimeError: CUDA out of memory. Tried").all()  # one line
    assert "## Failures" in (folder / "epochs.md").read_text()
    clean_before = curve[curve.fit == "clean"].fit_seconds.astype(float).tolist()
    monkeypatch.setattr(ABP, "_train_step", real)
    assert main(["epochs", "--resume", str(folder)]) == 0
    (whole,) = (tmp_path / "whole").iterdir()
    a, b = (pd.read_csv(f / "curve.csv").sort_values(["fit", "objective", "epochs"]).reset_index(drop=True)
            for f in (whole, folder))
    pd.testing.assert_series_equal(a.value, b.value)
    assert b[b.fit == "clean"].fit_seconds.tolist() == clean_before  # the finished fit was not run again
    assert "## Failures" not in (folder / "epochs.md").read_text()


def test_a_row_cut_short_by_a_crash_is_dropped_on_resume(tmp_path):
    argv = ["epochs", *TINY, "--models", "abp-gd", "--at", "1"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    (whole,) = (tmp_path / "whole").iterdir()
    before = pd.read_csv(whole / "curve.csv")
    text = (whole / "curve.csv").read_text()
    (whole / "curve.csv").write_text(text[: len(text) - 25])  # the last row torn mid-field, no newline
    assert main(["epochs", "--resume", str(whole)]) == 0
    after = pd.read_csv(whole / "curve.csv")
    key = ["seed", "epochs"]
    pd.testing.assert_series_equal(before.sort_values(key).value.reset_index(drop=True),
                                   after.sort_values(key).value.reset_index(drop=True))


def test_the_study_never_reads_test_images(tmp_path, no_test_images):
    _, curve = _study(tmp_path, ["abp-gd"], ["reconstruction"], at=[1], seeds=(0, 1))
    assert set(curve.seed) == {0, 1} and curve.value.notna().all()


def test_models_without_the_epoch_loop_are_skipped_and_a_study_of_none_is_refused(tmp_path, capsys):
    assert main(["epochs", *TINY, "--models", "pca,abp-gd,vae-refine", "--at", "1", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "epochs pca: skipped" in err and "epochs vae-refine: skipped (reuses vae's fit" in err
    assert main(["epochs", *TINY, "--models", "pca,rbm", "--out", str(tmp_path / "none")]) == 2
    assert "none of pca, rbm" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("argv, match", [
    (["--at", "0,2"], "--at"), (["--objective", "inpainting:block-99"], "no variant"),
    (["--objective", "reconstruction", "--objective", "reconstruction"], "twice"),
    (["--metric", "fid"], "does not score"), (["--validation-fraction", "1"], "fraction"),
    (["--resume", "/nonexistent"], "not an epoch-study folder"), (["--latent-dim", "0"], "--latent-dim")])
def test_bad_epochs_input_is_one_line(tmp_path, capsys, argv, match):
    assert main(["epochs", *TINY, "--models", "abp-gd", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "out").exists()


def _curve(tmp_path, models, metric="mae", fits=None, configured=None):
    """curve.csv from {model: {objective: {epochs: [value per seed]}}} (fit seconds 10 per epoch); ``fits`` and
    ``configured``: objective -> its fit's name and configured count (default "clean", 40)."""
    rows = []
    for model, objectives in models.items():
        for objective, counts in objectives.items():
            for e, values in counts.items():
                for seed, v in enumerate(values):
                    rows.append(dict(model=model, fit=(fits or {}).get(objective, "clean"), objective=objective,
                                     seed=seed, epochs=e, metric=metric, value=v, fit_seconds=e * 10.0,
                                     configured_epochs=(configured or {}).get(objective, 40),
                                     error="" if v == v else "fit failed: RuntimeError: out of memory"))
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "curve.csv", index=False)


def _pair(mean, std=0.01):
    d = std / math.sqrt(2)  # two seeds whose std is `std`
    return [mean - d, mean + d]


def test_enough_is_the_fewest_epochs_within_one_seed_std_on_every_objective(tmp_path):
    """Configured 40: mean 0.100, std 0.010 on both objectives. Model a: 20 is within on R, 30 on S: enough 30, at
    75 % of the fit seconds. Model c is not monotone: R is within at 10, 3 std worse at 20, within at 30; S within
    from 20: enough is 30, not 20. Model d's 10 epochs finished on one seed only (the other failed): it does not
    count, though its one value is good. Model b has one seed: no std. Model e studied R only: S is n/a."""
    R, S = "reconstruction", "inpainting:salt-pepper-0.5"
    nan = float("nan")
    _curve(tmp_path, {
        "a": {R: {10: _pair(0.13), 20: _pair(0.108), 30: _pair(0.101), 40: _pair(0.1)},
              S: {10: _pair(0.2), 20: _pair(0.2), 30: _pair(0.1), 40: _pair(0.1)}},
        "c": {R: {10: _pair(0.1), 20: _pair(0.13), 30: _pair(0.1), 40: _pair(0.1)},
              S: {10: _pair(0.2), 20: _pair(0.1), 30: _pair(0.1), 40: _pair(0.1)}},
        "d": {R: {10: [0.05, nan], 20: _pair(0.1), 40: _pair(0.1)}, S: {10: [0.05, nan], 20: _pair(0.1), 40: _pair(0.1)}},
        "b": {R: {10: [0.2], 40: [0.1]}, S: {10: [0.2], 40: [0.1]}},
        "e": {R: {10: _pair(0.1), 40: _pair(0.1)}}})
    settings = EpochSettings(models=("a", "c", "d", "b", "e"), objectives=(R, S), seeds=(0, 1))
    text = write_report(tmp_path, settings, log=lambda line: None)
    summary = text.split("## Fewest epochs")[1]
    assert "| a | clean | 40 | 30 | 20 | 30 | 75% |" in summary
    assert "| c | clean | 40 | 30 | 10 | 20 | 75% |" in summary
    assert "| d | clean | 40 | 20 | 20 | 20 | 50% |" in summary
    assert "| b | clean | 40 | — | 1 seed | 1 seed | — |" in summary
    assert "| e | clean | 40 | 10 | 10 | n/a | 25% |" in summary
    assert "| a | 10 | 100 | 0.13000 ± 0.01000 | +0.03000 |" in text
    assert "| d | 10 | 100 | 0.05000 (1) | -0.05000 |" in text
    assert "| b | 40* | 400 | 0.10000 (1) |  |" in text
    assert "## Failures" in text and "d seed 1, fit `clean`: fit failed: RuntimeError: out of memory" in text


def test_for_a_higher_is_better_metric_enough_and_worse_turn_round(tmp_path):
    _curve(tmp_path, {"a": {"reconstruction": {10: _pair(20.0, 0.5), 20: _pair(21.8, 0.5), 40: _pair(22.0, 0.5)}}},
           metric="psnr")
    settings = EpochSettings(models=("a",), objectives=("reconstruction",), seeds=(0, 1), metric="psnr")
    text = write_report(tmp_path, settings, log=lambda line: None)
    assert "| a | clean | 40 | 20 | 20 | 50% |" in text
    assert "| a | 10 | 100 | 20.00000 ± 0.50000 | +2.00000 |" in text  # 2 dB lower: + worse
    assert "| a | `reconstruction` | 20 → 40 | -0.20000 ± 0.00000 | 2/2 |" in text  # 0.2 dB higher: better


def test_still_improving_is_the_last_step_seed_by_seed(tmp_path):
    """Seeds far apart (0.05 and 0.15) but each 0.02 better at the configured count than at the count before: the
    paired change is -0.02 ± 0 and better in 2/2, though the seed-std criterion calls 10 epochs enough. Model b
    got worse in one seed and better in the other; model c's configured count failed in one seed (one pair left);
    model d has no count below its configured one."""
    R = "reconstruction"
    nan = float("nan")
    _curve(tmp_path, {"a": {R: {10: [0.09, 0.19], 20: [0.07, 0.17], 40: [0.05, 0.15]}},
                      "b": {R: {20: [0.10, 0.10], 40: [0.11, 0.09]}},
                      "c": {R: {20: [0.10, 0.10], 40: [0.09, nan]}},
                      "d": {R: {40: [0.10, 0.11]}}})
    settings = EpochSettings(models=("a", "b", "c", "d"), objectives=(R,), seeds=(0, 1))
    text = write_report(tmp_path, settings, log=lambda line: None)
    assert "| a | clean | 40 | 10 | 10 | 25% |" in text  # the seed-std criterion (std 0.07), loose here
    improving = text.split("## Still improving")[1]
    assert "| a | `reconstruction` | 20 → 40 | -0.02000 ± 0.00000 | 2/2 |" in improving
    assert "| b | `reconstruction` | 20 → 40 | +0.00000 ± 0.01414 | 1/2 |" in improving
    assert "| c | `reconstruction` | 20 → 40 | -0.01000 | 1/1 |" in improving
    assert "| d | `reconstruction` | — | — | — |" in improving


def test_enough_is_said_per_fit_each_against_its_own_configured_count(tmp_path):
    """Learn-from-corrupted fits configured by n_epochs_by_operator (here 20) and the clean fit by n_epochs (40):
    one summary row per fit, each against its own configured count, each objective only in its own fit's row,
    each fit-time share that fit's."""
    R, S, P = "reconstruction", "inpainting:salt-pepper-0.5:learn-from-corrupted", "projection:k-100:learn-from-corrupted"
    _curve(tmp_path, {"a": {R: {10: _pair(0.2), 20: _pair(0.101), 40: _pair(0.1)},
                            S: {5: _pair(0.1), 10: _pair(0.1), 20: _pair(0.1)},
                            P: {10: _pair(0.3), 20: _pair(0.2), 30: _pair(0.105), 40: _pair(0.1)}}},
           fits={S: "inpainting/salt-pepper-0.5", P: "projection/k-100"}, configured={S: 20})
    settings = EpochSettings(models=("a",), objectives=(R, S, P), seeds=(0, 1))
    summary = write_report(tmp_path, settings, log=lambda line: None).split("## Fewest epochs")[1]
    assert "| a | clean | 40 | 20 | 20 | n/a | n/a | 50% |" in summary
    assert "| a | inpainting/salt-pepper-0.5 | 20 | 5 | n/a | 5 | n/a | 25% |" in summary
    assert "| a | projection/k-100 | 40 | 30 | n/a | n/a | 30 | 75% |" in summary


def test_a_study_counts_from_the_configured_epochs_of_each_fit(tmp_path):
    """With model.abp.n_epochs_by_operator = {pixel-mask: 2} (n_epochs 3) the salt-and-pepper fit is scored at 1 and
    its configured 2, the clean one at 1 and 3; the value at the configured count is a separate fit's score."""
    base = get_model("abp").make_config(n_epochs=3, n_epochs_by_operator={"pixel-mask": 2})
    assert base.fit_epochs("identity") == 3 and base.fit_epochs("pixel-mask") == 2 and base.fit_epochs("projection") == 3
    config = _config(tmp_path)
    abp = {**config.model["abp"], "n_epochs_by_operator": {"pixel-mask": 2}}
    config = dataclasses.replace(config, model={**config.model, "abp": abp})
    objective = "inpainting:salt-pepper-0.5:learn-from-corrupted"
    settings = EpochSettings(models=("abp",), objectives=("reconstruction", objective), at=(1,), seeds=(0,),
                             latent_dim=3)
    curve = pd.read_csv(epoch_curve(config, settings, log=lambda line: None) / "curve.csv")
    lfc, clean = curve[curve.objective == objective], curve[curve.objective == "reconstruction"]
    assert sorted(lfc.epochs) == [1, 2] and (lfc.configured_epochs == 2).all()
    assert sorted(clean.epochs) == [1, 3] and (clean.configured_epochs == 3).all()
    expected, _ = _separate_fit_score(tmp_path, "abp", objective, 2)
    assert lfc.loc[lfc.epochs == 2, "value"].item() == expected


def test_the_default_counts_are_quarters_of_the_configured_count():
    assert EpochSettings(models=("abp",)).counts(40) == [10, 20, 30, 40]
    assert EpochSettings(models=("abp",)).counts(90) == [22, 45, 68, 90]
    assert EpochSettings(models=("abp",), at=(5, 50)).counts(40) == [5, 40, 50]
