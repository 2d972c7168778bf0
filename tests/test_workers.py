"""--workers N: fit groups in local worker processes give the table of a serial run at the same thread count."""

from __future__ import annotations

import pandas as pd
import pytest

from genbench.cli import main
from genbench.results import read_results

SWEEP = ["--dataset", "digits", "--set", "data.n_train=100", "--set", "data.n_test=20", "--set", "data.n_negative=10",
         "--set", "n_eval=20", "--models", "pca,abp-gd,zero", "--tasks", "reconstruction,inpainting", "--set",
         "task.inpainting.fractions=[0.5]", "--set", "task.inpainting.blocks=[]", "--latent-dims", "2",
         "--set", "model.abp-gd.n_epochs=2", "--seeds", "0,1"]
VALUES = ["model", "latent_dim", "seed", "task", "variant", "protocol", "split", "metric", "value", "status",
          "config_hash", "n_images"]


def _table(out):
    (run_dir,) = out.iterdir()
    df = read_results(run_dir / "results.csv")
    return run_dir, df[VALUES].sort_values(VALUES[:8]).reset_index(drop=True)


def test_workers_give_the_serial_table(tmp_path, one_thread, capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # 2 workers x 1 thread, as the serial run's 1 thread
    assert main([*SWEEP, "--out", str(tmp_path / "serial")]) == 0
    assert main([*SWEEP, "--out", str(tmp_path / "workers"), "--workers", "2"]) == 0
    _, serial = _table(tmp_path / "serial")
    run_dir, parallel = _table(tmp_path / "workers")
    pd.testing.assert_frame_equal(serial, parallel)  # bit-identical: every draw is seeded by the cell
    assert len(list((run_dir / "checkpoints").glob("*.pt"))) > 0  # workers write checkpoints into the run folder
    assert (run_dir / "summary.md").is_file()
    err = capsys.readouterr().err
    assert err.count("] pca d=2 seed=1 reconstruction") == 2  # a line per cell from each run


@pytest.mark.parametrize("args, text", [(["--workers", "0"], "positive integer or 'auto'"),
                                        (["--workers", "2", "--executor", "ray"], "cannot be combined")])
def test_bad_workers_are_one_line(args, text, tmp_path, capsys):
    assert main([*SWEEP, "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert text in err and len(err.splitlines()) <= 2  # argparse prints usage + one line
