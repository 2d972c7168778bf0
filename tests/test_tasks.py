"""Inpainting and projection tasks through the runner: variants and their validation, oracle and
mean-image scores (with the scoring mask rebuilt independently from the operator), batch-size
independence, shared fits, and the two protocols."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch

import genbench.registry as registry
from conftest import MeanModel
from genbench.cli import main
from genbench.config import resolve_config
from genbench.data import DataConfig, load_data
from genbench.metrics import score
from genbench.model import ModelConfig
from genbench.operators import BlockMask, Observations, PixelMask, RandomProjection
from genbench.registry import get_task, register_model
from genbench.results import read_results
from genbench.runner import SPLIT_STREAMS, Runner, derive_seed
from genbench.task import CLEAN_TRAIN, LEARN_FROM_CORRUPTED
from tasks.inpainting import MAE_ALL

DATA = DataConfig(name="digits", n_train=60, n_test=20, n_negative=10)
FLAGS = {"data.name": "digits", "data.n_train": 60, "data.n_test": 20, "data.n_negative": 10, "n_eval": 20}
# small variants that fit 8x8 digits
PARAMS = ["task.inpainting.fractions=[0.5, 0.9]", "task.inpainting.blocks=[3]", "task.projection.ks=[16, 48]"]


@dataclass(frozen=True)
class _Cfg(ModelConfig):
    pass


class _Truth:
    """Every image of the test data set: the oracle looks its answer up here."""

    images = torch.cat([getattr(load_data(DATA), s) for s in ("train", "test", "negative")])


class _Mean(MeanModel):
    """Null model: the clean training mean, whatever it was fitted on (records the operators)."""

    Config = _Cfg
    fitted_on: list = []

    def mean_image(self, obs: Observations) -> torch.Tensor:
        _Mean.fitted_on.append(type(obs.op).__name__)
        return _Truth.images[:60].mean(0, keepdim=True)  # the clean training mean


class _Oracle(_Mean):
    """Finds, for each observation, the data set image that explains it exactly."""

    def reconstruct(self, obs: Observations) -> torch.Tensor:
        out = []
        for i in range(len(obs)):
            one = obs[i:i + 1]
            mask = one.mask
            pred = one.op.apply(_Truth.images, None if mask is None else mask.expand(len(_Truth.images), -1, -1, -1))
            out.append(_Truth.images[(pred - one.y).flatten(1).pow(2).sum(1).argmin()])
        return torch.stack(out)


@pytest.fixture
def doubles() -> Iterator[None]:
    register_model("test-mean")(_Mean)
    register_model("test-oracle")(_Oracle)
    _Mean.fitted_on.clear()
    yield
    for name in ("test-mean", "test-oracle"):
        registry._MODELS.pop(name)


def _runner(models, tasks, extra=()) -> Runner:
    config = resolve_config("quick", flags={"models": models, "tasks": tasks, **FLAGS},
                            overrides=[*PARAMS, *extra])
    return Runner(config, log=lambda _: None)


def _run(runner: Runner):
    with tempfile.TemporaryDirectory() as out:
        summary = runner.run(out)
        return read_results(summary.run_dir / "results.csv"), summary


# --------------------------------------------------------------------------------------- variants
def test_default_variants_follow_the_paper_by_image_size():
    inpainting, projection = get_task("inpainting")(), get_task("projection")()
    names = [v.name for v in inpainting.variants((1, 28, 28))]
    assert names == ["salt-pepper-0.5", "salt-pepper-0.7", "salt-pepper-0.9", "block-10", "block-14"]
    faces = inpainting.variants((3, 64, 64))
    assert [v.name for v in faces][-2:] == ["block-20", "block-30"]
    op = faces[0].make_operator((3, 64, 64), 0)
    assert isinstance(op, PixelMask) and op.cell == 3 and op.p == 0.5
    assert [v.name for v in projection.variants((1, 28, 28))] == ["k-20", "k-50", "k-100", "k-200"]
    assert [v.name for v in projection.variants((3, 64, 64))] == ["k-100", "k-300", "k-1000"]
    for v in inpainting.variants((1, 28, 28)) + projection.variants((1, 28, 28)):
        assert v.protocols == (CLEAN_TRAIN, LEARN_FROM_CORRUPTED)


@pytest.mark.parametrize("override, match", [
    ("task.inpainting.fractions=[1.5]", r"fraction must be in \(0, 1\)"),
    ("task.inpainting.fractions=[0]", r"fraction must be in \(0, 1\)"),
    ("task.inpainting.blocks=[9]", "does not fit in 8x8"),
    ("task.inpainting.cell=0", "cell must be an integer"),
    ("task.inpainting.fractions=0.5", "must be a list"),
    ("task.projection.ks=[0]", r"K must be in 1\.\.64"),
    ("task.projection.ks=[65]", r"K must be in 1\.\.64"),
    ("task.projection.ks=[10, 10]", "twice"),
    ("task.projection.nope=1", "unknown config key task.projection.nope"),
])
def test_bad_variant_parameters_are_one_line_exit_2(tmp_path, capsys, override, match):
    code = main(["--dataset", "digits", "--tasks", "inpainting,projection", "--dry-run",
                 "--out", str(tmp_path / "out"), "--set", override])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and pytest.importorskip("re").search(match, err[0]), err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---------------------------------------------------------------------------------------- scoring
def test_oracle_scores_zero_on_every_variant_and_protocol(doubles):
    # (at 90% occlusion an 8x8 digit keeps ~6 pixels: too few for the oracle's look-up to be unique)
    df, _ = _run(_runner(["test-oracle"], ["inpainting", "projection"], ["task.inpainting.fractions=[0.5, 0.7]"]))
    assert (df.status == "ok").all()
    assert set(df.variant) == {"salt-pepper-0.5", "salt-pepper-0.7", "block-3", "k-16", "k-48"}
    assert set(zip(df.protocol, df.split)) == {(CLEAN_TRAIN, "test"), (LEARN_FROM_CORRUPTED, "train"),
                                              (LEARN_FROM_CORRUPTED, "test")}
    errors = df[df.metric.isin(["mae", "mse", MAE_ALL])]
    assert (errors.value == 0).all()
    assert (df[df.metric == "psnr"].value == 100).all()


def test_mean_image_scores_its_known_value_on_the_operators_occluded_pixels(doubles):
    """The expected score is computed from operators rebuilt here from the documented seeds, so
    the scoring mask is exactly the operator's."""
    df, _ = _run(_runner(["test-mean"], ["inpainting", "projection"]))
    table = df.set_index(["variant", "protocol", "split", "metric"]).value.sort_index()
    data = load_data(DATA)
    mean = data.train.mean(0, keepdim=True)
    makers = {"salt-pepper-0.9": lambda s: PixelMask(0.9, 1, s), "block-3": lambda s: BlockMask(3, s),
              "k-48": lambda s: RandomProjection(48, data.image_shape, s)}
    for variant, make in makers.items():
        task = "projection" if variant.startswith("k-") else "inpainting"
        op = make(derive_seed(0, task, variant))
        for split in ("train", "test"):
            op.reset(SPLIT_STREAMS[split])
            obs = op.observe(getattr(data, split))[:20]  # the whole split is observed; n_eval=20 scored
            x = getattr(data, split)[:20]
            expected = score(x, mean.expand_as(x), obs.occluded())
            got = table[variant, LEARN_FROM_CORRUPTED, split]
            assert math.isclose(got["mae"], expected["mae"], rel_tol=1e-6)
            assert math.isclose(got["psnr"], expected["psnr"], rel_tol=1e-6)
            if task == "inpainting":
                assert math.isclose(got[MAE_ALL], score(x, mean.expand_as(x))["mae"], rel_tol=1e-6)
                assert got["mae"] != pytest.approx(got[MAE_ALL])  # the occluded pixels are not all pixels
            else:
                assert MAE_ALL not in got.index


