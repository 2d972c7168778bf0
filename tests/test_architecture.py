"""The shape of the framework (issue: one shape for every extension): a new metric, a new task axis and
a new operator are one file each and reach results.csv, summary.md and the plots with no other change;
nothing is parsed back out of a name; the command line starts without torch."""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

import genbench.registry as registry
from conftest import MeanModel
from genbench.cli import main
from genbench.metrics import Metric, Recovery
from genbench.operators import Identity
from genbench.registry import METRICS, register_metric, register_model, register_task
from genbench.results import read_results
from genbench.task import CLEAN_TRAIN, RecoveryTask, Variant

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--set", "data.n_train=60", "--set", "data.n_test=20",
        "--set", "data.n_negative=10", "--set", "n_eval=20"]


def _run(tmp_path: Path, *args: str) -> tuple[Path, pd.DataFrame]:
    assert main([*TINY, "--out", str(tmp_path), *args]) in (0, 1)
    (run_dir,) = tmp_path.iterdir()
    return run_dir, read_results(run_dir / "results.csv")


# ----------------------------------------------------------------------------------- test doubles
def _max_abs(recovery: Recovery, region: str) -> float:
    return float((recovery.x - recovery.x_hat).abs().max()) / 2


class _Scaled(RecoveryTask):
    """A user's task with its own axis: the clean image seen at a scale (a level on a 'gain' axis)."""

    name = "test-gain"
    splits = {CLEAN_TRAIN: ("test",)}

    def variants(self, image_shape):
        return [Variant(f"gain-{g}", lambda shape, seed: Identity(seed), level=g, level_name="gain",
                        level_unit="x") for g in (1, 2, 4)]


@pytest.fixture
def extension() -> Iterator[None]:
    register_metric(Metric("test-max-abs", "largest |x - x_hat| on [0, 1]", plot=True, compute=_max_abs,
                           tasks=("reconstruction", "test-gain")))
    register_task("test-gain")(_Scaled)
    register_model("my__ae")(MeanModel)  # a name with the old file-name separator in it
    yield
    METRICS.remove("test-max-abs")
    registry.TASKS.remove("test-gain")
    registry.MODELS.remove("my__ae")


# ---------------------------------------------------------------------------------------- tests
def test_a_new_metric_task_axis_and_odd_model_name_reach_every_view(tmp_path, extension):
    run_dir, df = _run(tmp_path, "--models", "my__ae,pca", "--tasks", "reconstruction,test-gain", "--dry-run")
    assert set(df.metric) >= {"mae", "test-max-abs"}
    ok = df[df.status == "ok"]
    mine = ok[(ok.metric == "test-max-abs") & (ok.model == "my__ae") & (ok.task == "reconstruction")]
    assert len(mine) == 3 and (mine.value > 0).all() and (mine.value <= 1).all()
    # the axis is a numeric column, sorted as numbers (not as strings of variant names)
    gains = ok[ok.task == "test-gain"].drop_duplicates("variant").sort_values("level")
    assert gains.level.tolist() == [1.0, 2.0, 4.0] and set(gains.level_name) == {"gain"}
    assert set(ok[ok.task == "reconstruction"].level_name) == {""} and ok[ok.task == "reconstruction"].level.isna().all()
    summary = (run_dir / "summary.md").read_text()
    assert "## reconstruction: test-max-abs (lower is better)" in summary
    plots = {p.name for p in (run_dir / "plots").glob("*.png")}
    assert {"digits__test-gain__mae__sweep.png", "digits__test-gain__test-max-abs__sweep.png",
            "digits__reconstruction__test-max-abs__bars.png"} <= plots
    assert not any("reconstruction__mae__sweep" in p for p in plots)  # no axis, no sweep
    # grids come from the manifest: the model named my__ae is in them
    manifest = (run_dir / "images" / "manifest.jsonl").read_text()
    assert '"model": "my__ae"' in manifest
    assert (run_dir / "grids" / "samples" / "my__ae__d10__s0.png").exists()


def test_a_metric_direction_and_format_come_from_the_registry(tmp_path, extension):
    register_metric(Metric("test-score", "a higher-is-better score", higher_is_better=True, decimals=1,
                           compute=lambda r, region: 1.0 - _max_abs(r, region), tasks=("reconstruction",)))
    try:
        run_dir, df = _run(tmp_path, "--models", "my__ae,pca", "--tasks", "reconstruction", "--latent-dims", "2")
    finally:
        METRICS.remove("test-score")
    summary = (run_dir / "summary.md").read_text()
    assert "## reconstruction: test-score (higher is better)" in summary
    table = summary.split("## reconstruction: test-score")[1].split("##")[0]
    values = df[(df.metric == "test-score") & (df.split == "test")].set_index("model").value
    best = values.idxmax()
    assert f"**{values[best]:.1f}**" in table  # bold = highest, one decimal as the metric says
    agg = pd.read_csv(run_dir / "tables" / "aggregated.csv")
    flagged = agg[(agg.metric == "test-score") & (agg.split == "test") & agg.best]
    assert flagged.model.tolist() == [best]


def test_methods_without_a_latent_code_have_an_empty_latent_dim(tmp_path):
    _, df = _run(tmp_path, "--models", "biharmonic,pca", "--tasks", "inpainting", "--dry-run",
                 "--set", "task.inpainting.fractions=[0.5]", "--set", "task.inpainting.blocks=[]")
    assert df[df.model == "biharmonic"].latent_dim.isna().all()
    assert (df[df.model == "pca"].latent_dim == 10).all()


