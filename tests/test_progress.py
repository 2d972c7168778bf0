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


def _rows(fit: float, evaluate: float, splits=("test",), status="ok"):
    from types import SimpleNamespace

    return [SimpleNamespace(split=s, fit_seconds=fit, eval_seconds=evaluate, status=status) for s in splits]


def test_eta_prices_the_fits_and_evaluations_left():
    from genbench.planning import Cell

    def cell(model, task, protocol, variant="v", seed=0):
        return Cell(model, 2, seed, task, variant, protocol)

    clean = [cell("abp", "reconstruction", "clean-train"), cell("abp", "inpainting", "clean-train")]
    corrupted = [cell("abp", "inpainting", "learn-from-corrupted", v) for v in ("a", "b", "c")]
    vae = [cell("vae", "reconstruction", "clean-train"), cell("vae", "inpainting", "learn-from-corrupted", "a")]
    seed1 = cell("abp", "reconstruction", "clean-train", seed=1)
    plan = [(c, ("abp", 0)) for c in clean] + [(c, ("abp", c.variant)) for c in corrupted]
    plan += [(vae[0], ("vae", 0)), (vae[1], ("vae", "a")), (seed1, ("abp", 1))]
    now, made = [0.0], {("abp", 1)}  # seed 1's fit is a checkpoint already: it costs nothing now
    p = Progress(total=len(plan), clock=lambda: now[0], plan=plan, fitted=lambda key: key in made)
    now[0] += 50
    line = p.finished(clean[0], _rows(80.0, 5.0, splits=("train", "test")))  # the clean fit 80 s, evaluation 10 s
    # done 90 s of work; left: 5 evaluations priced 10 s and 3 corrupted fits priced as abp's fit, 80 s: 290;
    # vae has no price yet: left out, and said
    assert line == "cell 50s; 1/8 done in 50s, about 2m41s left + 1 model not timed yet"  # 50 x 290 / 90
    now[0] += 5
    line = p.finished(clean[1], _rows(80.0, 10.0))  # the same fit: not paid again
    assert line.endswith(f"about {duration(55 * 280 / 100)} left + 1 model not timed yet")
    now[0] += 100
    line = p.finished(corrupted[0], _rows(200.0, 20.0))  # a corrupted fit costs 200 s: the other two priced so
    assert line.endswith(f"about {duration(155 * (40 + 10 + 400) / 320)} left + 1 model not timed yet")
    made.update({("abp", "b"), ("abp", "c")})  # made elsewhere meanwhile (a stack, another worker): work done
    now[0] += 30
    line = p.finished(corrupted[1], _rows(float("nan"), float("nan"), status="failed"))  # priced, not learned
    assert line.endswith(f"about {duration(185 * (20 + 10) / (10 + 10 + 20 + 20 + 80 + 600))} left + 1 model not "
                         "timed yet")
    now[0] += 130
    line = p.finished(vae[0], _rows(100.0, 30.0))  # vae timed: its corrupted fit at its clean fit's 100 s,
    # its inpainting evaluation at abp's 20 s
    done = 10 + 10 + 20 + 20 + 30 + 80 + 600 + 100
    assert line.endswith(f"about {duration(315 * (20 + 10 + 100 + 20) / done)} left")
    assert "not timed" not in line
    assert Progress(total=3).finished().endswith("about 0s left")  # no plan: the mean cell time x cells left


def test_eta_learns_prices_from_checkpointed_fits_and_from_the_rows_of_earlier_parts():
    import pandas as pd

    from genbench.planning import Cell

    abp = Cell("abp", 2, 0, "reconstruction", "identity", "clean-train")
    abp_masks = Cell("abp", 2, 0, "inpainting", "block-10", "learn-from-corrupted")
    vae = Cell("vae", 2, 0, "reconstruction", "identity", "clean-train")
    vae_masks = Cell("vae", 2, 0, "inpainting", "block-10", "learn-from-corrupted")
    plan = [(abp, ("abp", 0)), (abp_masks, ("abp", "b")), (vae, ("vae", 0)), (vae_masks, ("vae", "b"))]
    # a resumed run: vae's cells of another seed finished in an earlier part (a clean cell of two splits
    # sharing a 100 s fit with a second clean cell; a 200 s corrupted fit); one failed row is not learned
    history = pd.DataFrame([
        dict(model="vae", latent_dim=2, seed=1, task="reconstruction", variant="identity", protocol="clean-train",
             split=split, status="ok", fit_seconds=100.0, eval_seconds=15.0) for split in ("train", "test")] + [
        dict(model="vae", latent_dim=2, seed=1, task="inpainting", variant="block-10", protocol="clean-train",
             split="test", status="ok", fit_seconds=100.0, eval_seconds=5.0),
        dict(model="vae", latent_dim=2, seed=1, task="inpainting", variant="block-10",
             protocol="learn-from-corrupted", split="train", status="ok", fit_seconds=200.0, eval_seconds=20.0),
        dict(model="vae", latent_dim=2, seed=2, task="inpainting", variant="block-10",
             protocol="learn-from-corrupted", split="train", status="failed", fit_seconds=9e9, eval_seconds=9e9)])
    now = [0.0]
    p = Progress(total=4, clock=lambda: now[0], plan=plan, fitted=lambda key: key == ("abp", 0), history=history)
    assert p._fits == {("vae", "clean-train"): [100.0], ("vae", "learn-from-corrupted"): [200.0]}
    now[0] += 10
    # abp's clean fit was a checkpoint (free now), but its 80 s price what abp's corrupted fit will cost
    line = p.finished(abp, _rows(80.0, 10.0))
    # done: the 10 s evaluation; left: abp's corrupted fit (80) and evaluation (20: vae's of the same task and
    # protocol), vae's evaluations (30 and 20, from the earlier part) and its two fits (100 and 200)
    assert line.endswith(f"about {duration(10 * (80 + 20 + 30 + 20 + 100 + 200) / 10)} left")
    assert "not timed" not in line


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
