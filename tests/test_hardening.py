"""Hardening: bad input and faults through the real entry point. Each case asserts the exit code, one
line on stderr without a traceback, and that nothing was lost, duplicated or torn.

Sections: one writer per run folder (genbench/runlock.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import genbench.registry as registry
from conftest import MeanModel
from genbench.cli import main
from genbench.operators import Identity, Observations
from genbench.registry import register_model
from genbench.results import read_results
from genbench.runlock import LOCK_NAME, RunFolderBusy, RunLock

ROOT = Path(__file__).resolve().parents[1]
PCA_RUN = ["--dataset", "digits", "--set", "data.n_train=60", "--set", "data.n_test=20", "--set",
           "data.n_negative=10", "--set", "n_eval=20", "--tasks", "reconstruction", "--models", "pca"]
KEYS = ["model", "latent_dim", "seed", "task", "variant", "protocol", "split", "metric"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _run_dir(tmp_path: Path) -> Path:
    assert main([*PCA_RUN, "--out", str(tmp_path)]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return run_dir


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """A live process holding the run folder's lock (until killed)."""
    code = ("import sys, time; from genbench.runlock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"held"
    return proc


@pytest.fixture
def test_model(request):
    """Registers the test double given by ``parametrize("test_model", [(name, cls)], indirect=True)``."""
    name, cls = request.param
    register_model(name)(cls)
    yield name
    registry._MODELS.pop(name)


# ------------------------------------------------------------------------------------- one writer per folder
def test_a_second_writer_is_refused_with_the_holder_named(tmp_path, capsys):
    run_dir = _run_dir(tmp_path)
    before = (run_dir / "results.csv").read_bytes()
    holder = _hold_lock(run_dir)
    try:
        capsys.readouterr()
        assert main(["--resume", str(run_dir)]) == 2
        _one_line_error(capsys, f"pid {holder.pid}", "in use by", "cannot resume")
        assert main(["report", str(run_dir)]) == 2  # a report into the folder is a writer too
        _one_line_error(capsys, f"pid {holder.pid}", "write the report into")
        assert main(["report", str(run_dir), "--out", str(tmp_path / "elsewhere")]) == 0  # a reader is welcome
        assert (tmp_path / "elsewhere" / "summary.md").is_file()
    finally:
        holder.kill()
        holder.wait()
    assert (run_dir / "results.csv").read_bytes() == before


def test_a_lock_left_by_a_killed_process_is_stale_and_taken_over(tmp_path, capsys):
    run_dir = _run_dir(tmp_path)
    holder = _hold_lock(run_dir)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid  # the file names its last holder
    assert main(["--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    with RunLock(tmp_path):
        with RunLock(tmp_path, "write the report into"):  # the sweep's own report
            pass
        code = "import sys; from genbench.runlock import RunLock; RunLock(sys.argv[1]).acquire()"
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=ENV, capture_output=True)
        assert other.returncode != 0 and b"RunFolderBusy" in other.stderr  # still held by the outer one
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=ENV, capture_output=True)
    assert other.returncode == 0, other.stderr
    with pytest.raises(RunFolderBusy):
        holder = _hold_lock(tmp_path)
        try:
            RunLock(tmp_path).acquire()
        finally:
            holder.kill()
            holder.wait()


def test_two_concurrent_resumes_the_second_is_refused_and_no_row_is_duplicated(tmp_path, capsys):
    slow = [*PCA_RUN[:-2], "--models", "pca,abp-gd", "--latent-dims", "4", "--set", "model.abp-gd.n_epochs=60"]
    assert main([*slow, "--out", str(tmp_path)]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    path = run_dir / "results.csv"
    whole = read_results(path)
    path.write_text(path.read_text().replace(",ok,", ",failed,"))  # every cell to run again
    for ckpt in (run_dir / "checkpoints").glob("*.pt"):
        ckpt.unlink()  # and fitted again: the first resume takes a while
    first = subprocess.Popen([sys.executable, str(ROOT / "run_benchmarks.py"), "--resume", str(run_dir)],
                             cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:
        lock = run_dir / LOCK_NAME
        if lock.exists() and f'"pid": {first.pid},' in lock.read_text():
            break
        time.sleep(0.02)
    assert first.poll() is None, f"the first resume ended before the second started: {first.stderr.read()}"
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 2
    _one_line_error(capsys, f"pid {first.pid}")
    assert first.wait(timeout=300) == 0, first.stderr.read()
    df = read_results(path)
    assert not df.duplicated(KEYS).any() and len(df) == len(whole) and (df.status == "ok").all()


def test_the_report_keeps_a_cell_appended_twice_once_and_refuses_two_different_copies(tmp_path, capsys):
    run_dir = _run_dir(tmp_path)
    path = run_dir / "results.csv"
    header, *rows = path.read_text().splitlines(keepends=True)
    path.write_text("".join([header, *rows, *rows]))  # the whole cell appended again, identical
    assert main(["report", str(run_dir)]) == 0
    table = pd.read_csv(run_dir / "tables" / "aggregated.csv")
    assert (table["count"] == 1).all()  # one seed counted once, not twice
    value = header.rstrip("\n").split(",").index("value")
    changed = []
    for line in rows:  # a second copy with other values: refused in one line, nothing pooled
        cols = line.rstrip("\n").split(",")
        if cols[value] not in ("", "nan"):
            cols[value] = repr(float(cols[value]) + 1.0)
        changed.append(",".join(cols) + "\n")
    path.write_text("".join([header, *rows, *changed]))
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 2
    _one_line_error(capsys, "twice with different values")


# ------------------------------------------------------------------------------------ only what we wrote
def test_report_out_into_a_folder_with_the_users_files_never_deletes_them(tmp_path):
    run_dir = _run_dir(tmp_path / "runs")
    out = tmp_path / "paper"
    mine = [out / "plots" / "figure1.png", out / "plots" / "figure2.pdf", out / "tables" / "table1.csv",
            out / "summary.md.bak"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"the user's")
    for _ in range(2):  # a first report, then one that replaces it
        assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert all(p.read_bytes() == b"the user's" for p in mine)
    assert (out / "summary.md").is_file() and (out / "tables" / "aggregated.csv").is_file()
    assert not list(out.rglob("*.tmp"))  # no temporary file left behind


# ------------------------------------------------------------------------------------ no code from data
def _plugin(tmp_path: Path) -> tuple[Path, Path]:
    """A plug-in file that registers a model and leaves a marker file when it is imported."""
    marker = tmp_path / "marker.txt"
    plugin = tmp_path / "marker_plugin.py"
    plugin.write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['GB_MARKER']).write_text('imported')\n"
        "from baselines.pca import PCA\n"
        "from genbench.registry import register_model\n"
        "@register_model('marker-pca', description='PCA under another name')\n"
        "class MarkerPCA(PCA):\n"
        "    pass\n")
    return plugin, marker


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_benchmarks.py"), *args], cwd=ROOT,
                          env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=300)


