"""benchmarks/sweep_cost.py: a run's worker-hours from its own rows, each fit counted once, unfinished cells and
fits priced from the finished seeds, and "what if" factors applied to the parts they name."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

from genbench.cli import main

SWEEP = ["--dataset", "digits", "--set", "data.n_train=60", "--set", "data.n_test=10", "--set", "data.n_negative=5",
         "--set", "n_eval=10", "--models", "abp,zero", "--tasks", "reconstruction,inpainting", "--set",
         "task.inpainting.fractions=[0.5]", "--set", "task.inpainting.blocks=[]", "--latent-dims", "2",
         "--set", "model.abp.n_epochs=1", "--set", "model.abp.width=4", "--set", "model.abp.infer_steps=2",
         "--seeds", "0,1"]


def _script():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_cost.py"
    spec = importlib.util.spec_from_file_location("sweep_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_dir(tmp_path, one_thread):
    assert main([*SWEEP, "--out", str(tmp_path)]) == 0
    (folder,) = tmp_path.iterdir()
    return folder


def test_each_fit_counts_once_and_unfinished_seeds_are_priced_from_finished_ones(run_dir):
    sc = _script()
    rows = pd.read_csv(run_dir / "results.csv")
    abp = rows[rows.model == "abp"]
    # abp: one clean fit per seed (reconstruction, inpainting clean-train) and one learn-from-corrupted fit
    fits = abp.groupby(["seed", abp.protocol == "learn-from-corrupted"]).fit_seconds.first()
    cells = abp.groupby(["seed", "task", "variant", "protocol", "split"]).eval_seconds.first()
    full = sc.price(*sc.measured(run_dir))
    mine = full[full.model == "abp"]
    assert mine.estimated.sum() == 0 and mine.unpriced.sum() == 0
    assert mine.measured.sum() == pytest.approx(fits.sum() + cells.sum())
    assert (mine.part == "fit clean").sum() == 2 and (mine.part == "fit corrupted").sum() == 2
    # seed 1 not run yet: priced at seed 0's seconds, nothing of it measured
    rows[rows.seed == 0].to_csv(run_dir / "results.csv", index=False)
    half = sc.price(*sc.measured(run_dir))
    mine = half[half.model == "abp"]
    seed0 = fits.loc[0].sum() + cells.loc[0].sum()
    assert mine.measured.sum() == pytest.approx(seed0) and mine.estimated.sum() == pytest.approx(seed0)
    assert mine.unpriced.sum() == 0


def test_scale_changes_only_the_parts_it_names_and_bad_input_is_one_line(run_dir, capsys):
    sc = _script()
    table = sc.price(*sc.measured(run_dir))
    total = table.measured + table.estimated
    corrupted = total[(table.model == "abp") & (table.part == "fit corrupted")].sum()
    assert corrupted > 0
    assert sc.scaled(table, [("abp", "corrupted", 0.0)]).sum() == pytest.approx(total.sum() - corrupted)
    assert sc.scaled(table, [("*", "eval", 1.0)]).sum() == pytest.approx(total.sum())
    assert sc.main([str(run_dir), "--workers", "2", "--scale", "abp:corrupted=0.5"]) == 0
    out = capsys.readouterr().out
    assert "| abp |" in out and "wall time on 2 workers" in out and "with abp:corrupted x0.5" in out
    with pytest.raises(SystemExit):
        sc.main([str(run_dir), "--scale", "abp:corupted=0.5"])
    assert "--scale expects MODEL:KIND=FACTOR" in capsys.readouterr().err
    assert not math.isnan(total.sum())
