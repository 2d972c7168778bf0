"""``--executor ray`` on a local Ray instance the test starts (num_cpus=2): the same table as the
local executor, a lost worker's fit group is retried, and a missing Ray is one line and exit 2.

Ray is in the ``test`` extra, so CI runs these; elsewhere they are skipped when Ray is missing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

import genbench.registry as registry
from genbench.cli import main
from genbench.results import read_results

if os.environ.get("CI") != "true":
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'genbench[distributed]')")
import ray  # noqa: E402  -- in CI a missing Ray must fail, not skip

SWEEP = ["--dataset", "digits", "--set", "data.n_train=60", "--set", "data.n_test=20",
         "--set", "data.n_negative=10", "--set", "n_eval=20", "--tasks", "reconstruction,inpainting",
         "--set", "task.inpainting.fractions=[0.5]", "--set", "task.inpainting.blocks=[]",
         "--latent-dims", "4", "--set", "model.abp-gd.n_epochs=3"]
KEYS = ["model", "latent_dim", "seed", "task", "variant", "protocol", "split", "metric"]

#: a plug-in model whose first fit kills its worker process (as a lost node would), once
DIES_ONCE = '''
import os
from pathlib import Path
from genbench.registry import register_model
from baselines.pca import PCA

MARKER = Path({marker!r})

@register_model("test-dies-once", description="PCA whose first fit kills its worker")
class DiesOnce(PCA):
    def fit(self, obs):
        if not MARKER.exists():
            MARKER.write_text("died")
            os._exit(1)
        return super().fit(obs)
'''


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def _table(out: Path) -> pd.DataFrame:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    df = read_results(run_dir / "results.csv")
    assert not df.duplicated(KEYS).any()
    return df.sort_values(KEYS).reset_index(drop=True)


def test_ray_gives_the_local_table(tmp_path, local_ray):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers: the same numbers
    try:
        assert main([*SWEEP, "--models", "pca,abp-gd", "--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
        assert main([*SWEEP, "--models", "pca,abp-gd", "--out", str(tmp_path / "local")]) == 0
    finally:
        torch.set_num_threads(before)
    by_ray, local = _table(tmp_path / "ray"), _table(tmp_path / "local")
    # per model: reconstruction 3 splits x (mae, mse, psnr, ssim) + ood_auroc, ood_aupr on negative;
    # inpainting 3 scored splits x (mae, mse, psnr, mae_all, ssim)
    assert len(by_ray) == len(local) == 2 * (3 * 4 + 2 + 3 * 5) and (by_ray.status == "ok").all()
    assert by_ray[KEYS].equals(local[KEYS])
    assert torch.allclose(torch.tensor(by_ray.value.values), torch.tensor(local.value.values), rtol=1e-5)
    assert set(by_ray.device) == {"cpu"}
    (run_dir,) = (tmp_path / "ray").iterdir()  # workers wrote checkpoints and images into the run
    assert len(list((run_dir / "checkpoints").glob("*.pt"))) == 4
    assert (run_dir / "summary.md").exists() and list((run_dir / "grids").rglob("*.png"))


def test_a_lost_worker_is_retried(tmp_path, local_ray):
    plugin = tmp_path / "dies_once.py"
    marker = tmp_path / "marker"
    plugin.write_text(DIES_ONCE.format(marker=str(marker)))
    try:
        code = main([*SWEEP, "--plugin", str(plugin), "--models", "test-dies-once", "--tasks", "reconstruction",
                     "--executor", "ray", "--out", str(tmp_path / "out")])
    finally:
        registry._MODELS.pop("test-dies-once", None)
    assert marker.read_text() == "died"  # the first attempt did lose its worker
    assert code == 0
    df = _table(tmp_path / "out")
    assert (df.status == "ok").all() and len(df) == 3 * 4 + 2  # 3 splits x (mae, mse, psnr, ssim) + the two ood metrics


def test_executor_ray_without_ray_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main([*SWEEP, "--models", "pca", "--executor", "ray", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'genbench[distributed]'" in err[0]
    assert not (tmp_path / "out").exists()