def test_list_and_report_do_not_import_genbench_plugins(tmp_path):
    plugin, marker = _plugin(tmp_path)
    run_dir = _run_dir(tmp_path / "runs")
    env = {"GENBENCH_PLUGINS": str(plugin), "GB_MARKER": str(marker)}
    for args in (["list"], ["report", str(run_dir)]):
        done = _cli(*args, env=env)
        assert done.returncode == 0, done.stderr
        assert not marker.exists(), f"{args[0]} imported GENBENCH_PLUGINS"
    done = _cli("list", "--plugin", str(plugin), env=env)  # named on the command line: the user's choice
    assert done.returncode == 0 and "marker-pca" in done.stdout and marker.exists()


def test_resume_does_not_import_the_plugins_a_run_folder_names(tmp_path):
    plugin, marker = _plugin(tmp_path)
    env = {"GB_MARKER": str(marker)}
    done = _cli(*PCA_RUN[:-2], "--models", "marker-pca", "--plugin", str(plugin), "--out", str(tmp_path / "runs"),
                env=env)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    path = run_dir / "results.csv"
    path.write_text(path.read_text().replace(",ok,", ",failed,"))  # something to resume
    before = path.read_bytes()
    marker.unlink()
    refused = _cli("--resume", str(run_dir), env=env)
    assert refused.returncode == 2 and not marker.exists()
    err = refused.stderr.strip()
    assert len(err.splitlines()) == 1 and "does not import code named in a run folder" in err and str(plugin) in err
    assert path.read_bytes() == before  # nothing written
    again = _cli("--resume", str(run_dir), "--plugin", str(plugin), env=env)  # given again: trusted
    assert again.returncode == 0, again.stderr
    assert set(read_results(path).status) == {"ok"}
    path.write_text(path.read_text().replace(",ok,", ",failed,"))
    trusted = _cli("--resume", str(run_dir), "--trust-plugins", env=env)
    assert trusted.returncode == 0, trusted.stderr


