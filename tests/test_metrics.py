"""Oracle, null and batching tests for genbench.metrics."""

import math

import pytest
import torch

from genbench.metrics import MAE, MSE, PIXEL_METRICS, PSNR, MetricAccumulator, score


def _images(n: int = 7, c: int = 2, h: int = 5, w: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g) * 2 - 1
    x_hat = (x + 0.3 * torch.randn(n, c, h, w, generator=g)).clamp(-1, 1)
    return x, x_hat


def _mask(n: int = 7, h: int = 5, w: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, h, w, generator=g) < 0.4  # (N, 1, H, W) bool, shared by the channels


def test_names():
    assert PIXEL_METRICS == ("mae", "mse", "psnr")


def test_oracle_scores_zero_error_and_100db():
    x, _ = _images()
    assert score(x, x.clone()) == {MAE: 0.0, MSE: 0.0, PSNR: 100.0}


def test_opposite_extremes_score_one_and_0db():
    x = -torch.ones(3, 1, 4, 4)
    out = score(x, torch.ones_like(x))
    assert out[MAE] == 1.0 and out[MSE] == 1.0 and out[PSNR] == 0.0


def test_mean_image_baseline_known_value():
    # Two 1x1x2 images, pixels (0..1 scale): a = [0, 1], b = [1, 1]; the mean image is [0.5, 1].
    # Errors of the mean image: a -> [0.5, 0], b -> [0.5, 0].  mae = 1/4, mse = (0.25 + 0.25) / 4 = 1/8,
    # per-image mse = 1/8 -> psnr = 10 log10(8).
    x01 = torch.tensor([[[[0.0, 1.0]]], [[[1.0, 1.0]]]])
    x = x01 * 2 - 1
    x_hat = x.mean(dim=0, keepdim=True).expand_as(x)
    out = score(x, x_hat)
    assert out[MAE] == pytest.approx(0.25, abs=1e-15)
    assert out[MSE] == pytest.approx(0.125, abs=1e-15)
    assert out[PSNR] == pytest.approx(10 * math.log10(8), abs=1e-12)


def test_psnr_is_mean_of_per_image_psnr_and_pools_mae():
    x = torch.zeros(2, 1, 1, 2, dtype=torch.float64)  # 0.5 on the 0..1 scale
    x_hat = x.clone()
    x_hat[0] = 0.2  # image 0 off by 0.1 everywhere (0..1 scale); image 1 perfect
    out = score(x, x_hat)
    assert out[MAE] == pytest.approx(0.05, abs=1e-12)
    assert out[MSE] == pytest.approx(0.005, abs=1e-12)
    assert out[PSNR] == pytest.approx((20.0 + 100.0) / 2, abs=1e-9)


def test_mask_scores_only_selected_entries():
    x, x_hat = _images()
    mask = _mask()
    before = score(x, x_hat, mask)
    changed = torch.where(mask.expand_as(x), x_hat, torch.full_like(x_hat, 123.0))  # wreck unmasked entries
    assert score(x, changed, mask) == before
    assert score(x, x_hat, mask.float()) == before  # float masks: nonzero = selected
    sel = mask.expand_as(x)
    expected_mae = ((x - x_hat).abs() / 2)[sel].double().mean().item()
    assert before[MAE] == pytest.approx(expected_mae, rel=1e-6)


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_streaming_is_batch_size_independent(batch):
    x, x_hat = _images()
    mask = _mask()
    mask[2] = False  # one image with an empty mask
    one_shot = score(x, x_hat, mask)
    acc = MetricAccumulator()
    for i in range(0, len(x), batch):
        acc.update(x[i : i + batch], x_hat[i : i + batch], mask[i : i + batch])
    streamed = acc.compute()
    assert acc.n_images == len(x)
    for name in PIXEL_METRICS:
        assert streamed[name] == pytest.approx(one_shot[name], abs=1e-12)


def test_empty_masks_are_left_out():
    x, x_hat = _images(n=3)
    mask = torch.zeros(3, 1, 5, 4, dtype=torch.bool)
    mask[1] = True
    out = score(x, x_hat, mask)
    alone = score(x[1:2], x_hat[1:2])
    for name in PIXEL_METRICS:
        assert out[name] == pytest.approx(alone[name], abs=1e-12)


def test_all_masks_empty_gives_nan():
    x, x_hat = _images(n=2)
    out = score(x, x_hat, torch.zeros(2, 1, 5, 4))
    assert all(math.isnan(out[name]) for name in PIXEL_METRICS)


def test_out_of_range_x_hat_is_not_clipped():
    x = torch.zeros(1, 1, 2, 2)
    assert score(x, torch.full_like(x, 3.0))[MAE] == pytest.approx(1.5)


@pytest.mark.parametrize(
    "x, x_hat, mask, match",
    [
        (torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5), None, "same shape"),
        (torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), None, "4-D"),
        (torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.ones(3, 1, 4, 4), "broadcastable"),
        (torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), float("nan")), None, "NaN.*diverged"),
        (torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), float("inf")), None, "inf.*diverged"),
        (torch.full((2, 1, 4, 4), 255.0), torch.zeros(2, 1, 4, 4), None, r"\[-1, 1\]"),
    ],
)
def test_bad_inputs_raise_helpful_errors(x, x_hat, mask, match):
    with pytest.raises(ValueError, match=match):
        score(x, x_hat, mask)


def test_compute_without_images_raises():
    with pytest.raises(ValueError, match="update"):
        MetricAccumulator().compute()
