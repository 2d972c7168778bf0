"""Uncertainty that includes the data (genbench.uncertainty, data.vary_split) and degenerate rows flagged."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from genbench.cli import main
from genbench.metrics import MAE, PSNR, Recovery, score
from genbench.registry import get_metric
from genbench.results import ADDED_COLUMNS, COLUMNS, LEGACY_COLUMNS, read_results
from genbench.summary import DEGENERATE_MARK, aggregate
from genbench.task import recovery_intervals
from genbench.uncertainty import bootstrap_weights, mean_interval, ratio_interval, seed_interval

TINY = ["--dataset", "digits", "--set", "data.n_train=120", "--set", "data.n_test=40", "--set", "data.n_negative=10",
        "--set", "n_eval=40", "--set", "task.inpainting.fractions=[0.5]", "--set", "task.inpainting.blocks=[4]",
        "--set", "task.projection.ks=[16]", "--set", "model.rbm.n_epochs=2", "--set", "model.abp-gd.n_epochs=2",
        "--latent-dims", "2"]


# ------------------------------------------------------------------------------------ the estimators
def test_resampled_metric_is_the_metric_of_the_resampled_images():
    """Oracle: each bootstrap statistic from the per-image parts equals score() on the resampled images."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 4, 4, generator=gen) * 2 - 1
    x_hat = (x + 0.3 * torch.randn(12, 1, 4, 4, generator=gen)).clamp(-1, 1)
    mask = (torch.rand(12, 1, 4, 4, generator=gen) < 0.5).float()
    recovery = Recovery(x, x_hat, mask)
    weights = bootstrap_weights(12, seed=5, draws=20)
    for name in (MAE, PSNR):
        metric = get_metric(name)
        num, den = metric.per_image(recovery, metric.region)
        assert math.fsum(num) / math.fsum(den) == pytest.approx(metric.score(recovery), rel=1e-12)
        for w in weights:
            idx = np.repeat(np.arange(12), w.astype(int))
            direct = score(x[idx], x_hat[idx], mask[idx])[name]
            assert (w @ num) / (w @ den) == pytest.approx(direct, rel=1e-9)


def test_a_95_percent_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = [lo <= 1.0 <= hi for lo, hi in (mean_interval(rng.exponential(1.0, 200), seed=i) for i in range(300))]
    assert 0.90 <= np.mean(covered) <= 0.98


def test_the_interval_narrows_with_more_images_and_is_seeded():
    rng = np.random.default_rng(1)
    values = rng.normal(size=1000)
    lo_small, hi_small = mean_interval(values[:100], seed=0)
    lo_big, hi_big = mean_interval(values, seed=0)
    assert (hi_big - lo_big) < 0.5 * (hi_small - lo_small)
    assert mean_interval(values, seed=0) == (lo_big, hi_big)
    assert mean_interval(values, seed=1) != (lo_big, hi_big)
    assert ratio_interval(np.ones(3), np.zeros(3), bootstrap_weights(3, 0)) == (pytest.approx(math.nan, nan_ok=True),) * 2


def test_seed_interval_covers_seeds_and_images():
    assert seed_interval([0.5], [0.4], [0.7]) == (0.4, 0.7)  # one seed: its own interval
    assert all(math.isnan(v) for v in seed_interval([0.5], [math.nan], [math.nan]))
    z = 1.959963984540054
    values, se = [1.0, 3.0], 0.5  # between-seed variance 2, image variance 0.25
    lows, highs = [v - z * se for v in values], [v + z * se for v in values]
    lo, hi = seed_interval(values, lows, highs, shared_images=False)  # max(2, 0.25) / 2
    assert (hi - lo) / 2 == pytest.approx(z * math.sqrt(1.0))
    lo, hi = seed_interval(values, lows, highs, shared_images=True)  # 2 / 2 + 0.25: the images do not average out
    assert (hi - lo) / 2 == pytest.approx(z * math.sqrt(1.25))
    lo, hi = seed_interval([1.0, 1.0], lows, highs, shared_images=False)  # never below the image part
    assert (hi - lo) / 2 == pytest.approx(z * math.sqrt(0.25 / 2))
    lo, hi = seed_interval(values, [math.nan] * 2, [math.nan] * 2)  # no per-cell interval (FID): the seeds alone
    assert (hi - lo) / 2 == pytest.approx(z * 1.0)


def test_recovery_intervals_only_for_metrics_with_per_image_parts():
    x = torch.zeros(30, 1, 4, 4)
    x_hat = torch.linspace(-0.5, 0.5, 30).view(30, 1, 1, 1).expand(30, 1, 4, 4).contiguous()
    out = recovery_intervals(Recovery(x, x_hat), [get_metric(MAE), get_metric("ssim")], seed=0)
    assert set(out) == {MAE}
    lo, hi = out[MAE]
    assert lo < score(x, x_hat)[MAE] < hi


# ------------------------------------------------------------------------------------ in a run
@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """pca and zero over two seeds, the split varying with the seed, and the same with one split."""
    runs = {}
    for vary in (True, False):
        out = tmp_path_factory.mktemp(f"vary{vary}")
        assert main([*TINY, "--out", str(out), "--models", "pca,zero", "--tasks", "reconstruction",
                     "--seeds", "0,1", "--set", f"data.vary_split={'true' if vary else 'false'}"]) == 0
        (run_dir,) = out.iterdir()
        runs[vary] = run_dir
    return runs


