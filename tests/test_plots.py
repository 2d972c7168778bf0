"""Image grids and interpolations: the runner keeps images, write_grids turns them into PNGs."""

from __future__ import annotations

import torch
from PIL import Image

from genbench.cli import main
from genbench.plots import interpolate, write_grids


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
