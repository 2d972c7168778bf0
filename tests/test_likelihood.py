"""The likelihood task and the out-of-domain metrics: oracle and null tests, the CLI, unsupported rows."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.rbm_ais import binarize_images, rbm_log_z_exact
from genbench.cli import main
from genbench.data import DataConfig, load_data
from genbench.ood import OOD_AUPR, OOD_AUROC, ood_scores
from genbench.operators import Identity
from genbench.registry import get_model
from genbench.results import read_results

TINY = ["--dataset", "digits", "--set", "data.n_train=120", "--set", "data.n_test=30", "--set", "data.n_negative=20",
        "--set", "task.likelihood.n_images=10", "--set", "task.likelihood.steps=10", "--set",
        "task.likelihood.chains=2", "--set", "task.likelihood.bdmc_images=3", "--set", "task.likelihood.iwae_k=5"]


def _run(tmp_path, *args):
    assert main([*TINY, "--out", str(tmp_path), "--tasks", "likelihood", *args]) in (0, 1)
    (run_dir,) = tmp_path.iterdir()
    return run_dir, read_results(run_dir / "results.csv")


def test_ood_auroc_oracle_and_null():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(200, generator=g)
    assert ood_scores(a, a + 2)[OOD_AUROC] == 1.0 and ood_scores(a, a + 2)[OOD_AUPR] == pytest.approx(1.0)
    assert ood_scores(a + 2, a)[OOD_AUROC] == 0.0  # ranks the wrong way: below chance, not hidden
    same = ood_scores(torch.rand(2000, generator=g), torch.rand(2000, generator=g))
    assert same[OOD_AUROC] == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="non-finite"):
        ood_scores(a, torch.tensor([math.nan]))


def test_pca_nll_is_the_exact_ppca_density(tmp_path):
    run_dir, df = _run(tmp_path, "--models", "pca", "--latent-dims", "4")
    ok = df[df.status == "ok"].set_index(["split", "metric"]).value
    # the oracle, independently: refit the same PCA (exact SVD: deterministic) and evaluate the full covariance
    data = load_data(DataConfig(name="digits", n_train=120, n_test=30, n_negative=20))
    pca = get_model("pca").build(latent_dim=4).fit(Identity().observe(data.train))
    s2 = float(pca.noise_variance_)
    w = pca.components_.T * (pca.explained_variance_ - s2).sqrt()
    cov = w @ w.T + s2 * torch.eye(w.shape[0], dtype=w.dtype)
    mvn = torch.distributions.MultivariateNormal(pca.mean_, covariance_matrix=cov)
    for split in ("train", "test", "negative"):
        x = getattr(data, split)[:10].double().flatten(1)
        assert ok[split, "nll"] == pytest.approx(float(-mvn.log_prob(x).mean()), rel=1e-6), split
        d = x.shape[1]
        assert ok[split, "bpd"] == pytest.approx((ok[split, "nll"] + d * math.log(127.5)) / (d * math.log(2)))
    assert ok["train", "nll"] < ok["test", "nll"] < ok["negative", "nll"]  # overfits a little; faces are unlikely
    assert ok["negative", OOD_AUROC] > 0.5  # better than chance (0.62 here: tiny 8x8 faces are digit-like)
    iwae = df[(df.metric == "iwae_nll")]
    assert set(iwae.status) == {"unsupported"} and iwae.message.str.contains("exact").all()


def test_decoder_models_get_ais_and_bdmc_rows_and_others_say_why(tmp_path):
    run_dir, df = _run(tmp_path, "--models", "abp,rbm,biharmonic", "--dry-run")
    abp = df[df.model == "abp"].set_index(["split", "metric"])
    for split in ("train", "test", "negative"):
        assert abp.loc[(split, "nll"), "status"] == "ok" and math.isfinite(abp.loc[(split, "nll"), "value"])
    assert abp.loc[("simulated", "bdmc_gap"), "status"] == "ok"
    assert abp.loc[("test", "iwae_nll"), "status"] == "unsupported"
    rbm = df[df.model == "rbm"].set_index(["split", "metric"])
    assert rbm.loc[("test", "binary_nll"), "status"] == "ok"
    continuous = rbm[rbm.index.get_level_values("metric").isin(["nll", "bpd", "iwae_nll", "bdmc_gap"])]
    assert set(continuous.status) == {"unsupported"} and continuous.message.str.contains("binary").all()
    assert abp.loc[("test", "binary_nll"), "status"] == "unsupported"
    assert set(df[df.model == "biharmonic"].status) == {"unsupported"}
    assert "## likelihood: nll (lower is better)" in (run_dir / "summary.md").read_text()


def test_a_dry_run_caps_the_task_cost_but_keeps_smaller_settings(tmp_path):
    """--dry-run is a smoke test: the preset's 1000 annealing steps and 1000 samples become a few; a value the
    user set below the cap stays, and the capped values are what the cell's config hash and rows record."""
    from genbench.registry import get_task

    lik = get_task("likelihood")({"steps": 1000, "chains": 1}, dry_run=True)
    assert lik.params["steps"] == 10 and lik.params["chains"] == 1 and lik.params["n_images"] == 16
    assert get_task("likelihood")({"steps": 1000}).params["steps"] == 1000
    assert get_task("samples")({}, dry_run=True).params["n_samples"] == 64
    with pytest.raises(ValueError, match="positive integer"):  # a bad value is refused, not capped away
        get_task("likelihood")({"steps": -3}, dry_run=True).variants((1, 8, 8))
    # end to end: asking 1000 steps in a dry run is the run asked with the cap (same cell hash, same numbers)
    _, asked = _run(tmp_path / "a", "--models", "abp", "--latent-dims", "2", "--dry-run", "--set",
                    "task.likelihood.steps=1000")
    _, capped = _run(tmp_path / "b", "--models", "abp", "--latent-dims", "2", "--dry-run", "--set",
                     "task.likelihood.steps=10")
    assert asked.config_hash.tolist() == capped.config_hash.tolist()
    assert asked.value.tolist() == pytest.approx(capped.value.tolist(), nan_ok=True, rel=0, abs=0)


