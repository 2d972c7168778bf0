"""Property tests of the observation operators and the shared likelihood (STYLE.md 2 and 8)."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.operators import (BlockMask, Identity, Observations, Operator, PixelMask, RandomProjection,
                                gaussian_nll)
from genbench.registry import available_operators

SHAPE = (1, 8, 8)


def _images(n: int = 6, shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _all_ops(shape: tuple[int, int, int] = SHAPE) -> list:
    return [Identity(seed=1), PixelMask(p=0.5, seed=1), PixelMask(p=0.3, cell=3, seed=1),
            BlockMask(size=4, seed=1), RandomProjection(k=20, image_shape=shape, seed=1)]


@pytest.mark.parametrize("op", _all_ops(), ids=lambda op: repr(op))
def test_observe_shapes_and_naive_inverse(op):
    x = _images()
    obs = op.observe(x)
    assert isinstance(obs, Observations) and len(obs) == len(x) and obs.image_shape == SHAPE
    assert obs.naive_inverse().shape == x.shape
    assert torch.allclose(obs.apply(x), obs.y)  # observing is applying A to the clean images
    sub = obs[1:3]
    assert len(sub) == 2 and torch.equal(sub.y, obs.y[1:3])
    if obs.mask is not None:
        assert torch.equal(sub.mask, obs.mask[1:3])


@pytest.mark.parametrize("op", _all_ops(), ids=lambda op: repr(op))
def test_same_seed_same_observations_and_streams_differ(op):
    x = _images()
    first = op.observe(x)
    op.reset()
    again = op.observe(x)
    assert torch.equal(first.y, again.y)
    twin = type(op)(**{k: v for k, v in op.describe().items() if k != "name"},
                    **({"image_shape": SHAPE} if isinstance(op, RandomProjection) else {}))
    assert torch.equal(twin.observe(x).y, first.y)
    if first.mask is not None:
        op.reset(stream=2)
        assert not torch.equal(op.observe(x).mask, first.mask)


@pytest.mark.parametrize("op", [PixelMask(p=0.5, seed=3), PixelMask(p=0.5, cell=3, seed=3),
                                BlockMask(size=3, seed=3)], ids=repr)
def test_masks_keep_observed_entries_and_zero_the_rest(op):
    x = _images(20)
    obs = op.observe(x)
    mask = obs.mask
    assert mask.shape == (20, 1, 8, 8) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(obs.y * mask, x * mask)           # observed entries untouched
    assert torch.all(obs.y[mask.expand_as(x) == 0] == 0)  # occluded entries hidden
    assert torch.equal(obs.occluded(), 1 - mask)
    assert torch.equal(obs.naive_inverse(), x * mask)     # zero-fill


def test_pixel_mask_fraction_and_cells():
    mask = PixelMask(p=0.7, seed=0).observe(_images(400)).mask
    assert abs((1 - mask).mean().item() - 0.7) < 0.02
    cells = PixelMask(p=0.5, cell=4, seed=0).observe(_images(50)).mask
    blocks = cells.unfold(2, 4, 4).unfold(3, 4, 4)  # (N, 1, 2, 2, 4, 4): each 4x4 cell constant
    assert torch.all(blocks.amax((-1, -2)) == blocks.amin((-1, -2)))


def test_block_mask_is_one_square_of_the_given_size():
    mask = BlockMask(size=5, seed=0).observe(_images(30)).mask
    hidden = (1 - mask)[:, 0]
    assert torch.all(hidden.sum((1, 2)) == 25)
    rows, cols = hidden.any(2), hidden.any(1)
    assert torch.all(rows.sum(1) == 5) and torch.all(cols.sum(1) == 5)
    positions = {tuple(r.nonzero()[0].tolist() + c.nonzero()[0].tolist()) for r, c in zip(rows, cols)}
    assert len(positions) > 5  # uniform random positions, not a fixed one


def _linear_ops() -> list[tuple]:
    """(operator, image shape): every registered operator's example on 8x8 grey and RGB images,
    and the variants built here."""
    cases = [(spec.example(shape, 3), shape) for spec in available_operators().values()
             for shape in (SHAPE, (3, 8, 8))]
    return cases + [(PixelMask(p=0.3, cell=3, seed=1), SHAPE),
                    (RandomProjection(k=30, image_shape=(3, 8, 8), seed=0), (3, 8, 8))]


@pytest.mark.parametrize("op, shape", _linear_ops(), ids=lambda v: repr(v))
def test_adjoint_property(op, shape):
    """<A x, y> = <x, A^T y> for random x and y, each image with its own mask (deepinv's check)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, *shape, generator=g)
    mask = op.draw_mask(5, shape)
    ax = op.apply(x, mask)
    y = torch.randn(ax.shape, generator=g)
    adj = op.adjoint(y, mask)
    assert adj.shape == x.shape
    torch.testing.assert_close((ax * y).sum(), (x * adj).sum(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("op", _all_ops(), ids=lambda op: repr(op))
def test_naive_inverse_is_the_adjoint(op):
    obs = op.observe(_images())
    assert torch.equal(obs.naive_inverse(), op.adjoint(obs.y, obs.mask))


def test_masks_need_their_mask():
    y = _images()
    for op in (PixelMask(p=0.5), BlockMask(size=3)):
        for call in (op.apply, op.adjoint):
            with pytest.raises(ValueError, match="needs the batch's mask"):
                call(y, None)
    with pytest.raises(NotImplementedError, match="no adjoint"):
        Operator().adjoint(y)


class _NoisyProjection(RandomProjection):
    """Test double: a projection with Gaussian measurement noise of std 0.1 (the noise hook)."""

    name = "noisy-projection"

    def noise(self, y: torch.Tensor) -> torch.Tensor:
        eps = torch.randn(y.shape, generator=self._generator, device=self._host)
        return y + 0.1 * eps.to(y.device)


def test_noise_hook_observe_is_apply_plus_noise():
    x = _images(50)
    for op in _all_ops():  # the built-ins are noiseless: noise returns its input itself
        y = op.apply(x, op.draw_mask(len(x), SHAPE))
        assert op.noise(y) is y
    noisy = _NoisyProjection(k=20, image_shape=SHAPE, seed=4)
    noisy.reset()
    obs = noisy.observe(x)
    residual = obs.y - obs.apply(x)  # apply stays the noiseless A the likelihood compares with y
    assert 0.08 < residual.std().item() < 0.12
    noisy.reset()
    assert torch.equal(noisy.observe(x).y, obs.y)  # the operator's own generator: reset replays it
    assert not torch.equal(noisy.observe(x).y, obs.y)  # and the next observation draws fresh noise
    state = torch.get_rng_state()
    noisy.observe(x)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched


def test_projection_scaling():
    op = RandomProjection(k=30, image_shape=(3, 8, 8), seed=0)
    x = _images(4, (3, 8, 8))
    big = RandomProjection(k=256, image_shape=(1, 16, 16), seed=0)
    v = torch.randn(500, 1, 16, 16, generator=torch.Generator().manual_seed(123))  # not the seed of A
    ratio = big.apply(v).pow(2).sum(1) / v.flatten(1).pow(2).sum(1)
    assert abs(ratio.mean().item() - 1) < 0.05  # E||A v||^2 = ||v||^2
    assert op.observe(x).y.shape == (4, 30)


def test_projection_matrix_shared_by_splits():
    op = RandomProjection(k=10, image_shape=SHAPE, seed=5)
    before = op.matrix.clone()
    op.reset(stream=2)
    op.observe(_images())
    assert torch.equal(op.matrix, before)


def test_gaussian_nll_matches_formula_and_ignores_occluded_entries():
    x, x_hat = _images(5), _images(5, seed=1)
    sigma = 0.3
    ident = Identity().observe(x)
    expected = (x - x_hat).pow(2).flatten(1).sum(1) / (2 * sigma**2)
    assert torch.allclose(gaussian_nll(ident, x_hat, sigma), expected)
    obs = PixelMask(p=0.5, seed=0).observe(x)
    changed = x_hat + 5 * obs.occluded()  # anything in the occluded entries
    assert torch.allclose(gaussian_nll(obs, x_hat, sigma), gaussian_nll(obs, changed, sigma))
    assert torch.all(gaussian_nll(obs, x, sigma) == 0)
    proj = RandomProjection(k=12, image_shape=SHAPE, seed=0).observe(x)
    assert torch.allclose(gaussian_nll(proj, x, sigma), torch.zeros(5), atol=1e-10)


@pytest.mark.parametrize("make, match", [
    (lambda: PixelMask(p=0.0), "must be in \\(0, 1\\)"),
    (lambda: PixelMask(p=1.0), "must be in \\(0, 1\\)"),
    (lambda: PixelMask(p=0.5, cell=0), "cell size"),
    (lambda: BlockMask(size=0), "block size"),
    (lambda: RandomProjection(k=0, image_shape=SHAPE), "K must be in 1..64"),
    (lambda: RandomProjection(k=65, image_shape=SHAPE), "K must be in 1..64"),
])
def test_bad_parameters_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_images_raise_clear_errors():
    with pytest.raises(ValueError, match="does not fit"):
        BlockMask(size=9).observe(_images())
    with pytest.raises(ValueError, match="was built for images"):
        RandomProjection(k=5, image_shape=(1, 16, 16)).observe(_images())
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Identity().observe(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="float"):
        Identity().observe(torch.zeros(1, 1, 8, 8, dtype=torch.long))


def test_n_observed():
    x = _images(10)
    assert Identity().observe(x).n_observed == 64
    assert RandomProjection(k=7, image_shape=SHAPE).observe(x).n_observed == 7
    obs = PixelMask(p=0.5, seed=0).observe(x)
    assert obs.n_observed == round(obs.mask.sum().item() / 10)
    assert math.isclose(obs.occluded().mean().item(), 1 - obs.mask.mean().item(), abs_tol=1e-6)