def test_a_renamed_config_field_is_refused_with_its_new_name(capsys):
    assert main([*TINY, "--set", "model.abp.test_steps=5", "--models", "abp", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "renamed to" in err and "infer_steps" in err and len(err.strip().splitlines()) == 1


def test_the_deblurring_task_runs_through_the_shared_likelihood(tmp_path):
    _, df = _run(tmp_path, "--models", "abp,biharmonic", "--tasks", "deblurring", "--dry-run")
    ok = df[df.status == "ok"]
    assert set(ok.model) == {"abp"} and set(ok.level_name) == {"blur std"}
    assert sorted(set(ok.level)) == [round(8 / 28, 2), round(16 / 28, 2)]
    assert set(df[df.model == "biharmonic"].status) == {"unsupported"}


def test_the_blur_operator_is_linear_self_adjoint_and_replays_its_noise():
    from tasks.deblurring import GaussianBlur

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 2, 9, 7, generator=g), torch.randn(3, 2, 9, 7, generator=g)
    op = GaussianBlur(1.3, 0.1, seed=4)
    lhs = (op.apply(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-5)
    assert torch.allclose(op.apply(torch.ones(1, 1, 30, 30))[0, 0, 15, 15], torch.tensor(1.0))  # normalised
    a = op.observe(x).y
    op.reset()
    b = op.observe(x).y
    assert torch.equal(a, b) and not torch.allclose(a, op.apply(x))  # seeded noise, really added


def test_ssim_oracle_null_and_region():
    from genbench.ssim import SSIM, ssim_map
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 12, 12, generator=g) * 2 - 1
    metric = METRICS.get(SSIM)
    assert metric.score(Recovery(x, x.clone())) == pytest.approx(1.0)
    flat = Recovery(x, torch.zeros_like(x))  # a blank recovery shares no structure
    assert metric.score(flat) < 0.2 and metric.higher_is_better
    # over the whole image it is the mean of scikit-image's SSIM map (same settings; every pixel,
    # where skimage's own mean crops a 3-pixel border), averaged over images
    noisy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    expected = [structural_similarity(((a.double() + 1) / 2).numpy(), ((b.double() + 1) / 2).numpy(),
                                      data_range=1.0, channel_axis=0, win_size=7, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False, full=True)[1].mean()
                for a, b in zip(x, noisy)]
    assert metric.score(Recovery(x, noisy)) == pytest.approx(sum(expected) / 4, rel=1e-9)
    # over a region: the mean of the SSIM map there
    mask = torch.zeros(4, 1, 12, 12)
    mask[:, :, :6] = 1
    maps = [ssim_map(((a.double() + 1) / 2).numpy(), ((b.double() + 1) / 2).numpy()) for a, b in zip(x, noisy)]
    want = sum(float(m[:6].mean()) for m in maps) / 4
    assert metric.score(Recovery(x, noisy, mask)) == pytest.approx(want, rel=1e-9)
    assert math.isnan(metric.score(Recovery(x, noisy, torch.zeros(4, 1, 12, 12))))


def test_command_line_help_and_list_import_no_torch():
    code = ("import sys, contextlib, io\n"
            "from genbench.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['list']) == 0 and main(['--help']) == 0\n"
            "heavy = [m for m in ('torch', 'pandas', 'matplotlib', 'torchvision') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    env = {k: v for k, v in os.environ.items() if k != "GENBENCH_PLUGINS"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


def test_the_catalog_is_what_the_registry_says():
    from genbench import catalog

    assert catalog.BUILTIN == catalog.live(), "run `python -m genbench.catalog` and paste its output"
    from genbench.cli import EXECUTORS_BUILTIN
    assert tuple(registry.EXECUTORS.names()) == EXECUTORS_BUILTIN


# ------------------------------------------------------------------------------ what grep must not find
SOURCES = [p for d in ("genbench", "baselines", "tasks") for p in sorted((ROOT / d).glob("*.py"))]


def test_no_name_parsing_no_latent_dim_zero_no_metric_lists():
    forbidden = {
        r"salt-pepper-\(|\^k-\(|\^block-\(": "a variant-name regex",
        r"\.split\(_SEP\)|stem\.split\(": "file-name splitting",
        r"latent_dim\)? ?[!=]= ?0\b|uses_latent_dim|\bd != 0\b": "the latent-dim-0 convention",
        r"HIGHER_IS_BETTER|SUMMARY_METRICS|PLOT_METRICS": "a metric list outside the registry",
        r"== \"mae\"|== 'mae'": "a metric name literal in control flow",
    }
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for pattern, what in forbidden.items():
            assert not re.search(pattern, text), f"{path.relative_to(ROOT)} has {what} ({pattern})"


def test_runner_and_executors_do_not_import_each_other_and_files_stay_small():
    def imports(module: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return names
    assert "genbench.runner" not in imports(ROOT / "genbench" / "executors.py")
    assert "genbench.executors" not in imports(ROOT / "genbench" / "runner.py")
    for path in SOURCES:
        n = len(path.read_text(encoding="utf-8").splitlines())
        assert n <= 450, f"{path.relative_to(ROOT)} has {n} lines: split it (one concept per file)"
