"""Tests of the RBM partition function by AIS and the DBN bound (baselines/rbm_ais.py) against brute
force on tiny models (10 visible x 6 hidden units; a 8-6-4 DBN), where every sum is enumerable.
About two seconds on 2 CPU cores."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from baselines.rbm_ais import (
    binarize_images,
    dbn_log_likelihood_bound,
    paper_schedule,
    rbm_ais_log_z,
    rbm_log_likelihood,
    rbm_log_z_exact,
)
from baselines.rbm_layer import RBMLayer

D, H = 10, 6
TOL = 0.05  # nats: 5x the spread of the AIS estimate over seeds at the settings below (0.01, measured)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run single-threaded


def _layer(d: int, h: int, seed: int, dtype=torch.float32) -> RBMLayer:
    """Random weights of moderate scale: W ~ N(0, 1), biases ~ N(0, 0.5^2)."""
    g = torch.Generator().manual_seed(seed)
    return RBMLayer(torch.randn(h, d, generator=g).to(dtype), 0.5 * torch.randn(d, generator=g).to(dtype),
                    0.5 * torch.randn(h, generator=g).to(dtype))


def _all_states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)  # (2^n, n)


def _brute_log_z(layer: RBMLayer) -> float:
    """log sum over the 2^D visible states of exp(-F(v)), in float64."""
    exact = RBMLayer(*(t.double() for t in layer.state().values()))
    return torch.logsumexp(-exact.free_energy(_all_states(layer.weight.shape[1])), 0).item()


def _ais(layer: RBMLayer, seed: int = 0, **kw):
    kw = {"n_steps": 1000, "n_runs": 1000, **kw}
    return rbm_ais_log_z(**layer.state(), generator=torch.Generator().manual_seed(seed), **kw)


@pytest.fixture(scope="module")
def rbm() -> RBMLayer:
    return _layer(D, H, seed=0)


def test_exact_enumeration_over_either_layer_is_the_brute_force_sum(rbm):
    brute = _brute_log_z(rbm)
    assert rbm_log_z_exact(**rbm.state()) == pytest.approx(brute, abs=1e-9)       # over the 2^6 hidden states
    transposed = RBMLayer(rbm.weight.T.contiguous(), rbm.hidden_bias, rbm.visible_bias)
    assert rbm_log_z_exact(**transposed.state()) == pytest.approx(brute, abs=1e-9)  # H > D: over the visibles


@pytest.mark.parametrize("base", ["model", "data"])
def test_ais_log_z_matches_brute_force(rbm, base):
    mean = torch.linspace(0.1, 0.9, D) if base == "data" else None
    est = _ais(rbm, data_mean=mean)
    brute = _brute_log_z(rbm)
    assert abs(est.log_z - brute) < TOL, (est.log_z, brute, est.log_z_se)
    assert est.log_z_se < TOL / 2      # the reported spread is small, as measured
    assert est.log_w.shape == (1000,) and est.log_w.dtype == torch.float64


def test_log_likelihoods_match_the_exact_ones_and_normalise(rbm):
    brute = _brute_log_z(rbm)
    v = _all_states(D)[torch.tensor([0, 1, 77, 512, 1023])].float()
    est = rbm_log_likelihood(**rbm.state(), v=v, log_z=_ais(rbm).log_z)
    exact = -RBMLayer(*(t.double() for t in rbm.state().values())).free_energy(v.double()) - brute
    assert est.shape == (5,)
    torch.testing.assert_close(est.double(), exact, atol=TOL, rtol=0)
    everything = rbm_log_likelihood(**rbm.state(), v=_all_states(D), log_z=brute)  # float32 params, float64 v
    assert torch.logsumexp(everything.double(), 0).item() == pytest.approx(0.0, abs=1e-4)


def test_more_runs_reduce_the_spread(rbm):
    few = torch.tensor([_ais(rbm, seed=s, n_steps=300, n_runs=10).log_z for s in range(8)])
    many = torch.tensor([_ais(rbm, seed=s, n_steps=300, n_runs=300).log_z for s in range(8)])
    assert many.std() < 0.5 * few.std(), (few.std(), many.std())
    assert (many - _brute_log_z(rbm)).abs().max() < (few - _brute_log_z(rbm)).abs().max()


def test_same_generator_seed_same_estimate(rbm):
    a, b, c = _ais(rbm, seed=3, n_runs=50), _ais(rbm, seed=3, n_runs=50), _ais(rbm, seed=4, n_runs=50)
    assert torch.equal(a.log_w, b.log_w) and a.log_z == b.log_z
    assert not torch.equal(a.log_w, c.log_w)


def test_paper_schedule_is_salakhutdinov_murray_scaled():
    betas = paper_schedule(14500)
    assert betas[0] == 0 and betas[-1] == 1 and len(betas) == 14501 and bool((betas.diff() > 0).all())
    assert betas.diff()[0].item() == pytest.approx(1e-3) and betas.diff()[-1].item() == pytest.approx(1e-5)
    assert len(paper_schedule(100)) == 101


def test_dbn_bounds_lie_below_the_exact_log_likelihood_and_importance_closes_the_gap():
    """8 visible, 6 + 4 hidden: log p(v) = log sum_h1 p(v | h1) exp(-F_2(h1)) / Z_2 over 2^6 states."""
    bottom, top = _layer(8, 6, seed=1, dtype=torch.float64), _layer(6, 4, seed=2, dtype=torch.float64)
    log_z_top = rbm_log_z_exact(**top.state())
    v = _all_states(8)[torch.tensor([0, 5, 100, 255])]
    h1 = _all_states(6)                                                             # (64, 6)
    logits = h1 @ bottom.weight + bottom.visible_bias                               # (64, 8)
    log_p_v_given_h = v @ logits.T - torch.nn.functional.softplus(logits).sum(1)    # (4, 64)
    exact = torch.logsumexp(log_p_v_given_h - top.free_energy(h1) - log_z_top, 1)
    g = torch.Generator().manual_seed(0)
    variational = dbn_log_likelihood_bound(bottom, top, v, log_z_top, generator=g, n_samples=4000)
    importance = dbn_log_likelihood_bound(bottom, top, v, log_z_top, generator=g, n_samples=4000,
                                          kind="importance", batch_size=3)
    assert bool((variational < exact).all()) and bool((variational < importance).all())
    torch.testing.assert_close(importance, exact, atol=TOL, rtol=0)


def test_binarize_images_thresholds_at_zero_on_the_minus_one_one_scale():
    x = torch.tensor([-1.0, -0.2, 0.0, 1e-3, 1.0]).view(1, 1, 1, 5)
    assert binarize_images(x).tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0]]


def test_bad_inputs_explain(rbm):
    with pytest.raises(ValueError, match="must be binary"):
        rbm_log_likelihood(**rbm.state(), v=torch.full((2, D), 0.5), log_z=0.0)
    with pytest.raises(ValueError, match=r"\(N, 10\)"):
        rbm_log_likelihood(**rbm.state(), v=torch.zeros(2, D + 1), log_z=0.0)
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        rbm_ais_log_z(**rbm.state(), generator=None)
    with pytest.raises(ValueError, match="pixel means"):
        _ais(rbm, data_mean=torch.full((D,), 2.0))
    with pytest.raises(ValueError, match="use rbm_ais_log_z"):
        rbm_log_z_exact(torch.zeros(30, 40), torch.zeros(40), torch.zeros(30))
    assert math.isfinite(_ais(rbm, n_steps=10, n_runs=2).log_z)
