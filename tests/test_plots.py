"""Image grids and interpolations: the runner keeps images, write_grids turns them into PNGs."""

from __future__ import annotations

import torch
from PIL import Image

from genbench.cli import main
from genbench.plots import OCCLUDED_COLOUR, interpolate, paint_occluded, write_grids


def test_interpolations_start_and_end_at_the_codes():
    z0, z1 = torch.randn(3, 5), torch.randn(3, 5)
    for kind in ("linear", "spherical"):
        path = interpolate(z0, z1, steps=6, kind=kind).view(3, 6, 5)
        assert torch.allclose(path[:, 0], z0, atol=1e-5) and torch.allclose(path[:, -1], z1, atol=1e-5)
    a = torch.tensor([[2.0, 0.0]])
    b = torch.tensor([[0.0, 2.0]])
    mid = interpolate(a, b, steps=3, kind="spherical")[1]
    assert torch.allclose(mid.norm(), torch.tensor(2.0), atol=1e-5)  # on the circle, not the chord
    assert torch.allclose(interpolate(a, b, steps=3)[1], torch.tensor([1.0, 1.0]))
    same = interpolate(a, a, steps=4, kind="spherical")  # parallel codes: no division by zero
    assert torch.isfinite(same).all() and torch.allclose(same, a.expand(4, 2))


def test_a_run_writes_recovery_sample_and_interpolation_grids(tmp_path):
    code = main(["--dry-run", "--dataset", "digits", "--models", "pca,biharmonic", "--tasks",
                 "reconstruction,inpainting", "--set", "task.inpainting.fractions=[0.5]",
                 "--set", "task.inpainting.blocks=[]", "--out", str(tmp_path)])
    assert code == 1 or code == 0
    (run_dir,) = tmp_path.iterdir()
    grids = {p.relative_to(run_dir / "grids").as_posix() for p in (run_dir / "grids").rglob("*.png")}
    assert {"recoveries/reconstruction__identity__clean-train__test__d10__s0.png",
            "recoveries/inpainting__salt-pepper-0.5__clean-train__test__d10__s0.png",
            "recoveries/inpainting__salt-pepper-0.5__learn-from-corrupted__test__d10__s0.png",
            "recoveries/inpainting__salt-pepper-0.5__learn-from-corrupted__train__d10__s0.png",
            "samples/pca__d10__s0.png", "interpolations/pca__d10__s0__linear.png",
            "interpolations/pca__d10__s0__spherical.png"} <= grids
    assert not any(g.startswith("samples/biharmonic") for g in grids)  # it cannot sample
    # rows: original, observed, pca, biharmonic (the reference joins the d=10 grid)
    with Image.open(run_dir / "grids/recoveries/inpainting__salt-pepper-0.5__clean-train__test__d10__s0.png") as im:
        assert im.size[0] > 100 and im.size[1] > 100
    blob = torch.load(next((run_dir / "images/recoveries").glob("inpainting__salt-pepper-0.5__clean*biharmonic*")),
                      weights_only=True)
    assert blob["x"].shape == blob["x_hat"].shape == (8, 1, 8, 8)
    for kept in (run_dir / "images").rglob("*.pt"):  # the kept images, not the split they were cut from
        n_values = sum(t.numel() for t in torch.load(kept, weights_only=True).values())
        assert kept.stat().st_size < 4 * n_values + 5_000, kept
    # regenerated from the kept images alone
    for p in (run_dir / "grids").rglob("*.png"):
        p.unlink()
    assert len(write_grids(run_dir)) == len(grids)


def test_occluded_pixels_are_painted_in_a_colour_no_grey_pixel_has():
    images = torch.linspace(-1, 1, 2 * 16).view(2, 1, 4, 4)
    occluded = torch.zeros(2, 1, 4, 4)
    occluded[:, :, 1, 2] = 1
    painted = paint_occluded(images, occluded)
    assert painted.shape == (2, 3, 4, 4)
    colour = torch.tensor(OCCLUDED_COLOUR) * 2 - 1
    assert torch.equal(painted[:, :, 1, 2], colour.expand(2, 3))
    grey = painted.permute(0, 2, 3, 1)[occluded[:, 0] == 0]
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])  # the rest stays grey
    assert not (grey == colour).all(dim=1).any()


def test_the_report_draws_training_curves_and_inference_cost(tmp_path):
    import json
    assert main(["--dataset", "digits", "--models", "pca,abp-gd,zero", "--tasks", "reconstruction",
                 "--latent-dims", "3", "--set", "data.n_train=100", "--set", "data.n_test=20",
                 "--set", "data.n_negative=10", "--set", "model.abp-gd.n_epochs=3", "--set", "model.abp-gd.width=8",
                 "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    fits = [json.loads(line) for line in (run_dir / "fits.jsonl").read_text().splitlines()]
    abp = next(f for f in fits if f["model"] == "abp-gd")
    assert len(abp["history"]["ABP training loss"]) == 3
    plots = {p.name for p in (run_dir / "plots").iterdir()}
    assert {"digits__training-curves.png", "digits__training-curves.pdf",
            "digits__cost__infer-seconds-vs-mae.png"} <= plots


def test_panels_of_a_row_share_their_y_axis():
    from genbench.figures import _panels
    _, axes = _panels(2, 3, 3.0, 2.0)
    axes[0, 0].plot([0, 1], [0, 10])
    axes[0, 2].plot([0, 1], [0, 1])
    assert axes[0, 0].get_ylim() == axes[0, 2].get_ylim()
    assert not axes[0, 0].get_shared_y_axes().joined(axes[0, 0], axes[1, 0])
