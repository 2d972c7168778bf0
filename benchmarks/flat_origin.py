#!/usr/bin/env python
"""Is a fitted generator's latent origin a trap? Gradient descent and Langevin from z = 0 on the same fits.

    python benchmarks/flat_origin.py RUN_DIR [--models abp,abp-gd] [--variants salt-pepper-0.7]
        [--latent-dims 20] [--seeds 0,1] [--images 200]

For each learn-from-corrupted inpainting fit of ``RUN_DIR`` (loaded from its checkpoints, never fitted here),
takes the first ``--images`` test images of the seed's split observed through the variant's operator, exactly
as the run scored them (:class:`genbench.rundata.RunData`), and infers their codes from z = 0 with the model's
own inference budget twice: as gradient descent (no noise) and as Langevin dynamics (noise), seeded alike.
Prints per fit the mean z² of the gradient-descent codes (0: the chains never left the origin), the norm of
the generator's output gradient at z = 0, and the task's ``mae`` of both recoveries. A fit whose
gradient-descent codes stay at 0 while Langevin's recover the image has a flat origin
(docs/fair_comparison.md, "Where inference starts").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--models", default="abp,abp-gd")
    p.add_argument("--variants", default="salt-pepper-0.7")
    p.add_argument("--latent-dims", type=_ints, default=[20])
    p.add_argument("--seeds", type=_ints, default=[0, 1])
    p.add_argument("--images", type=int, default=200)
    args = p.parse_args(argv)

    import torch

    from genbench.inference import langevin
    from genbench.model import frozen
    from genbench.planning import Cell, cell_model_config, fit_key
    from genbench.registry import get_model, get_task
    from genbench.rundata import RunData
    from genbench.rundir import RunFolder, build_saved_config, read_run_config
    from genbench.task import LEARN_FROM_CORRUPTED

    torch.set_num_threads(1)
    config = build_saved_config(read_run_config(args.run_dir, "run"), args.run_dir, "run")
    device = torch.device("cpu")
    task = get_task("inpainting")(config.task.get("inpainting"))
    data = RunData(config, {"inpainting": task}, device, log=lambda line: None)
    folder = RunFolder(args.run_dir)
    print("| model | d | seed | variant | mean z² (GD from 0) | ‖∂g/∂z‖ at 0 | mae, GD from 0 | mae, Langevin from 0 |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        spec = get_model(model)
        for d in args.latent_dims:
            model_config = cell_model_config(spec, config, d)
            for seed in args.seeds:
                for variant in args.variants.split(","):
                    cell = Cell(model, d, seed, "inpainting", variant, LEARN_FROM_CORRUPTED)
                    loaded = folder.load_checkpoint(spec, fit_key(cell, spec, model_config).key, device, print,
                                                    model_config)
                    if loaded is None:
                        print(f"| {model} | {d} | {seed} | {variant} | no checkpoint | | | |")
                        continue
                    fitted, cfg = loaded[0], loaded[0].config
                    g = fitted.generator_
                    _, observed = data.observations("inpainting", variant, seed)
                    obs, x = observed["test"][: args.images], data.splits(seed)["test"][: args.images]
                    z0 = torch.zeros(len(x), d, requires_grad=True)
                    with torch.enable_grad():
                        (grad,) = torch.autograd.grad(g(z0[:1]).sum(), z0)
                    maes, z_gd = [], None
                    for noise in (False, True):
                        torch.manual_seed(0)
                        with frozen(g):
                            z = langevin(g, obs, z0.detach(), sigma=cfg.sigma, steps=cfg.infer_steps,
                                         step_size=cfg.infer_step_size, noise=noise)
                        z_gd = z if not noise else z_gd
                        with torch.no_grad():
                            maes.append(task.score(obs, x, g(z).clamp(-1, 1))["mae"])
                    print(f"| {model} | {d} | {seed} | {variant} | {float(z_gd.pow(2).mean()):.2g} | "
                          f"{float(grad.norm()):.3g} | {maes[0]:.4f} | {maes[1]:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