def test_scores_do_not_depend_on_the_evaluation_batch_size():
    """abp-gd with one start is deterministic at inference (its default, two starts, draws the second start's
    z per batch, as ABP's Langevin noise is drawn: those scores depend on the batch layout by design)."""
    def values(batch: int):
        df, _ = _run(_runner(["abp-gd", "pca"], ["inpainting"], [f"model.abp-gd.eval_batch_size={batch}",
                                                               "model.abp-gd.restarts=1", "dry_run=true"]))
        return df.sort_values(["model", "variant", "protocol", "split", "metric"]).value.to_numpy()

    assert values(500) == pytest.approx(values(7), rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------------------------- shared fits
def test_clean_train_reuses_one_fit_and_learn_from_corrupted_fits_per_variant(doubles):
    runner = _runner(["test-mean"], ["reconstruction", "inpainting", "projection"])
    df, _ = _run(runner)
    n_variants = 3 + 2  # inpainting 0.5, 0.9, block-3; projection 16, 48
    assert runner.fit_count == 1 + n_variants
    assert _Mean.fitted_on.count("Identity") == 1  # the one clean fit
    assert sorted(set(_Mean.fitted_on) - {"Identity"}) == ["BlockMask", "PixelMask", "RandomProjection"]
    assert len(df.groupby(["variant", "protocol"])) == 1 + 2 * n_variants


def test_vae_refine_reuses_the_vae_fit():
    runner = _runner(["vae", "vae-refine"], ["reconstruction"], ["dry_run=true"])
    df, _ = _run(runner)
    assert runner.fit_count == 1
    fit = df.groupby("model").fit_seconds.first()
    assert fit["vae"] == fit["vae-refine"]
    steps = df.groupby("model").infer_steps.first()
    assert steps["vae"] == 0 and steps["vae-refine"] > 0


def test_reference_methods_run_once_per_seed_and_say_what_they_do_not_support():
    df, summary = _run(_runner(["biharmonic", "lasso-dct"], ["reconstruction", "inpainting", "projection"],
                               ["latent_dims=[4, 8]", "dry_run=true"]))
    assert df.latent_dim.isna().all()  # no latent code: the column is empty, not a number
    ok = df[df.status == "ok"]
    assert set(ok[ok.model == "biharmonic"].task) == {"inpainting"}
    assert set(ok[ok.model == "lasso-dct"].task) == {"projection"}
    unsupported = df[df.status == "unsupported"]
    assert set(zip(unsupported.model, unsupported.task)) == {
        ("biharmonic", "reconstruction"), ("biharmonic", "projection"),
        ("lasso-dct", "reconstruction"), ("lasso-dct", "inpainting")}
    assert unsupported.message.str.contains("does not support").all()
    text = (summary.run_dir / "summary.md").read_text() if summary.run_dir.exists() else ""
    assert text == "" or "| biharmonic |" in text


# -------------------------------------------------------------------------------------------- presets
def test_default_and_quick_presets_run_both_tasks_and_both_protocols():
    for preset in ("quick", "default"):
        config = resolve_config(preset)
        assert {"inpainting", "projection"} <= set(config.tasks)
        assert {"abp", "pca", "biharmonic", "lasso-dct"} <= set(config.models)


def test_paper_preset_dry_runs_on_a_fake_celeba_tree(tmp_path, monkeypatch):
    from conftest import make_fake_celeba
    make_fake_celeba(tmp_path / "data", [0] * 6 + [2] * 3, monkeypatch)
    code = main(["--preset", "paper", "--dry-run", "--data-root", str(tmp_path / "data"),
                 "--device", "cpu", "--out", str(tmp_path / "out"), "--set", "data.n_negative=4",
                 "--models", "abp,biharmonic,lasso-dct", "--latent-dims", "4"])
    # (pca is left out: its EM on corrupted 64x64 RGB images forms a 12288 x 12288 scatter, minutes on CPU)
    assert code == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    df = read_results(run_dir / "results.csv")
    ok = df[df.status == "ok"]
    assert set(ok.variant) == {"identity", "salt-pepper-0.5", "salt-pepper-0.7", "salt-pepper-0.9",
                               "block-20", "block-30", "k-100", "k-300", "k-1000"}
    assert (df[df.task != "reconstruction"].status == "ok").all() or set(df.status) <= {"ok", "unsupported"}
    config = resolve_config("paper")
    assert config.latent_dims == (100,) and config.data.image_size == 64 and config.data.n_train == 10000