# ------------------------------------------------------------------------------------ no silent wrong numbers
class _OutOfRange(MeanModel):
    """Recoveries far outside the images' [-1, 1]: before, such a model was scored ``ok`` (mae 471395)."""

    def reconstruct(self, obs: Observations) -> torch.Tensor:
        return super().reconstruct(obs) * 1e6


@pytest.mark.parametrize("test_model", [("test-out-of-range", _OutOfRange)], indirect=True)
def test_a_recovery_outside_the_image_range_is_a_failed_cell_naming_the_model(tmp_path, capsys, test_model):
    code = main([*PCA_RUN[:-2], "--models", "test-out-of-range,pca", "--out", str(tmp_path)])
    assert code == 1
    (run_dir,) = tmp_path.iterdir()
    df = read_results(run_dir / "results.csv")
    bad = df[df.model == "test-out-of-range"]
    assert set(bad.status) == {"failed"} and bad.message.str.contains("_OutOfRange.reconstruct returned values").all()
    assert set(df[df.model == "pca"].status) == {"ok"}  # the sweep went on


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from genbench.data import DataConfig, load_data

    g = np.random.default_rng(0)
    grey = [(g.random((8, 8)) * 65535).astype(np.uint16) for _ in range(6)]
    for i, a in enumerate(grey):
        Image.fromarray(a).save(tmp_path / f"im{i}.png")  # 16-bit greyscale PNG (mode I;16)
    assert Image.open(tmp_path / "im0.png").mode == "I;16"
    s = load_data(DataConfig(name=f"folder:{tmp_path}", n_train=4, n_test=2, n_negative=2, seed=0))
    got = torch.cat([s.train, s.test]).flatten(1).sort(1).values
    want = torch.tensor(np.stack([a.astype(np.float32) / 65535 * 2 - 1 for a in grey])).flatten(1).sort(1).values
    # the same images (in the split's order, compared as sorted pixel sets per image)
    assert torch.allclose(got.sort(0).values, want.sort(0).values, atol=1e-6)
    assert (s.train == 1).float().mean() < 0.05  # before: 96 % of the pixels saturated at white
    rgb = Image.fromarray((g.random((8, 8, 3)) * 255).astype(np.uint8))
    rgb.save(tmp_path / "colour.png")  # one RGB image: the folder becomes RGB, the 16-bit greys stay scaled
    s = load_data(DataConfig(name=f"folder:{tmp_path}", n_train=5, n_test=2, n_negative=2, seed=0))
    assert s.train.shape[1] == 3 and (torch.cat([s.train, s.test]) == 1).float().mean() < 0.05


def test_resume_after_config_json_was_edited_is_refused_not_mixed(tmp_path, capsys):
    run_dir = _run_dir(tmp_path)
    path, config = run_dir / "results.csv", run_dir / "config.json"
    blob = json.loads(config.read_text())
    blob["config"]["n_eval"] = 10  # edited by hand after the run: its rows are not this config's
    config.write_text(json.dumps(blob))
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 2
    _one_line_error(capsys, "were computed under another config", "was config.json edited")
    assert path.read_bytes() == before
    blob["config"]["n_eval"] = 20  # restored: resumes (nothing to do)
    config.write_text(json.dumps(blob))
    assert main(["--resume", str(run_dir)]) == 0 and path.read_bytes() == before


# ------------------------------------------------------------------------------------ faults inside a cell
class _Exits(MeanModel):
    """A plug-in that calls sys.exit in its fit: before, it ended the whole sweep with its exit code."""

    def fit(self, obs: Observations) -> MeanModel:
        raise SystemExit(3)


@pytest.mark.parametrize("test_model", [("test-exits", _Exits)], indirect=True)
def test_sys_exit_in_a_plugin_is_a_failed_cell_and_the_sweep_goes_on(tmp_path, test_model):
    assert main([*PCA_RUN[:-2], "--models", "test-exits,pca", "--out", str(tmp_path)]) == 1
    (run_dir,) = tmp_path.iterdir()
    df = read_results(run_dir / "results.csv")
    bad = df[df.model == "test-exits"]
    assert set(bad.status) == {"failed"} and bad.message.str.startswith("SystemExit: 3").all()
    assert set(df[df.model == "pca"].status) == {"ok"}