def _test_mae(df, model="pca"):
    rows = df[(df.model == model) & (df.split == "test") & (df.metric == MAE)]
    return rows.set_index("seed")


def test_a_split_that_varies_with_the_seed_gives_pca_a_spread(varied):
    fixed, varying = (_test_mae(read_results(varied[v] / "results.csv")) for v in (False, True))
    assert fixed.value[0] == fixed.value[1]  # PCA is deterministic: one split, one number
    assert varying.value[0] != varying.value[1]
    assert varying.config_hash[0] != fixed.config_hash[0]  # the split seed is in the hash
    used = json.loads((varied[True] / "config.json").read_text())["data_used"]
    assert set(used["split_seeds"]) == {"0", "1"} and len(set(used["split_seeds"].values())) == 2
    agg = pd.read_csv(varied[True] / "tables" / "aggregated.csv")
    pca = agg[(agg.model == "pca") & (agg.split == "test") & (agg.metric == MAE)].iloc[0]
    assert pca["std"] > 0 and pca.ci_low < pca["mean"] < pca.ci_high


def test_every_recovery_row_has_an_interval_around_its_value(varied):
    df = read_results(varied[False] / "results.csv")
    mae = df[df.metric == MAE]
    assert ((mae.ci_low < mae.value) & (mae.value < mae.ci_high)).all()
    assert df[df.metric == "ssim"].ci_low.isna().all()
    agg = pd.read_csv(varied[False] / "tables" / "aggregated.csv")
    assert {"ci_low", "ci_high", "flag"} <= set(agg.columns)
    assert agg[agg.metric == MAE].ci_low.notna().all()


def test_a_resume_of_a_varying_split_run_keeps_its_cells(varied, tmp_path):
    import shutil
    run = tmp_path / "copy"
    shutil.copytree(varied[True], run)
    before = read_results(run / "results.csv")
    assert main(["--resume", str(run)]) == 0
    after = read_results(run / "results.csv")
    pd.testing.assert_frame_equal(before, after)


def test_an_older_table_without_the_new_columns_is_read_and_resumed(varied, tmp_path):
    import shutil
    run = tmp_path / "old"
    shutil.copytree(varied[False], run)
    df = pd.read_csv(run / "results.csv", dtype=str, keep_default_na=False)
    legacy = df[list(LEGACY_COLUMNS)]
    keep = legacy[legacy.model == "zero"]  # pca's cells are "unfinished": the resume runs them again
    keep.to_csv(run / "results.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    old = read_results(run / "results.csv")
    assert tuple(old.columns) == COLUMNS and old.flag.eq("").all() and old.ci_low.isna().all()
    assert main(["--resume", str(run)]) == 0
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == COLUMNS and set(ADDED_COLUMNS) <= set(header)
    new = read_results(run / "results.csv")
    assert len(new) == len(df)
    pca = new[(new.model == "pca") & (new.metric == MAE)]
    assert pca.ci_low.notna().all()  # the re-run cells carry their intervals, the old ones stay empty


# ------------------------------------------------------------------------------------ degenerate rows
@pytest.fixture(scope="module")
def projection_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("degenerate")
    assert main([*TINY, "--out", str(out), "--models", "pca,rbm,abp-gd,zero,naive-inverse",
                 "--tasks", "projection,inpainting"]) == 0
    (run_dir,) = out.iterdir()
    return run_dir, read_results(run_dir / "results.csv")


def test_learning_from_one_shared_projection_is_flagged_for_linear_and_pixelwise_models(projection_run):
    _, df = projection_run
    ok = df[df.status == "ok"]
    flagged = ok[ok.flag != ""]
    assert set(flagged.model) == {"pca", "rbm"}
    assert set(flagged.task) == {"projection"} and set(flagged.protocol) == {"learn-from-corrupted"}
    assert set(flagged.split) == {"train", "test"}
    assert "null space" in flagged.flag.iloc[0]
    assert ok[(ok.task == "projection") & (ok.protocol == "learn-from-corrupted")
              & ok.model.isin(["abp-gd", "zero", "naive-inverse"])].flag.eq("").all()
    assert ok[ok.task == "inpainting"].flag.eq("").all()  # masks are drawn per image


def test_flagged_rows_are_marked_in_the_summary_never_ranked_and_marked_in_the_plots(projection_run):
    run_dir, df = projection_run
    text = (run_dir / "summary.md").read_text()
    assert DEGENERATE_MARK in text and "never ranked" in text
    agg = aggregate(df)
    flagged = agg[agg.flag != ""]
    assert len(flagged) and not flagged.best.any()
    latex = next((run_dir / "tables").glob("*projection*mae*.tex")).read_text()
    assert "ddagger" in latex
    from genbench.figures import DEGENERATE_LABEL, _mark_degenerate
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    ax = Figure().subplots()
    points = pd.DataFrame({"mean": [0.1, 0.2], "flag": ["", "degenerate: why"]})
    _mark_degenerate(ax, [1.0, 2.0], points)
    assert ax.get_legend_handles_labels()[1] == [DEGENERATE_LABEL]
    assert ax.collections[0].get_offsets().tolist() == [[2.0, 0.2]]
