"""Smoke test of the performance harness ``benchmarks/run.py`` at toy sizes (8x8 digits, tiny
nets, one repeat, one thread): every section writes its rows, ratios are positive and finite,
the CSV and the markdown table are written, and the bare reference loops of
``benchmarks/bare.py`` reach our models' weights exactly under the same seed (so the
efficiencies compare equal work). Speed targets are never asserted here."""

from __future__ import annotations

import csv
import importlib
import math
from pathlib import Path

import pytest
import torch

from baselines.dcgan import DCGAN, DCGANConfig
from baselines.vae import VAE, VAEConfig
from conftest import benchmark_module
from genbench.abp import ABP, ABPConfig
from genbench.data import DataConfig, load_data
from genbench.operators import Identity
from genbench.registry import available_models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def harness():
    return benchmark_module("run")


def _number(text: str) -> float:
    return float(text) if text else math.nan


def test_tiny_run_writes_every_section(harness, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.csv"
    threads = torch.get_num_threads()
    code = harness.main(["--tiny", "--skip-quick", "--device", "cpu", "--repeats", "1", "--threads", "1",
                         "--out", str(out)])
    assert code == 0
    assert torch.get_num_threads() == threads  # --threads is restored
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == list(importlib.import_module("benchmarks.harness").COLUMNS)
    by = {}
    for row in rows:
        by.setdefault(row["benchmark"], []).append(row)
    assert set(by) == {"abp-train", "vae-train", "dcgan-train", "rbm-vs-sklearn", "inference", "scaling", "memory",
                       "likelihood", "abp-efficiency", "stack"}
    (eff,) = by["abp-efficiency"]  # the replayed layer work has the iteration's FLOPs
    flop = eff["notes"].split(" GFLOP per iteration (replay ")
    assert float(flop[0].split("; ")[-1]) == pytest.approx(float(flop[1].split(")")[0])) and _number(eff["ratio"]) > 0
    assert len(by["stack"]) == 2 and all("(float rounding" in r["notes"] for r in by["stack"])
    assert all(math.isfinite(_number(r["ours"])) and _number(r["ours"]) >= 0 for r in by["likelihood"])
    for name in ("abp-train", "vae-train", "dcgan-train"):
        eff = _number(by[name][0]["ratio"])
        assert math.isfinite(eff) and eff > 0, (name, by[name][0])
        assert "max|W_ours - W_bare| = 0.0e+00" in by[name][0]["notes"]  # the same work on both sides
    for row in by["rbm-vs-sklearn"]:
        assert math.isfinite(_number(row["ratio"])) and _number(row["ratio"]) > 0
    with_code = {n for n, spec in available_models().items() if spec.capabilities.latent_code}
    assert {r["what"].split(":")[0] for r in by["inference"]} == with_code  # every registered one
    assert all(_number(r["ours"]) > 0 for r in by["inference"])
    r2 = [_number(r["ours"]) for r in by["scaling"] if r["unit"] == "R^2"]
    assert len(r2) == 2 and all(math.isfinite(v) and v <= 1 for v in r2)
    assert all(_number(r["ours"]) > 0 for r in by["memory"])
    assert {r["device"] for r in rows} == {"cpu"}
    md = out.with_suffix(".md").read_text()
    assert "| benchmark | what | ours |" in md and "CPU:" in md and "torch" in md
    assert md in capsys.readouterr().out


@pytest.fixture
def one_thread(harness):
    # toy nets: one thread is fastest, and immune to a busy machine
    with importlib.import_module("benchmarks.harness").torch_threads(1):
        yield


def test_bare_loops_match_our_fits_on_the_same_seed(harness, one_thread) -> None:
    """bare.abp_fit / vae_fit / dcgan_fit draw the same random numbers as ABP / VAE / DCGAN.fit."""
    bare = harness.bare
    x = load_data(DataConfig(name="digits", n_train=40, n_test=8, n_negative=1)).train
    obs = Identity().observe(x)
    small = dict(latent_dim=3, width=4, batch_size=16, n_epochs=2)
    cfg = ABPConfig(langevin_steps=2, **small)
    torch.manual_seed(1)
    ours = ABP(cfg).fit(obs)
    torch.manual_seed(1)
    g, z = bare.abp_fit(x, sigma=cfg.sigma, langevin_steps=2, step_size=cfg.step_size, noise=True, lr=cfg.lr,
                        beta1=cfg.beta1, **small)
    assert bare.max_param_diff(ours.generator_, g) < 1e-6 and torch.allclose(ours.z_train_, z, atol=1e-6)
    assert torch.allclose(ours.generator_(z[:5]), g(z[:5]), atol=1e-5)  # eval mode: precise BN agrees

    vc = VAEConfig(**small)
    torch.manual_seed(2)
    ours = VAE(vc).fit(obs)
    torch.manual_seed(2)
    enc, g = bare.vae_fit(x, sigma=vc.sigma, lr=vc.lr, beta1=vc.beta1, **small)
    assert bare.max_param_diff(ours.encoder_, enc) < 1e-6 and bare.max_param_diff(ours.generator_, g) < 1e-6

    dc = DCGANConfig(**small)
    torch.manual_seed(3)
    ours = DCGAN(dc).fit(obs)
    torch.manual_seed(3)
    g, disc = bare.dcgan_fit(x, lr=dc.lr, beta1=dc.beta1, **small)
    assert bare.max_param_diff(ours.generator_, g) < 1e-6
    assert bare.max_param_diff(ours.discriminator_, disc) < 1e-6


def test_fit_line_recovers_a_line(harness) -> None:
    slope, intercept, r2 = harness.fit_line([1, 2, 4], [3.0, 5.0, 9.0])
    assert slope == pytest.approx(2.0) and intercept == pytest.approx(1.0) and r2 == pytest.approx(1.0)


def test_bad_arguments_are_refused(harness) -> None:
    with pytest.raises(SystemExit):
        harness.main(["--sections", "nope"])
    with pytest.raises(SystemExit):
        harness.main(["--repeats", "0"])


def test_samples_floor_benchmark_ranks_data_above_noise(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("samples_floor", ROOT / "benchmarks" / "samples_floor.py")
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    out = tmp_path / "floor.csv"
    assert floor.main(["--dataset", "digits", "--n-train", "300", "--n-test", "100", "--samples", "100",
                       "--epochs", "3", "--seeds", "0", "--out", str(out)]) == 0
    rows = {r["case"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"test-halves", "train-images", "one-class", "noise"}
    assert float(rows["train-images"]["fid"]) < min(float(rows["one-class"]["fid"]), float(rows["noise"]["fid"]))
    assert "| noise |" in capsys.readouterr().out


def test_samples_spread_benchmark_replays_the_runs_samples_task(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    from genbench.cli import main

    assert main(["--dataset", "digits", "--set", "data.n_train=150", "--set", "data.n_test=40", "--set",
                 "data.n_negative=5", "--models", "pca", "--tasks", "samples", "--latent-dims", "3", "--set",
                 "task.samples.n_samples=40", "--set", "task.samples.feature_epochs=2", "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    spec = importlib.util.spec_from_file_location("samples_spread", ROOT / "benchmarks" / "samples_spread.py")
    spread = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(spread)
    out = tmp_path / "spread.csv"
    assert spread.main([str(run_dir), "--draws", "2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and {r["model"] for r in rows} == {"pca"}
    table = read_results_value(run_dir)
    assert all(float(r["fid"]) > 0 for r in rows) and table > 0
    assert "| pca | 3 | 0 |" in capsys.readouterr().out


def read_results_value(run_dir: Path) -> float:
    from genbench.results import read_results

    df = read_results(run_dir / "results.csv")
    return float(df[(df.metric == "fid") & (df.status == "ok")].value.iloc[0])


def test_conv_paths_variants_are_the_generators_forward_up_to_rounding():
    """benchmarks/conv_paths.py times other convolution paths of the same Generator: they must compute it."""
    conv_paths = benchmark_module("conv_paths")
    VARIANTS, generator_forward = conv_paths.VARIANTS, conv_paths.generator_forward  # noqa: N806
    from genbench.backbone import Generator

    torch.manual_seed(0)
    g = Generator(10, (1, 28, 28), 8).eval()
    z = torch.randn(6, 10)
    with torch.no_grad():
        ref = g(z)
        for paths in VARIANTS.values():
            torch.testing.assert_close(generator_forward(*paths)(g, z), ref, atol=1e-5, rtol=1e-5)
