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


def test_sigkill_with_workers_then_resume_gives_the_uninterrupted_table(tmp_path, one_thread, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(root / "run_benchmarks.py"), *SWEEP, "--workers", "2", "--out",
                             str(killed)], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline, run_dir = time.monotonic() + 120, None
    while time.monotonic() < deadline and proc.poll() is None:
        dirs = [p for p in killed.iterdir() if p.is_dir()] if killed.exists() else []
        csv = dirs[0] / "results.csv" if dirs else None
        if csv is not None and csv.exists() and len(csv.read_text().splitlines()) > 40:
            run_dir = dirs[0]
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, as a killed job's process group
    proc.wait()
    assert run_dir is not None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()}"
    n_before = len((run_dir / "results.csv").read_text().splitlines())
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert main(["--resume", str(run_dir), "--workers", "2"]) == 0
    assert main([*SWEEP, "--out", str(tmp_path / "whole")]) == 0
    _, resumed = _table(killed)
    _, whole = _table(tmp_path / "whole")
    pd.testing.assert_frame_equal(resumed, whole)
    assert n_before < len(whole) + 1, "the kill did not land mid-way"


def test_sigterm_with_workers_stops_now_and_leaves_no_worker(tmp_path):
    """A stopped driver writes no more rows: it must not wait for the groups its workers run (before, it waited
    for them, for as long as a fit takes, and threw their results away), nor leave them running."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    started = tmp_path / "fit-started"
    plugin = tmp_path / "slow_plugin.py"
    plugin.write_text(
        "import os, pathlib, time\n"
        "from baselines.pca import PCA\n"
        "from genbench.registry import register_model\n"
        "@register_model('slow-pca', description='PCA whose fit takes ten minutes')\n"
        "class SlowPCA(PCA):\n"
        "    def fit(self, obs):\n"
        "        pathlib.Path(os.environ['GB_STARTED']).write_text('fitting')\n"
        "        time.sleep(600)\n"
        "        return super().fit(obs)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GB_STARTED": str(started)}
    args = [*SWEEP[:SWEEP.index("--models")], "--models", "slow-pca,pca", "--tasks", "reconstruction",
            "--latent-dims", "2", "--seeds", "0", "--workers", "2", "--plugin", str(plugin), "--out", str(tmp_path / "r")]
    proc = subprocess.Popen([sys.executable, str(root / "run_benchmarks.py"), *args], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not started.exists():
            time.sleep(0.05)
        assert started.exists(), f"the slow fit never started: {proc.stderr.read() if proc.poll() else ''}"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        assert time.monotonic() - t0 < 60  # not the slow fit's ten minutes
        assert "terminated (SIGTERM); the finished cells are in" in err and "Traceback" not in err
        time.sleep(1)
        assert _running(proc.pid) == []  # no worker process of the run's process group is left running
    finally:
        if proc.poll() is None or _running(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def _running(group: int) -> list[str]:
    """The processes of a process group that still run (an exited one not yet reaped, a zombie, does not)."""
    import subprocess

    ps = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(group)], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if line.split()[1:2] and not line.split()[1].startswith("Z")]