def test_bad_likelihood_parameters_are_one_line(capsys):
    assert main([*TINY, "--tasks", "likelihood", "--set", "task.likelihood.steps=0", "--models", "pca"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "task.likelihood.steps must be a positive integer" in err


def test_the_vae_iwae_bound_does_not_beat_ais_and_a_shared_fit_has_one_density(tmp_path):
    _, df = _run(tmp_path, "--models", "vae,vae-refine", "--dry-run", "--set", "task.likelihood.iwae_k=20")
    ok = df[df.status == "ok"].set_index(["model", "split", "metric"])
    for split in ("train", "test", "negative"):
        # both are stochastic lower bounds on log p; the encoder's proposal should be the looser one.
        # (a one-step VAE: AIS's 10 steps already beat 20 importance samples by a wide margin)
        assert ok.value["vae", split, "iwae_nll"] >= ok.value["vae", split, "nll"], split
    # vae-refine is the VAE's fit with another inference: the same density, estimated once
    assert ok.loc["vae-refine"].value.to_dict() == ok.loc["vae"].value.to_dict()
    assert ok.loc["vae-refine"].message.str.contains("estimated once").all()
    assert not ok.loc["vae"].message.str.contains("estimated once").any()


def test_likelihood_numbers_do_not_depend_on_which_cell_of_a_fit_runs_first(tmp_path):
    """The estimate is seeded by the fit: vae-refine alone gives vae's numbers (as after a resume)."""
    _, both = _run(tmp_path / "a", "--models", "vae,vae-refine", "--dry-run")
    _, alone = _run(tmp_path / "b", "--models", "vae-refine", "--dry-run")
    key = ["split", "metric"]
    first = both[(both.model == "vae") & (both.status == "ok")].set_index(key).value
    assert alone[alone.status == "ok"].set_index(key).value.to_dict() == first.to_dict()


def _checkpoint(run_dir, name):
    (path,) = (run_dir / "checkpoints").glob(f"{name}__*.pt")
    return get_model(name).cls.load(path)


def _exact_dbn_log_p(bottom, top, v):
    """log p(v) of a two-layer DBN by enumerating its 2^H1 first-layer states (H1 small)."""
    h1 = torch.tensor([[(i >> j) & 1 for j in range(bottom.weight.shape[0])]
                       for i in range(2 ** bottom.weight.shape[0])], dtype=torch.float64)
    log_p_h = -top.free_energy(h1.to(top.weight)).double() - rbm_log_z_exact(**top.state())   # (S,)
    logits = (h1.to(bottom.weight) @ bottom.weight + bottom.visible_bias).double()               # (S, D)
    log_p_v = v.double() @ logits.T - torch.nn.functional.softplus(logits).sum(1)                # (N, S)
    return torch.logsumexp(log_p_v + log_p_h, 1)


def test_binary_models_log_likelihood_matches_enumeration(tmp_path):
    """RBM: binary_nll = -(-F(v) - log Z) with log Z by AIS, against log Z by enumeration; DBN: its
    importance bound on nll is above the exact value (enumerated over 2^8 first-layer states) and near it."""
    run_dir, df = _run(tmp_path, "--models", "rbm,dbn", "--latent-dims", "4", "--set", "model.rbm.n_epochs=5",
                       "--set", "model.dbn.n_epochs=5", "--set", "model.dbn.hidden_1=8", "--set",
                       "task.likelihood.rbm_steps=3000", "--set", "task.likelihood.dbn_samples=200")
    ok = df[df.status == "ok"].set_index(["model", "split", "metric"]).value
    data = load_data(DataConfig(name="digits", n_train=120, n_test=30, n_negative=20))
    rbm, dbn = _checkpoint(run_dir, "rbm"), _checkpoint(run_dir, "dbn")
    for split in ("train", "test", "negative"):
        v = binarize_images(getattr(data, split)[:10])
        (layer,) = rbm.layers_
        exact = float((layer.free_energy(v) + rbm_log_z_exact(**layer.state())).mean())
        assert ok["rbm", split, "binary_nll"] == pytest.approx(exact, abs=0.1), split
        exact_dbn = float(-_exact_dbn_log_p(*dbn.layers_, v).mean())
        assert exact_dbn - 0.1 <= ok["dbn", split, "binary_nll"] <= exact_dbn + 3.0, split
    assert ok["rbm", "negative", OOD_AUROC] > 0.5
