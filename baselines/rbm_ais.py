"""Log-likelihood of binary images under a Bernoulli RBM (and a lower bound for a two-layer DBN):
the partition function by annealed importance sampling, Salakhutdinov & Murray, "On the
quantitative analysis of deep belief networks", ICML 2008 (and their ``RBM_AIS`` code).

**The RBM** (:mod:`baselines.rbm_layer`): W (H, D), visible bias b (D,), hidden bias c (H,), binary
v in {0, 1}^D, h in {0, 1}^H, free energy F(v) = -b.v - sum_j softplus((W v + c)_j) and

    log p(v) = -F(v) - log Z,    Z = sum_v exp(-F(v))   (2^D terms: intractable for D = 784).

**AIS** (:func:`rbm_ais_log_z`; Neal 2001). A base-rate RBM with W = 0, hidden bias 0 and visible
bias b_A (the logit of the training pixel means, or the model's own b) has Z_A = 2^H prod_i (1 + e^{b_A,i}).
The weights and biases are annealed linearly in beta, 0 = beta_0 < ... < beta_K = 1:

    log p*_beta(v) = (1 - beta) b_A.v + beta b.v + sum_j softplus(beta (W v + c)_j),

the marginal of the RBM with weights beta W, hidden bias beta c and visible bias (1 - beta) b_A + beta b
(the base's hidden units, with no weights, contribute the constant 2^H). M independent runs start
at v_0 ~ p_A, take one Gibbs sweep v -> h -> v of the intermediate RBM beta_k per step and
accumulate

    log w = sum_{k=1}^{K} log p*_{beta_k}(v_{k-1}) - log p*_{beta_{k-1}}(v_{k-1}),   E[w] = Z / Z_A,

so log Z ~ log Z_A + log mean_m w_m: unbiased in Z, hence a stochastic *under*-estimate of log Z
on average (Jensen), i.e. log-likelihoods -F(v) - log Z that tend to be too high when the chains are
too short. The spread is the delta-method standard error of log mean w,
std(w) / (sqrt(M) mean(w)) (S&M report log(mean w +- 3 std(w) / sqrt(M))). The increments are
accumulated in float64 from their differences (not as differences of large totals).

The beta spacing is S&M's, scaled to ``n_steps``: their 14 500 steps are uniform on [0, 0.5]
(500), [0.5, 0.9] (4000) and [0.9, 1] (10 000), i.e. the step shrinks 40-fold towards the data RBM,
where the distributions change fastest.

**Exact values** (:func:`rbm_log_z_exact`): summing over the smaller layer, e.g. over the hidden
states, log Z = logsumexp_h [c.h + sum_i softplus(b_i + (W^T h)_i)], costs 2^min(D, H) x D H: exact
for the benchmark's RBMs with 10-20 hidden units (and the DBN's top RBM), the oracle of the AIS code.

**DBN** (:func:`dbn_log_likelihood_bound`): for v -> h1 -> h2 with a directed bottom layer
p(v | h1) = prod_i sig(W1^T h1 + b1)_i^{v_i} (...)^{1 - v_i} and the top RBM's marginal
p(h1) = exp(-F_2(h1)) / Z_2, S&M's variational bound with the recognition model
Q(h1 | v) = prod_j sig(W1 v + c1)_j^{h_j} (...):

    log p(v) >= E_Q[log p(v | h1) - F_2(h1)] + H(Q(. | v)) - log Z_2       ("variational", S&M eq. 10)

estimated with S samples h1 ~ Q (the entropy exactly), or the importance-weighted bound
log (1/S) sum_s p(v | h1_s) exp(-F_2(h1_s)) / Q(h1_s | v) - log Z_2 ("importance", tighter, ->
log p(v) as S grows; Burda et al. 2016). Both are lower bounds only in expectation and only as good
as log Z_2 (an underestimate of log Z_2 raises them).

**Measured** (genbench RBMs, default config, fitted on the 4000 embedded 28x28 training digits; AIS
with the binarised training pixel means as base; 1 busy CPU thread; errors against
:func:`rbm_log_z_exact`, 3 seeds):

==========================  ======================  ====================  =====================
RBM (exact log Z)           K = 1000, M = 100       K = 3000, M = 100     K = 10^4, M = 100
==========================  ======================  ====================  =====================
784 x 20 (199.76)           -0.18 .. -0.09 (1.5 s)  -0.12 .. +0.10 (5 s)  -0.05 .. +0.07 (20 s)
784 x 10 (158.25), 1 seed   -0.09                   -0.06                 -0.02
784 x 100 (no exact)        --                      353.08 .. 353.32      353.36 .. 354.57
DBN top, 256 x 20 (186.99)  --                      --                    +0.05 (5 s)
==========================  ======================  ====================  =====================

The reported standard error matched the spread (0.06-0.07 at K = 10^4, 20 hidden units; 0.2-0.6 at
100, where K = 3 x 10^4 gives 353.81 +- 0.16). The model's own visible bias as the base is worse at
short K (-0.87 against -0.14 at K = 1000, 20 hidden). Mean test log-likelihoods of the binarised
digits: -176.2 (10 hidden), -154.7 (20); the DBN (256-20) bounds on 200 test digits: variational
-121.6, importance -111.6 (S = 100), -109.1 (S = 1000); the RBM-20 on those: -150.2.

Randomness: every draw comes from the caller's CPU ``torch.Generator`` (uniforms drawn in blocks
of steps, then moved to the parameters' device); the M runs (or the images x samples) are batched.

Example::

    >>> layer = model.layers_[0]                                   # a fitted baselines.rbm.RBM
    >>> g = torch.Generator().manual_seed(0)
    >>> est = rbm_ais_log_z(**layer.state(), data_mean=binarize_images(x_train).mean(0), generator=g)
    >>> ll = rbm_log_likelihood(**layer.state(), v=binarize_images(x_test), log_z=est.log_z)  # (N,)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from baselines.rbm_layer import RBMLayer

__all__ = ["AISEstimate", "binarize_images", "dbn_log_likelihood_bound", "paper_schedule", "rbm_ais_log_z",
           "rbm_log_likelihood", "rbm_log_z_exact", "stack_log_likelihood", "top_log_z"]

_PAPER_PIECES = ((0.5, 500), (0.9, 4000), (1.0, 10000))  # S&M's beta grid: (end of piece, steps in it)
_DRAW_BLOCK = 64          # AIS steps of uniforms drawn at a time (one host -> device copy per block)
_MAX_EXACT_UNITS = 24     # rbm_log_z_exact enumerates at most 2^24 states
_ENUM_CHUNK = 1 << 12     # states per enumeration batch (4096 x D float64)


@dataclass(frozen=True)
class AISEstimate:
    """``log_z``: the AIS estimate of log Z; ``log_z_se``: its delta-method standard error
    std(w) / (sqrt(M) mean(w)) in nats; ``log_w`` (M,) float64: the runs' log weights
    (log Z = log_z_base + logmeanexp(log_w)); ``log_z_base``: log Z of the base-rate RBM."""

    log_z: float
    log_z_se: float
    log_w: Tensor
    log_z_base: float


# ---------------------------------------------------------------------------- inputs
def binarize_images(x: Tensor) -> Tensor:
    """Images (N, C, H, W) in [-1, 1] -> binary visibles (N, C*H*W): 1 where x > 0 (intensity > 0.5)."""
    if x.dim() != 4:
        raise ValueError(f"binarize_images expects images (N, C, H, W), got shape {tuple(x.shape)}")
    return (x.flatten(1) > 0).to(x.dtype if x.is_floating_point() else torch.float32)


def _check_params(weight: Tensor, visible_bias: Tensor, hidden_bias: Tensor) -> tuple[int, int]:
    if weight.dim() != 2 or visible_bias.shape != (weight.shape[1],) or hidden_bias.shape != (weight.shape[0],):
        raise ValueError(f"RBM parameters must be weight (H, D), visible_bias (D,), hidden_bias (H,); got "
                         f"{tuple(weight.shape)}, {tuple(visible_bias.shape)}, {tuple(hidden_bias.shape)}")
    return weight.shape[0], weight.shape[1]


def _check_binary(v: Tensor, d: int, what: str = "v") -> None:
    if v.dim() != 2 or v.shape[1] != d:
        raise ValueError(f"{what} must be binary visibles (N, {d}), got shape {tuple(v.shape)} "
                         f"(images: use binarize_images)")
    if not bool(((v == 0) | (v == 1)).all()):
        raise ValueError(f"{what} must be binary (0/1): the RBM's likelihood is a distribution over binary "
                         f"vectors (threshold the intensities first, e.g. binarize_images)")


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(f"pass a CPU torch.Generator (its draws are moved to the parameters' device), "
                         f"got {generator!r}")


# ---------------------------------------------------------------------------- the RBM
def rbm_log_likelihood(weight: Tensor, visible_bias: Tensor, hidden_bias: Tensor, v: Tensor,
                       log_z: float) -> Tensor:
    """log p(v) = -F(v) - log Z per binary vector, v (N, D) -> (N,) in nats (same dtype as the weights)."""
    _, d = _check_params(weight, visible_bias, hidden_bias)
    _check_binary(v, d)
    layer = RBMLayer(weight, visible_bias, hidden_bias)
    return -layer.free_energy(v.to(weight)) - log_z


def rbm_log_z_exact(weight: Tensor, visible_bias: Tensor, hidden_bias: Tensor) -> float:
    """log Z by enumerating the 2^min(D, H) states of the smaller layer (the other summed out
    analytically), in float64; raises when min(D, H) > 24. Measured on one busy CPU thread: 784 x 20
    about 30 s, 256 x 20 (a DBN's top RBM) 8 s, 784 x 10 instant."""
    n_hidden, d = _check_params(weight, visible_bias, hidden_bias)
    if min(n_hidden, d) > _MAX_EXACT_UNITS:
        raise ValueError(f"exact log Z enumerates 2^min(D, H) states; D = {d}, H = {n_hidden} exceeds "
                         f"2^{_MAX_EXACT_UNITS}: use rbm_ais_log_z")
    w, b, c = (t.double() for t in (weight, visible_bias, hidden_bias))
    if n_hidden > d:  # sum over v of exp(-F(v)) instead: the same formula with the layers swapped
        w, b, c = w.T, c, b
    terms = [_log_unnormalised_hidden(w, b, c, states) for states in _states(w.shape[0], w.device)]
    return torch.logsumexp(torch.cat(terms), 0).item()


def _states(n: int, device: torch.device):
    """All 2^n binary vectors (float64), in chunks of at most ``_ENUM_CHUNK`` rows."""
    bits = 2 ** torch.arange(n, device=device)
    for start in range(0, 2 ** n, _ENUM_CHUNK):
        idx = torch.arange(start, min(start + _ENUM_CHUNK, 2 ** n), device=device)
        yield ((idx[:, None] & bits) > 0).double()


def _log_unnormalised_hidden(w: Tensor, b: Tensor, c: Tensor, h: Tensor) -> Tensor:
    """log sum_v exp(-E(v, h)) = c.h + sum_i softplus(b_i + (W^T h)_i), (S,)."""
    return h @ c + F.softplus(h @ w + b).sum(1)


def paper_schedule(n_steps: int) -> Tensor:
    """S&M's beta grid scaled to ``n_steps`` steps (n_steps + 1 values from 0 to 1, float64): the
    fractions 500 / 4000 / 10 000 of 14 500 steps uniform on [0, 0.5], [0.5, 0.9], [0.9, 1]."""
    if n_steps < 3:
        raise ValueError(f"the AIS schedule needs n_steps >= 3, got {n_steps}")
    total = sum(k for _, k in _PAPER_PIECES)
    counts = [max(1, round(n_steps * k / total)) for _, k in _PAPER_PIECES]
    counts[-1] = n_steps - sum(counts[:-1])
    pieces, start = [], 0.0
    for (end, _), k in zip(_PAPER_PIECES, counts):
        pieces.append(torch.linspace(start, end, k + 1, dtype=torch.float64)[:-1])
        start = end
    return torch.cat([*pieces, torch.ones(1, dtype=torch.float64)])


def rbm_ais_log_z(weight: Tensor, visible_bias: Tensor, hidden_bias: Tensor, *, generator: torch.Generator,
                  n_steps: int = 10000, n_runs: int = 100, data_mean: Tensor | None = None) -> AISEstimate:
    """AIS estimate of log Z (module docstring) with ``n_runs`` = M parallel runs and ``n_steps`` = K
    Gibbs transitions on S&M's beta grid (:func:`paper_schedule`). The base-rate RBM's visible bias
    is logit(``data_mean``) (the training pixel means in [0, 1], clipped to [1e-3, 1 - 1e-3]; S&M's
    choice) or, without it, the model's own visible bias. Runs on the parameters' device.

    Defaults (module docstring, "Measured"): K = 10^4 (S&M used 14 500) and M = 100 are within
    0.1 nats of the exact log Z on RBMs of the embedded digits with 10-20 hidden units, in 5-20 s
    on one CPU thread; K = 1000 (within ~0.2 nats, 1.5 s) suits a quick run. Cost: K x (2 M D H
    multiply-adds + M (D + H) uniforms), the uniforms dominating on the CPU.
    """
    n_hidden, _ = _check_params(weight, visible_bias, hidden_bias)
    _check_generator(generator)
    if n_runs < 1:
        raise ValueError(f"n_runs must be >= 1, got {n_runs}")
    base = _base_bias(visible_bias, data_mean)
    log_z_base = (F.softplus(base.double()).sum() + n_hidden * math.log(2.0)).item()
    betas = paper_schedule(n_steps).tolist()
    with torch.no_grad():
        log_w = _anneal(weight, visible_bias, hidden_bias, base, betas, n_runs, generator)
    if not bool(torch.isfinite(log_w).all()):
        raise FloatingPointError("AIS log weights are NaN or infinite: check the RBM's parameters for NaN")
    log_mean = torch.logsumexp(log_w, 0) - math.log(n_runs)
    rel = (log_w - log_mean).exp()  # w / mean(w)
    se = (rel.std(unbiased=True) / math.sqrt(n_runs)).item() if n_runs > 1 else float("inf")
    return AISEstimate(log_z=log_z_base + log_mean.item(), log_z_se=se, log_w=log_w.cpu(), log_z_base=log_z_base)


def _base_bias(visible_bias: Tensor, data_mean: Tensor | None) -> Tensor:
    if data_mean is None:
        return visible_bias.detach()
    if data_mean.shape != visible_bias.shape:
        raise ValueError(f"data_mean must be the pixel means (D,) = {tuple(visible_bias.shape)}, "
                         f"got {tuple(data_mean.shape)}")
    if not bool(((data_mean >= 0) & (data_mean <= 1)).all()):
        raise ValueError("data_mean must be pixel means in [0, 1] (the binary visibles' scale)")
    return torch.logit(data_mean.to(visible_bias).clamp(1e-3, 1 - 1e-3))


def _anneal(w: Tensor, b: Tensor, c: Tensor, base: Tensor, betas: list[float], m: int,
            generator: torch.Generator) -> Tensor:
    """The M runs' log weights (M,) float64 along ``betas``."""
    (n_hidden, _), dev, dtype = w.shape, w.device, w.dtype
    # (b - b_A).v rides along as an extra hidden unit of the up product: one matmul per step
    w_up = torch.cat([w, (b - base)[None]]).T                               # (D, H + 1)
    c_up = torch.cat([c, c.new_zeros(1)])
    uniforms = _Uniforms(generator, m, n_hidden + w.shape[1], dev, dtype)
    v, h = torch.empty(m, w.shape[1], device=dev, dtype=dtype), torch.empty(m, n_hidden, device=dev, dtype=dtype)
    torch.lt(uniforms.next()[:, n_hidden:], torch.sigmoid(base), out=v)   # v_0 ~ base-rate RBM, (M, D)
    log_w = torch.zeros(m, dtype=torch.float64, device=dev)
    for k in range(1, len(betas)):
        lo, hi = betas[k - 1], betas[k]
        act = torch.addmm(c_up, v, w_up)                                    # (M, H + 1): W v + c, (b - b_A).v
        a, vdb = act[:, :n_hidden].double(), act[:, n_hidden].double()
        log_w += (hi - lo) * vdb + (F.softplus(hi * a) - F.softplus(lo * a)).sum(1)
        if k < len(betas) - 1:                                               # Gibbs sweep leaving p_hi invariant
            u = uniforms.next()
            torch.lt(u[:, :n_hidden], act[:, :n_hidden].mul_(hi).sigmoid_(), out=h)
            logits = torch.addmm((1 - hi) * base + hi * b, h, w, alpha=hi)  # (M, D)
            torch.lt(u[:, n_hidden:], logits.sigmoid_(), out=v)
    return log_w


class _Uniforms:
    """(M, n) uniforms per step from a CPU generator, drawn ``_DRAW_BLOCK`` steps at a time and moved."""

    def __init__(self, generator: torch.Generator, m: int, n: int, device: torch.device, dtype: torch.dtype):
        self.g, self.shape, self.device, self.dtype = generator, (m, n), device, dtype
        self.block, self.i = None, _DRAW_BLOCK

    def next(self) -> Tensor:
        if self.i == _DRAW_BLOCK:
            self.block = torch.rand(_DRAW_BLOCK, *self.shape, generator=self.g).to(self.device, self.dtype)
            self.i = 0
        self.i += 1
        return self.block[self.i - 1]


# ---------------------------------------------------------------------------- the DBN
def dbn_log_likelihood_bound(bottom: RBMLayer, top: RBMLayer, v: Tensor, log_z_top: float, *,
                             generator: torch.Generator, n_samples: int = 100,
                             kind: Literal["variational", "importance"] = "variational",
                             batch_size: int = 100) -> Tensor:
    """Lower bound on log p(v) of a two-layer DBN (module docstring), v (N, D) binary -> (N,) float64.

    ``bottom``: layer 1 (W1 (H1, D), b1 (D,), c1 (H1,)) -- p(v | h1) uses W1, b1 and the recognition
    model Q(h1 | v) uses W1, c1; ``top``: the top RBM over h1 (W2 (H2, H1), b2 (H1,), c2 (H2,)) with
    log partition function ``log_z_top`` (:func:`rbm_log_z_exact` when H2 <= 24, else
    :func:`rbm_ais_log_z`). ``n_samples`` S draws h1 ~ Q per image; ``kind``: "variational" (S&M's
    bound, sample mean of its integrand) or "importance" (log mean of the importance weights).
    ``batch_size`` images at a time (S x batch_size draws in flight).
    """
    _, d = _check_params(bottom.weight, bottom.visible_bias, bottom.hidden_bias)
    _check_params(top.weight, top.visible_bias, top.hidden_bias)
    if top.weight.shape[1] != bottom.weight.shape[0]:
        raise ValueError(f"the top RBM's visibles ({top.weight.shape[1]}) must be the bottom layer's hidden "
                         f"units ({bottom.weight.shape[0]})")
    if kind not in ("variational", "importance"):
        raise ValueError(f"kind must be 'variational' or 'importance', got {kind!r}")
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"n_samples and batch_size must be >= 1, got {n_samples}, {batch_size}")
    _check_binary(v, d)
    _check_generator(generator)
    with torch.no_grad():
        parts = [_dbn_batch(bottom, top, v[i:i + batch_size].to(bottom.weight), n_samples, kind, generator)
                 for i in range(0, len(v), batch_size)]
    return torch.cat(parts) - log_z_top