def _fail_all(path: Path) -> None:
    path.write_text(path.read_text().replace(",ok,", ",failed,"))


def test_a_checkpoint_of_another_config_is_ignored_with_a_warning_and_refitted(tmp_path, capsys):
    from genbench.registry import get_model

    run_dir = _run_dir(tmp_path)
    (ckpt,) = (run_dir / "checkpoints").glob("pca__*.pt")
    other = get_model("pca").build(latent_dim=3).fit(Identity().observe(torch.rand(30, 1, 8, 8) * 2 - 1))
    other.save(ckpt, fit_seconds=1.0)  # same file name, another fit config (latent_dim 3, not 10)
    _fail_all(run_dir / "results.csv")
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 0  # before: a ValueError aborted every resume
    err = capsys.readouterr().err
    assert "warning: cannot use checkpoint" in err and "fitting again" in err
    assert set(read_results(run_dir / "results.csv").status) == {"ok"}


def test_a_checkpoint_holding_python_objects_is_refused_without_torchs_advice(tmp_path, capsys):
    run_dir = _run_dir(tmp_path)
    (ckpt,) = (run_dir / "checkpoints").glob("pca__*.pt")
    torch.save({"config": {}, "state": {}, "extra": {"fit_seconds": 1.0}, "payload": Path("x")}, ckpt)
    _fail_all(run_dir / "results.csv")
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "not loaded (unpickling it could run code)" in err
    assert "weights_only=False" not in err and "weights_only" not in err.replace("weights_only=True", "")


SLOW = [*PCA_RUN[:-2], "--models", "pca,abp-gd", "--latent-dims", "4", "--tasks", "reconstruction,inpainting",
        "--set", "task.inpainting.fractions=[0.5,0.9]", "--set", "task.inpainting.blocks=[]", "--seeds", "0,1",
        "--set", "model.abp-gd.n_epochs=10"]


