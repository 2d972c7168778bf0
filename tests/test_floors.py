"""The trivial floors (baselines/floors.py) against independent computations, and the report's marks."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from genbench.cli import main
from genbench.data import DataConfig, load_data
from genbench.metrics import score
from genbench.operators import BlockMask, Identity, PixelMask, RandomProjection
from genbench.registry import get_model
from genbench.results import read_results
from genbench.summary import FLOOR_MARK, aggregate, metric_table

TINY = ["--dataset", "digits", "--set", "data.n_train=120", "--set", "data.n_test=40", "--set", "data.n_negative=10",
        "--set", "n_eval=40", "--set", "task.inpainting.fractions=[0.5]", "--set", "task.inpainting.blocks=[4]",
        "--set", "task.projection.ks=[16]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("floors")
    assert main([*TINY, "--out", str(out), "--models", "zero,mean-image,naive-inverse,pca", "--latent-dims", "2",
                 "--tasks", "reconstruction,inpainting,projection"]) == 0
    (run_dir,) = out.iterdir()
    return run_dir, read_results(run_dir / "results.csv")


def _value(df, model, task, variant, protocol, split="test", metric="mae"):
    row = df[(df.model == model) & (df.task == task) & (df.variant == variant) & (df.protocol == protocol)
             & (df.split == split) & (df.metric == metric)]
    assert len(row) == 1, (model, task, variant, protocol, split, metric)
    return float(row.value.iloc[0])


def test_zero_floor_over_every_pixel_is_the_mean_intensity(run):
    _, df = run
    data = load_data(DataConfig(name="digits", n_train=120, n_test=40, n_negative=10))
    x01 = (data.test + 1) / 2  # the blank image is 0 on this scale: its error is the pixel's own value
    assert _value(df, "zero", "reconstruction", "identity", "clean-train") == pytest.approx(float(x01.mean()), rel=1e-6)
    assert _value(df, "zero", "projection", "k-16", "learn-from-corrupted") == pytest.approx(float(x01.mean()),
                                                                                          rel=1e-6)
    for variant in ("block-4", "salt-pepper-0.5"):  # on the occluded pixels: a mean of some of them
        assert float(x01.min()) <= _value(df, "zero", "inpainting", variant, "clean-train") <= float(x01.max())


def test_zero_floor_equals_the_occluded_mean_for_the_runs_own_masks():
    data = load_data(DataConfig(name="digits", n_train=120, n_test=40, n_negative=10))
    op = BlockMask(size=4, seed=3)
    obs = op.observe(data.test)
    zero = get_model("zero").build().fit(op.observe(data.train))
    x_hat = zero.reconstruct(obs)
    occluded = obs.occluded().expand_as(data.test).bool()
    expected = float(((data.test + 1) / 2)[occluded].mean())
    assert score(data.test, x_hat, obs.occluded())["mae"] == pytest.approx(expected, rel=1e-6)
    assert bool((x_hat == -1).all())


def test_mean_image_learns_the_mean_of_what_it_observes():
    data = load_data(DataConfig(name="digits", n_train=120, n_test=40, n_negative=10))
    clean = get_model("mean-image").build().fit(Identity().observe(data.train))
    assert torch.allclose(clean.mean_, data.train.mean(0), atol=1e-6)
    op = PixelMask(p=0.5, seed=1)
    obs = op.observe(data.train)
    masked = get_model("mean-image").build().fit(obs)
    m = obs.mask.expand_as(obs.y)
    expected = (obs.y * m).sum(0) / m.sum(0).clamp_min(1)
    assert torch.allclose(masked.mean_, expected, atol=1e-6)
    # a checkpoint round-trips
    again = get_model("mean-image").build()
    again.load_state_dict(masked.state_dict())
    assert torch.equal(again.reconstruct(op.observe(data.test)), masked.reconstruct(op.observe(data.test)))


def test_naive_inverse_is_the_operators_own_guess_and_refuses_identity(run):
    _, df = run
    data = load_data(DataConfig(name="digits", n_train=120, n_test=40, n_negative=10))
    op = RandomProjection(k=16, image_shape=(1, 8, 8), seed=0)
    obs = op.observe(data.test)
    model = get_model("naive-inverse").build().fit(op.observe(data.train))
    assert torch.equal(model.reconstruct(obs), obs.naive_inverse().clamp(-1, 1))
    rows = df[(df.model == "naive-inverse") & (df.task == "reconstruction")]
    assert set(rows.status) == {"unsupported"}
    assert df[(df.model.isin(["zero", "mean-image", "naive-inverse"]))].latent_dim.isna().all()


def test_report_marks_rows_that_do_not_beat_the_best_floor(run):
    run_dir, df = run
    agg = aggregate(df)
    mae = agg[(agg.metric == "mae") & (agg.task == "projection") & (agg.split == "test")]
    floors = mae[mae.model.isin(["zero", "mean-image", "naive-inverse"])]
    assert floors.beats_floor.isna().all()
    for _, r in mae[mae.model == "pca"].iterrows():
        best_floor = floors[(floors.variant == r.variant) & (floors.protocol == r.protocol)]["mean"].min()
        assert bool(r.beats_floor) == (r["mean"] < best_floor)
    # a made-up model worse than zero everywhere is marked, one better is not
    rows = df[(df.model == "zero") & (df.task == "projection") & (df.metric == "mae") & (df.split == "test")]
    bad = rows.assign(model="bad", value=rows.value + 0.1)
    ok = rows.assign(model="good", value=rows.value - 0.01)
    table = metric_table(aggregate(pd.concat([rows, bad, ok])))
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert FLOOR_MARK in lines["bad"] and FLOOR_MARK not in lines["good"] and FLOOR_MARK not in lines["zero"]
    assert "not better than the best trivial floor" in table
    text = (run_dir / "summary.md").read_text()
    assert "## projection: mae (lower is better)" in text
    assert "beats_floor" in (run_dir / "tables" / "aggregated.csv").read_text().splitlines()[0]
