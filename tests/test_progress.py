"""A sweep says where it is: per-cell lines with fit and evaluation time, elapsed time and an ETA; and it says
when a shared fit splits."""

from __future__ import annotations

import pytest

from genbench.cli import main
from genbench.config import resolve_config
from genbench.planning import shared_fit_warnings
from genbench.progress import Progress, duration


def test_eta_learns_from_finished_cells_on_a_fake_clock():
    now = [100.0]
    p = Progress(total=10, skipped=2, clock=lambda: now[0])
    now[0] += 30
    assert p.finished() == "cell 30s; 3/10 done in 30s, about 3m30s left"  # 7 left x 30 s
    now[0] += 90
    line = p.finished()  # mean 60 s a cell now, 6 left
    assert line == "cell 1m30s; 4/10 done in 2m00s, about 6m00s left"
    for _ in range(6):
        now[0] += 60
        line = p.finished()
    assert line.endswith("10/10 done in 8m00s")  # nothing left: no estimate
    assert duration(2 * 3600 + 5 * 60 + 7) == "2h05m" and duration(-1) == "0s"


def test_per_cell_lines_say_fit_evaluate_and_progress(tmp_path, capsys):
    assert main(["--dataset", "digits", "--models", "pca", "--tasks", "reconstruction,inpainting", "--set",
                 "task.inpainting.fractions=[0.5]", "--set", "task.inpainting.blocks=[]", "--latent-dims", "2",
                 "--out", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert len(lines) == 3
    assert all("fit " in line and "evaluate " in line and "done in" in line for line in lines)
    assert "about" in lines[0] and "about" not in lines[-1] and "3/3 done" in lines[-1]


def test_a_shared_fit_that_splits_is_a_warning():
    cfg = resolve_config("quick", overrides=["models=[vae,vae-refine]", "model.vae.n_epochs=2"])
    (warning,) = shared_fit_warnings(cfg)
    assert "vae-refine no longer shares vae's fit" in warning and "n_epochs 40 vs 2" in warning
    assert shared_fit_warnings(resolve_config("quick", overrides=["models=[vae,vae-refine]"])) == []
    # inference-only fields may differ: the fit is still shared
    same = resolve_config("quick", overrides=["models=[vae,vae-refine]", "model.vae-refine.infer_steps=3"])
    assert shared_fit_warnings(same) == []


def test_the_warning_reaches_the_log(tmp_path, capsys):
    assert main(["--dataset", "digits", "--models", "vae,vae-refine", "--tasks", "reconstruction", "--latent-dims", "2",
                 "--set", "model.vae.n_epochs=1", "--set", "model.vae-refine.n_epochs=2", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("no longer shares vae's fit") == 1


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (59.6, "1m00s"), (61, "1m01s"), (3599, "59m59s")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_the_sweep_bar_is_a_bar_on_a_terminal_and_plain_lines_elsewhere(monkeypatch):
    import io
    import sys

    from genbench.progress import SweepBar

    seen = []
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: the bar is off, lines go to the log
    bar = SweepBar(3, done=1)
    bar.line("[2/3] a cell", seen.append)
    bar.close()
    assert seen == ["[2/3] a cell"] and sys.stderr.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = SweepBar(3, done=1)
    bar.line("[2/3] a cell", seen.append)
    text = sys.stderr.getvalue()
    bar.close()
    assert "[2/3] a cell" in text and "sweep:" in text  # the line above the bar
    assert seen == ["[2/3] a cell"]  # the log was not called twice