def _dbn_batch(bottom: RBMLayer, top: RBMLayer, v: Tensor, s: int, kind: str,
               generator: torch.Generator) -> Tensor:
    """The bound plus log Z_2 for a batch v (B, D): (B,) float64."""
    q = bottom.hidden_probs(v)                                                  # (B, H1)
    u = torch.rand(s, *q.shape, generator=generator).to(q)
    h = (u < q).to(q.dtype)                                                     # (S, B, H1)
    logits = h @ bottom.weight + bottom.visible_bias                            # (S, B, D)
    log_p_v = (v * logits - F.softplus(logits)).sum(-1).double()               # log p(v | h1)
    log_p_h = -top.free_energy(h.flatten(0, 1)).view(s, -1).double()            # log p*(h1)
    log_q_of = torch.distributions.Bernoulli(probs=q.double().clamp(1e-12, 1 - 1e-12))
    if kind == "variational":
        return (log_p_v + log_p_h).mean(0) + log_q_of.entropy().sum(-1)
    log_w = log_p_v + log_p_h - log_q_of.log_prob(h.double()).sum(-1)         # (S, B)
    return torch.logsumexp(log_w, 0) - math.log(s)


# ---------------------------------------------------------------------------- a fitted stack
def stack_log_likelihood(layers: list[RBMLayer], v: Tensor, log_z_top: float, *, generator: torch.Generator,
                         n_samples: int = 100) -> Tensor:
    """log p(v) of binary vectors v (N, D) under a fitted stack (:class:`baselines.rbm.RBM`: one layer,
    exact given ``log_z_top``; :class:`baselines.dbn.DBN`: two layers, the importance-weighted lower
    bound of :func:`dbn_log_likelihood_bound` with ``n_samples`` samples), (N,) float64 in nats.
    ``log_z_top``: log Z of the top RBM (:func:`top_log_z`)."""
    if len(layers) == 1:
        return rbm_log_likelihood(**layers[0].state(), v=v.to(layers[0].weight), log_z=log_z_top).double()
    if len(layers) == 2:
        return dbn_log_likelihood_bound(layers[0], layers[1], v.to(layers[0].weight), log_z_top,
                                        generator=generator, n_samples=n_samples, kind="importance")
    raise ValueError(f"stack_log_likelihood supports 1 (RBM) or 2 (DBN) layers, got {len(layers)}")


def top_log_z(layers: list[RBMLayer], pixel_mean: Tensor, *, generator: torch.Generator, n_steps: int = 10000,
              n_runs: int = 100) -> AISEstimate:
    """AIS log Z of the top RBM of a stack, its base rate from the training pixel means ``pixel_mean``
    (D,) in [0, 1] passed up the lower layers (an approximation of the top layer's input means: any
    base is unbiased, a close one is efficient)."""
    mean = pixel_mean.flatten().to(layers[0].weight)
    for layer in layers[:-1]:
        mean = layer.hidden_probs(mean.unsqueeze(0)).squeeze(0)
    return rbm_ais_log_z(**layers[-1].state(), generator=generator, n_steps=n_steps, n_runs=n_runs,
                         data_mean=mean.clamp(0, 1))
