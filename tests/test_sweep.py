"""Sweeps users can trust: kill-and-resume, checkpoints, failure isolation (exceptions and NaN),
Ctrl-C, and the resume bad-input cases (not a run, config differs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

import genbench.registry as registry
from conftest import MeanModel
from genbench.cli import main
from genbench.config import resolve_config
from genbench.operators import Observations
from genbench.registry import register_model
from genbench.results import read_results
from genbench.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
#: a sweep of 20 cells on 8x8 digits: pca and abp-gd x (reconstruction + 2 inpainting variants x 2
#: protocols) x 2 seeds; the kill lands after the third cell
SWEEP = ["--dataset", "digits", "--set", "data.n_train=100", "--set", "data.n_test=20",
         "--set", "data.n_negative=10", "--set", "n_eval=20", "--models", "pca,abp-gd",
         "--tasks", "reconstruction,inpainting", "--set", "task.inpainting.fractions=[0.5,0.9]",
         "--set", "task.inpainting.blocks=[]", "--seeds", "0,1", "--latent-dims", "4",
         "--set", "model.abp-gd.n_epochs=10"]
N_CELLS = 20
#: one model, one task on 8x8 digits: a run of a second
PCA_RUN = ["--dataset", "digits", "--set", "data.n_train=60", "--set", "data.n_test=20", "--set",
           "data.n_negative=10", "--set", "n_eval=20", "--tasks", "reconstruction", "--models", "pca"]
#: what must be equal between a resumed and an uninterrupted run (not the run id, not timings)
KEYS = ["model", "latent_dim", "seed", "task", "variant", "protocol", "split", "metric"]
COMPARED = KEYS + ["value", "n_images", "infer_steps", "status", "message", "config_hash"]


# one_thread (conftest): the subprocesses run with OMP_NUM_THREADS=1; bit-equal numbers need the same here


def _table(run_dir: Path) -> pd.DataFrame:
    df = read_results(run_dir / "results.csv")
    assert not df.duplicated(KEYS).any(), "duplicated rows"
    return df[COMPARED].sort_values(KEYS).reset_index(drop=True)


def _only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def _cells(run_dir: Path) -> int:
    path = run_dir / "results.csv"
    if not path.exists():
        return 0
    return len(pd.read_csv(path).drop_duplicates(KEYS[:6]))


def test_sigkill_mid_sweep_then_resume_equals_an_uninterrupted_run(tmp_path, one_thread):
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_benchmarks.py"), *SWEEP, "--out", str(killed)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    run_dir = None
    while time.monotonic() < deadline and proc.poll() is None:
        run_dirs = [p for p in killed.iterdir() if p.is_dir()] if killed.exists() else []
        if run_dirs and _cells(run_dirs[0]) >= 3:
            run_dir = run_dirs[0]
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()}"
    n_before = _cells(run_dir)
    assert 3 <= n_before < N_CELLS, "the kill did not land mid-way"

    assert main(["--resume", str(run_dir)]) == 0
    uninterrupted = tmp_path / "uninterrupted"
    assert main([*SWEEP, "--out", str(uninterrupted)]) == 0

    resumed, whole = _table(run_dir), _table(_only_run(uninterrupted))
    assert _cells(run_dir) == N_CELLS
    pd.testing.assert_frame_equal(resumed, whole)


def test_resume_loads_checkpoints_and_reruns_only_unfinished_cells(tmp_path, one_thread):
    config = resolve_config("quick", flags={"out": str(tmp_path)}, overrides=[
        "data.name=digits", "data.n_train=100", "data.n_test=20", "data.n_negative=10", "n_eval=20",
        "models=[pca,abp-gd]", "tasks=[reconstruction,inpainting]", "task.inpainting.fractions=[0.5]",
        "task.inpainting.blocks=[]", "latent_dims=[4]", "model.abp-gd.n_epochs=5"])
    first = Runner(config, log=lambda _: None)
    run_dir = first.run().run_dir
    assert first.fit_count == 4  # per model: one clean fit, one fit on the corrupted images
    assert len(list((run_dir / "checkpoints").glob("*.pt"))) == 4
    whole = _table(run_dir)
    # as if killed after 2 cells: keep the header and the first 2 cells' rows, plus a torn line
    df = read_results(run_dir / "results.csv")
    lines = (run_dir / "results.csv").read_text().splitlines(keepends=True)
    n_keep = int(df.drop_duplicates(KEYS[:6]).index[2])  # rows of the first two cells
    (run_dir / "results.csv").write_text("".join(lines[: 1 + n_keep]) + "pca,4,0,recon")

    resumed = Runner.resume(run_dir, log=lambda _: None)
    summary = resumed.run()
    assert summary.n_skipped == 2 and summary.n_ok == 4
    assert resumed.fit_count == 0, "every fit should come from its checkpoint"
    pd.testing.assert_frame_equal(_table(run_dir), whole)


def test_resume_reruns_failed_cells(tmp_path, one_thread):
    args = [*PCA_RUN, "--out", str(tmp_path)]
    assert main(args) == 0
    run_dir = _only_run(tmp_path)
    path = run_dir / "results.csv"
    path.write_text(path.read_text().replace(",ok,", ",failed,"))
    assert main(["--resume", str(run_dir)]) == 0
    df = read_results(path)
    assert (df.status == "ok").all() and not df.duplicated(KEYS).any()


@pytest.mark.parametrize("extra, match", [
    (["--seeds", "0,1"], "differs from the run's config.json at seeds"),
    (["--set", "model.pca.em_iters=7"], "at model.pca"),
    (["--preset", "default"], "differs"),
])
def test_resume_with_a_different_config_is_refused(tmp_path, capsys, extra, match):
    args = [*PCA_RUN, "--out", str(tmp_path)]
    assert main(args) == 0
    run_dir = _only_run(tmp_path)
    before = sorted(p.name for p in run_dir.rglob("*"))
    capsys.readouterr()
    assert main(["--resume", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genbench: error: --resume") and match in err[0]
    assert sorted(p.name for p in run_dir.rglob("*")) == before
    # the same options as the run itself are fine (nothing left to do)
    assert main(["--resume", str(run_dir), "--models", "pca", "--seeds", "0"]) == 0


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing", "no such folder"),
    (lambda p: p, "not a genbench run folder (no config.json"),
    (lambda p: (p / "config.json").write_text("{not json") and p, "cannot read config.json"),
    (lambda p: (p / "config.json").write_text('{"a": 1}') and p, "not a genbench run config"),
])
def test_resume_on_a_folder_that_is_not_a_run(tmp_path, capsys, make, match):
    folder = make(tmp_path)
    assert main(["--resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


# ------------------------------------------------------------------------------- failure isolation
_Mean = MeanModel


class _NaNOnTest(_Mean):
    """Fits fine; its second recovery (the test split, after train) is NaN."""

    def reconstruct(self, obs: Observations) -> torch.Tensor:
        self.calls_ = getattr(self, "calls_", 0) + 1
        x_hat = super().reconstruct(obs)
        return x_hat * float("nan") if self.calls_ == 2 else x_hat


class _Interrupted(_Mean):
    """Simulates Ctrl-C during its fit."""

    def fit(self, obs: Observations) -> _Mean:
        raise KeyboardInterrupt


@pytest.fixture
def failing_models() -> Iterator[None]:
    register_model("test-nan")(_NaNOnTest)
    register_model("test-ctrl-c")(_Interrupted)
    yield
    for name in ("test-nan", "test-ctrl-c"):
        registry._MODELS.pop(name)


TINY = ["--dataset", "digits", "--set", "data.n_train=60", "--set", "data.n_test=20",
        "--set", "data.n_negative=10", "--set", "n_eval=20", "--tasks", "reconstruction"]


def test_nan_in_one_cell_is_a_failed_row_and_the_sweep_goes_on(tmp_path, capsys, failing_models):
    code = main([*TINY, "--models", "test-nan,pca", "--out", str(tmp_path)])
    assert code == 1
    df = read_results(_only_run(tmp_path) / "results.csv")
    nan_rows = df[df.model == "test-nan"]
    assert set(nan_rows[nan_rows.split == "test"].status) == {"failed"}
    assert nan_rows[nan_rows.split == "test"].message.str.contains("non-finite").all()
    assert set(nan_rows[nan_rows.split == "train"].status) == {"ok"}  # the splits before it are kept
    assert set(df[df.model == "pca"].status) == {"ok"}
    last = capsys.readouterr().err.strip().splitlines()[-2:]
    assert last[0].startswith("genbench: FAILED test-nan") and "non-finite" in last[0]
    assert "1 failed" in last[1]


def test_ctrl_c_stops_after_saving_the_finished_cells(tmp_path, capsys, failing_models):
    code = main([*TINY, "--models", "pca,test-ctrl-c", "--out", str(tmp_path)])
    assert code == 130
    run_dir = _only_run(tmp_path)
    df = read_results(run_dir / "results.csv")
    assert set(df.model) == {"pca"} and (df.status == "ok").all()
    assert (run_dir / "summary.md").exists()
    assert "interrupted" in capsys.readouterr().err
    # the interrupted run can be resumed (here with pca only: nothing left for it to do)
    registry._MODELS.pop("test-ctrl-c")
    register_model("test-ctrl-c")(_Mean)
    assert main(["--resume", str(run_dir)]) == 0
    assert set(read_results(run_dir / "results.csv").model) == {"pca", "test-ctrl-c"}




def test_resume_after_a_torn_header_and_with_rows_of_other_cells(tmp_path, capsys):
    args = [*PCA_RUN, "--out", str(tmp_path)]
    assert main(args) == 0
    run_dir = _only_run(tmp_path)
    path = run_dir / "results.csv"
    whole = _table(run_dir)
    lines = path.read_text().splitlines(keepends=True)
    # rows of a cell this config does not run (e.g. hand-merged) are kept, never silently dropped
    foreign = [line.replace("pca,", "pca-old,", 1) for line in lines[1:]]
    path.write_text(lines[0] + "".join(foreign))
    assert main(["--resume", str(run_dir)]) == 0
    df = read_results(path)
    assert set(df.model) == {"pca", "pca-old"} and "pca-old" in capsys.readouterr().err
    # killed while writing the header: the table starts again
    path.write_text("run_id,dataset,mo")
    assert main(["--resume", str(run_dir)]) == 0
    pd.testing.assert_frame_equal(_table(run_dir), whole)