def test_sigterm_stops_like_ctrl_c_and_resume_finishes(tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_benchmarks.py"), *SLOW, "--out", str(out)],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        if runs and (runs[0] / "results.csv").exists() and len(read_results(runs[0] / "results.csv")) >= 20:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM); the finished cells are in" in err and "Traceback" not in err
    (run_dir,) = out.iterdir()
    assert main(["--resume", str(run_dir)]) == 0
    df = read_results(run_dir / "results.csv")
    assert not df.duplicated(KEYS).any() and set(df.status) == {"ok"}
    n_cells = len(df.drop_duplicates(["model", "latent_dim", "seed", "task", "variant", "protocol"]))
    assert n_cells == 20  # pca and abp-gd x (reconstruction + 2 inpainting variants x 2 protocols) x 2 seeds


class _Hangs(MeanModel):
    """A plug-in whose fit hangs: before, it hung the whole sweep."""

    def fit(self, obs: Observations) -> MeanModel:
        time.sleep(600)
        return super().fit(obs)


@pytest.mark.parametrize("test_model", [("test-hangs", _Hangs)], indirect=True)
def test_a_cell_past_cell_timeout_fails_and_the_sweep_goes_on(tmp_path, test_model):
    t0 = time.monotonic()
    code = main([*PCA_RUN[:-2], "--models", "test-hangs,pca", "--cell-timeout", "2", "--out", str(tmp_path)])
    assert code == 1 and time.monotonic() - t0 < 60
    (run_dir,) = tmp_path.iterdir()
    df = read_results(run_dir / "results.csv")
    bad = df[df.model == "test-hangs"]
    assert set(bad.status) == {"failed"} and bad.message.str.contains("time limit of 2 s").all()
    assert set(df[df.model == "pca"].status) == {"ok"}


# ------------------------------------------------------------------------------------ bad input: one line, exit 2
@pytest.mark.parametrize("args, needle", [
    (["--cell-timeout", "0"], "cell_timeout must be a positive number"),
    (["--cell-timeout", "-5"], "cell_timeout must be a positive number"),
    (["--set", "cell_timeout=soon"], "cell_timeout"),
    (["--seeds", "99999999999"], "seeds must be integers in [0, 2^31)"),
    (["--seeds", "-1"], "seeds must be integers in [0, 2^31)"),
])
def test_bad_run_options_are_one_line_and_write_nothing(tmp_path, capsys, args, needle):
    capsys.readouterr()
    assert main([*PCA_RUN, *args, "--out", str(tmp_path / "runs")]) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------ disk full
def _limit_file_size(n_bytes: int):
    """preexec_fn: files of this process may not grow past n_bytes (writes fail with EFBIG, as on a full
    disk); SIGXFSZ ignored so that the write returns the error instead of killing the process."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return limit


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_disk_full_is_one_line_nothing_torn_and_resume_finishes_equal(tmp_path, one_thread):
    from genbench.results import read_raw_rows

    args = [*SLOW[:-2], "--set", "model.abp-gd.n_epochs=2", "--set", "checkpoints=false"]
    full = tmp_path / "full"
    done = subprocess.run([sys.executable, str(ROOT / "run_benchmarks.py"), *args, "--out", str(full)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(12_000))
    assert done.returncode == 74, done.stderr
    err = [line for line in done.stderr.strip().splitlines() if line.startswith("genbench: error")]  # warnings may
    # quote an OS error of a kept image or grid (never a failed cell); the command's own error is one line
    assert len(err) == 1 and "cannot write" in err[0] and "--resume" in err[0], done.stderr
    assert "Traceback" not in done.stderr
    (run_dir,) = full.iterdir()
    raw = read_raw_rows(run_dir / "results.csv")
    assert raw is not None and not raw.torn and 0 < len(raw.rows)  # some cells saved, none torn
    assert not list(run_dir.rglob("*.tmp"))
    assert main(["--resume", str(run_dir)]) in (0, 1)
    whole = tmp_path / "whole"
    assert main([*args, "--out", str(whole)]) in (0, 1)
    (whole_dir,) = whole.iterdir()
    cols = KEYS + ["value", "status"]
    a = read_results(run_dir / "results.csv")[cols].sort_values(KEYS).reset_index(drop=True)
    b = read_results(whole_dir / "results.csv")[cols].sort_values(KEYS).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


# ------------------------------------------------------------------------------------ odd files and sizes
def test_a_decompression_bomb_is_skipped_with_a_warning_not_the_whole_folder(tmp_path, monkeypatch):
    from PIL import Image

    from genbench.data import DataConfig, load_data

    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    Image.new("L", (200, 200)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150 * 150)  # 200 x 200 is a "bomb" at this limit
    with pytest.warns(UserWarning, match="bomb.png"):
        s = load_data(DataConfig(name=f"folder:{tmp_path}", n_train=3, n_test=1, n_negative=2))
    assert len(s.train) + len(s.test) == 4 and s.train.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", b"models: [pca]\x00\x00"])
def test_a_binary_config_file_is_one_line(tmp_path, capsys, content):
    bad = tmp_path / "config.yaml"
    bad.write_bytes(content)
    assert main([*PCA_RUN, "--config", str(bad), "--out", str(tmp_path / "runs")]) == 2
    _one_line_error(capsys, "config file", "binary file")
    assert not (tmp_path / "runs").exists()


def test_a_binary_results_csv_is_one_line_for_report_and_resume(tmp_path, capsys):
    run_dir = _run_dir(tmp_path)
    (run_dir / "results.csv").write_bytes(b"\xff\xfe\x00binary\x00" * 100)
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 2
    _one_line_error(capsys, "results.csv")
    assert main(["--resume", str(run_dir)]) == 2
    _one_line_error(capsys, "results.csv")


@pytest.mark.parametrize("args, needle", [
    (["--image-size", "10000000"], "image_size 10000000 is larger than 1024"),
    (["--set", "data.seed=-3"], "DataConfig.seed must be an integer"),
])
def test_absurd_data_settings_are_one_line(tmp_path, capsys, args, needle):
    assert main([*PCA_RUN, *args, "--out", str(tmp_path / "runs")]) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "runs").exists()


def test_a_dry_run_on_a_small_image_folder_uses_what_it_holds(tmp_path):
    from PIL import Image

    folder = tmp_path / "ten"
    folder.mkdir()
    for i in range(10):  # fewer than the dry run's 64 + 16 images: before, refused
        Image.fromarray((np.random.default_rng(i).random((8, 8)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    assert main(["--dry-run", "--dataset", f"folder:{folder}", "--models", "pca", "--tasks", "reconstruction",
                 "--latent-dims", "2", "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    data = json.loads((run_dir / "config.json").read_text())["data_effective"]
    assert (data["n_train"], data["n_test"]) == (8, 2)
