"""The samples task: the statistics against references, oracle and null samplers, the CLI, caching."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import scipy.linalg
import torch

from genbench.cli import main
from genbench.data import DataConfig, load_data
from genbench.features import RANDOM, TRAINED, accuracy, feature_net
from genbench.model import Capabilities, LatentModel
from genbench.operators import Identity
from genbench.registry import get_task
from genbench.results import read_results
from genbench.sample_quality import fid, kid, mode_coverage, prdc
from genbench.task import DataView, EvalContext

TINY = ["--dataset", "digits", "--set", "data.n_train=200", "--set", "data.n_test=60", "--set", "data.n_negative=10",
        "--set", "task.samples.n_samples=60", "--set", "task.samples.feature_epochs=2"]


# -- the statistics ---------------------------------------------------------------------------------
def test_fid_matches_the_closed_form_with_scipy_sqrtm():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g, dtype=torch.float64)
    b = torch.randn(300, 6, generator=g, dtype=torch.float64) @ torch.diag(torch.linspace(0.5, 2, 6, dtype=torch.float64)) + 0.3
    mu1, mu2 = a.mean(0).numpy(), b.mean(0).numpy()
    s1, s2 = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert fid(a, b) == pytest.approx(expected, rel=1e-8)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g)
    assert abs(kid(a, b, seed=0)) < 0.01 < kid(a, b + 1.0, seed=0)
    assert kid(a, b, subset_size=100, subsets=20, seed=3) == kid(a, b, subset_size=100, subsets=20, seed=3)


def test_prdc_matches_the_definitions_by_brute_force():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(40, 3, generator=g).double(), (torch.randn(30, 3, generator=g) + 0.7).double()
    k = 5

    def radius(points, i):
        return sorted(float((points[i] - points[j]).norm()) for j in range(len(points)) if j != i)[k - 1]

    r_real = [radius(real, i) for i in range(len(real))]
    r_fake = [radius(fake, j) for j in range(len(fake))]
    dist = lambda u, v: float((u - v).norm())  # noqa: E731
    precision = np.mean([any(dist(f, real[i]) <= r_real[i] for i in range(len(real))) for f in fake])
    recall = np.mean([any(dist(r, fake[j]) <= r_fake[j] for j in range(len(fake))) for r in real])
    density = np.mean([sum(dist(f, real[i]) <= r_real[i] for i in range(len(real))) for f in fake]) / k
    coverage = np.mean([min(dist(real[i], f) for f in fake) <= r_real[i] for i in range(len(real))])
    got = prdc(real, fake, k=k)
    assert got == pytest.approx({"precision": precision, "recall": recall, "density": density, "coverage": coverage})
    same = prdc(real, real)  # (density counts each point in its own ball too: above 1 here)
    assert (same["precision"], same["recall"], same["coverage"]) == (1.0, 1.0, 1.0) and same["density"] > 1
    far = prdc(real, fake + 100)
    assert far["precision"] == far["recall"] == far["coverage"] == 0.0


def test_mode_coverage_counts_classes_and_measures_kl():
    test = torch.arange(10).repeat(20)  # uniform over 10 classes
    assert mode_coverage(test, test, 10) == pytest.approx({"classes_covered": 10, "label_entropy": math.log(10),
                                                           "label_kl": 0.0})
    one = mode_coverage(torch.full((50,), 3), test, 10)
    assert one == pytest.approx({"classes_covered": 1, "label_entropy": 0.0, "label_kl": math.log(10)})
    # a class with under half its test share is not covered
    rare = torch.cat([torch.arange(9).repeat(100), torch.full((40,), 9)])
    assert mode_coverage(rare, test, 10)["classes_covered"] == 9
    # a class the (few) test images lack: a finite KL, and it is not "covered"
    lacking = mode_coverage(torch.tensor([0, 1, 9]), torch.tensor([0, 1, 1, 0]), 10)
    assert math.isfinite(lacking["label_kl"]) and lacking["label_kl"] > 0.5 and lacking["classes_covered"] == 2
    with pytest.raises(ValueError, match="at least"):
        fid(torch.randn(1, 3), torch.randn(5, 3))


# -- the task on real digits: oracle and null samplers -----------------------------------------------
class Sampler(LatentModel):
    """A test double that "samples" from a fixed pool of images (or noise: pool None)."""

    capabilities = Capabilities(latent_code=False, learns=False)

    def __init__(self, pool: torch.Tensor | None, shape=(1, 28, 28)) -> None:
        super().__init__()
        self.pool, self.shape = pool, shape

    def fit(self, obs):
        return self

    def infer(self, obs):
        raise NotImplementedError

    def decode(self, z):
        raise NotImplementedError

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def sample(self, n: int) -> torch.Tensor:
        if self.pool is None:
            return torch.rand(n, *self.shape) * 2 - 1
        return self.pool[torch.randint(len(self.pool), (n,))]


@pytest.fixture(scope="module")
def digits():
    data = load_data(DataConfig(name="mnist5k", n_train=2000, n_test=500, n_negative=10))
    view = DataView({"train": data.train, "test": data.test}, {"train": data.train_labels, "test": data.test_labels},
                    key="mnist5k-2000-500")
    return data, view


def _scores(model, digits, **params):
    data, view = digits
    task = get_task("samples")({"n_samples": 500, "feature_epochs": 5, **params})
    ctx = EvalContext(model=model, op=Identity(), observed={}, clean={"test": data.test}, generator=torch.Generator(),
                      device=torch.device("cpu"), clock=time.perf_counter, fit_seed=7, seed=0, data=view)
    result = task.evaluate(ctx, "test")
    return result.scores, result, task.features(ctx)


def test_feature_net_classifies_the_embedded_digits(digits):
    data, view = digits
    _, result, net = _scores(Sampler(digits[0].train), digits)
    assert net.name == TRAINED and net.test_accuracy > 0.9
    assert net.test_accuracy == pytest.approx(accuracy(net.net, data.test, data.test_labels))
    assert f"test accuracy {net.test_accuracy:.3f}" in result.notes["fid"] and "500 samples vs 500" in result.notes["fid"]


def test_oracle_and_null_samplers_rank_as_they_must(digits):
    data, view = digits
    _, _, net = _scores(Sampler(data.train), digits)
    phi_test = net.embed(data.test)
    scale = phi_test.square().mean().sqrt()  # the task's feature scale
    phi_test = phi_test / scale
    floor = fid(net.embed(data.train[:500]) / scale, phi_test)  # held-out data against the test images
    halves = fid(phi_test[:250], phi_test[250:])
    train, *_ = _scores(Sampler(data.train), digits)
    noise, *_ = _scores(Sampler(None), digits)
    one_class, *_ = _scores(Sampler(data.train[data.train_labels == 3]), digits)
    assert train["fid"] < 1.5 * floor and halves < 3 * floor  # near the floor (halves: 250 images, more bias)
    assert noise["fid"] > 20 * floor  # (68 vs a floor of 0.34 when written)
    # noise lands in few test balls (precision alone is fooled by outliers: 0.27 here, Naeem et al.'s point)
    assert noise["density"] < 0.1 and noise["coverage"] < 0.05 and noise["recall"] < 0.05
    assert train["precision"] > 0.9 and train["recall"] > 0.8 and 0.9 < train["density"] < 1.1
    assert train["classes_covered"] == 10 and train["label_kl"] < 0.05
    assert one_class["classes_covered"] == 1 and one_class["label_kl"] > 1.5 and one_class["recall"] < 0.4
    assert one_class["coverage"] < train["coverage"] and one_class["fid"] > 5 * floor


def test_scores_do_not_depend_on_the_batch_size(digits):
    a, *_ = _scores(Sampler(digits[0].train), digits, batch_size=500)
    b, *_ = _scores(Sampler(digits[0].train), digits, batch_size=37)
    assert a == pytest.approx(b, rel=1e-6, abs=1e-9)


def test_a_sampler_out_of_range_or_of_the_wrong_shape_fails_the_cell(digits):
    class Loud(Sampler):
        def sample(self, n):
            return super().sample(n) * 3

    with pytest.raises(Exception, match="values in"):
        _scores(Loud(digits[0].train), digits)
    with pytest.raises(ValueError, match="shape"):
        _scores(Sampler(None, shape=(1, 8, 8)), digits)


def test_feature_net_is_kept_on_disk_and_random_without_labels(tmp_path, digits):
    data, _ = digits
    kw = dict(epochs=1, seed=5, folder=tmp_path, file_key="k")
    first = feature_net(data.train[:200], data.train_labels[:200], data.test, data.test_labels, **kw)
    assert (tmp_path / "features__k.pt").exists()
    again = feature_net(data.train[:200], data.train_labels[:200], data.test, data.test_labels, **kw)
    assert again.test_accuracy == first.test_accuracy
    assert torch.equal(again.embed(data.test[:20]), first.embed(data.test[:20]))
    unlabeled = feature_net(data.train, None, data.test, None, epochs=1, seed=5)
    assert unlabeled.name == RANDOM and math.isnan(unlabeled.test_accuracy) and "no labels" in unlabeled.describe()


# -- through the CLI ---------------------------------------------------------------------------------
def test_samples_rows_through_the_cli(tmp_path):
    assert main([*TINY, "--out", str(tmp_path), "--tasks", "samples,reconstruction", "--models",
                 "pca,vae,vae-refine,biharmonic",
                 "--set", "model.vae.n_epochs=2", "--set", "model.vae-refine.n_epochs=2"]) == 0
    (run_dir,) = tmp_path.iterdir()
    df = read_results(run_dir / "results.csv")
    df = df[df.task == "samples"]
    ok = df[df.status == "ok"]
    assert set(ok.model) == {"pca", "vae", "vae-refine"}
    assert set(df[df.model == "biharmonic"].status) == {"unsupported"}
    fid_of = ok[ok.metric == "fid"].set_index("model").value
    assert fid_of["vae"] == fid_of["vae-refine"]  # one decoder, one set of samples
    assert ok[ok.model == "vae-refine"].message.str.contains("scored once").all()
    assert set(ok.metric) == {"fid", "kid", "precision", "recall", "density", "coverage", "classes_covered",
                              "label_entropy", "label_kl"}
    assert (ok.n_images == 60).all() and ok.message.str.contains("60 samples vs 60 test images").all()
    assert len(list((run_dir / "checkpoints").glob("features__*.pt"))) == 1
    assert "## samples: fid (lower is better)" in (run_dir / "summary.md").read_text()
    assert (run_dir / "plots" / "digits__tradeoff__recovery-vs-fid.png").is_file()  # recovery mae vs fid
    assert (run_dir / "plots" / "digits__samples__fid__bars.png").is_file()
    assert sorted(p.name for p in (run_dir / "grids" / "samples-side-by-side").iterdir()) == ["d10__s0.png"]


def test_bad_samples_parameters_are_one_line(capsys):
    assert main([*TINY, "--tasks", "samples", "--set", "task.samples.n_samples=3", "--models", "pca"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "n_samples must be at least 6" in err
    assert main([*TINY, "--tasks", "samples", "--set", "task.samples.kid_subsets=0", "--models", "pca"]) == 2
    assert "task.samples.kid_subsets must be a positive integer" in capsys.readouterr().err

