"""The convolution path of the generator's output layer (genbench/backbone.py, ``--conv-path``): the im2col
kernel computes the native layer's function up to float rounding, the runner sets it from its config, a run
saved before the setting existed resumes on the native path, and the stacked fits keep vmap on the native path."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from genbench.backbone import (CONV_PATHS, Generator, OutputConvTranspose2d, get_conv_path, set_conv_path,
                               using_conv_path)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 16)])
def test_im2col_is_the_native_layer_up_to_rounding(shape) -> None:
    g = Generator(6, shape, width=8)
    layer = g.up[-2]
    assert isinstance(layer, OutputConvTranspose2d) and isinstance(layer, torch.nn.ConvTranspose2d)
    h = torch.randn(5, layer.in_channels, shape[1] // 2, shape[2] // 2, requires_grad=True)
    grads = {}
    for path in CONV_PATHS:
        with using_conv_path(path):
            layer.zero_grad()
            h.grad = None
            out = layer(h)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            grads[path] = (out.detach(), h.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
    for native, im2col in zip(grads["native"], grads["im2col"]):
        torch.testing.assert_close(im2col, native, atol=1e-5, rtol=1e-5)
    assert not torch.equal(grads["native"][0], torch.zeros_like(grads["native"][0]))
    with using_conv_path("im2col"), torch.no_grad():  # an unbatched input takes the native path: same shape
        assert layer(h[0]).shape == grads["native"][0].shape[1:]


def test_the_whole_generator_agrees_and_the_state_dict_is_unchanged() -> None:
    g = Generator(4, (1, 16, 16), width=8).eval()
    assert "up.3.weight" in g.state_dict() and "up.3.bias" in g.state_dict()  # the keys of every saved checkpoint
    z = torch.randn(7, 4)
    with using_conv_path("im2col"):
        a = g(z)
    torch.testing.assert_close(a, g(z), atol=1e-5, rtol=1e-5)


def test_setting_is_checked_and_restored() -> None:
    before = get_conv_path()
    with using_conv_path("im2col"):
        assert get_conv_path() == "im2col"
    assert get_conv_path() == before
    with pytest.raises(ValueError, match="conv path must be one of native, im2col"):
        set_conv_path("fast")
    assert get_conv_path() == before


def test_stacked_networks_run_the_native_path(monkeypatch) -> None:
    from genbench.stacked import StackedNetwork

    seen = []
    native = OutputConvTranspose2d.forward
    monkeypatch.setattr(OutputConvTranspose2d, "forward", lambda self, x, o=None: seen.append(get_conv_path())
                        or native(self, x, o))
    nets = [Generator(3, (1, 16, 16), width=4) for _ in range(2)]
    with using_conv_path("im2col"):
        StackedNetwork(nets)(torch.randn(2, 5, 3))
        assert get_conv_path() == "im2col"
    assert seen == ["native"]  # vmap has no batching rule for the im2col kernel


SWEEP = ["--dataset", "digits", "--set", "data.n_train=40", "--set", "data.n_test=10", "--set", "data.n_negative=5",
         "--set", "n_eval=10", "--models", "abp,pca", "--tasks", "reconstruction", "--latent-dims", "2",
         "--set", "model.abp.n_epochs=2", "--set", "model.abp.infer_steps=5", "--set", "model.abp.width=8"]


def test_the_runner_sets_the_path_and_the_tables_agree_up_to_rounding(tmp_path, one_thread, monkeypatch) -> None:
    from genbench.cli import main
    from genbench.results import read_results

    seen = set()
    native = OutputConvTranspose2d.forward
    monkeypatch.setattr(OutputConvTranspose2d, "forward", lambda self, x, o=None: seen.add(get_conv_path())
                        or native(self, x, o))
    tables = {}
    for path in CONV_PATHS:
        seen.clear()
        assert main([*SWEEP, "--out", str(tmp_path / path), "--conv-path", path]) == 0
        assert seen == {path}
        (run_dir,) = (tmp_path / path).iterdir()
        assert json.loads((run_dir / "config.json").read_text())["config"]["conv_path"] == path
        tables[path] = read_results(run_dir / "results.csv")
    a, b = tables["native"], tables["im2col"]
    assert list(a.config_hash) == list(b.config_hash)  # float rounding only: no hash names the path
    # ... but the rows' provenance does, when it is not the native path (a report pooling both says so)
    assert not a.versions.str.contains("conv=").any() and b.versions.str.endswith(" conv=im2col").all()
    assert (a.value - b.value).abs().max() < 1e-3
    assert (a[a.model == "pca"].value.values == b[b.model == "pca"].value.values).all()


def test_a_run_saved_before_the_setting_resumes_on_the_native_path(tmp_path, one_thread) -> None:
    from genbench.cli import main
    from genbench.rundir import read_run_config, saved_run

    assert main([*SWEEP, "--out", str(tmp_path), "--models", "pca"]) == 0
    (run_dir,) = tmp_path.iterdir()
    blob = json.loads((run_dir / "config.json").read_text())
    del blob["config"]["conv_path"]
    (run_dir / "config.json").write_text(json.dumps(blob))
    assert read_run_config(run_dir)["config"]["conv_path"] == "native"  # whatever today's default
    assert saved_run(run_dir)[0].conv_path == "native"
    set_conv_path("im2col")
    assert main(["--resume", str(run_dir)]) == 0 and get_conv_path() == "native"


def test_bad_conv_path_is_a_usage_error(tmp_path, capsys) -> None:
    from genbench.cli import main

    assert main([*SWEEP, "--out", str(tmp_path), "--conv-path", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'fast'" in err and len(err.splitlines()) == 1
    assert main([*SWEEP, "--out", str(tmp_path), "--set", "conv_path=fast"]) == 2  # the config key is checked too
    assert "conv_path must be one of native, im2col" in capsys.readouterr().err


def test_a_runner_sets_its_own_path_when_it_runs_and_a_worker_sets_it_too(tmp_path, one_thread, monkeypatch):
    from genbench.config import resolve_config
    from genbench.runner import Runner
    from genbench.worker import _RUNNERS, run_group_in_worker

    overrides = [s for s in SWEEP[1::2] if "=" in s] + ["models=[abp]", "latent_dims=[2]", "data.name=digits",
                                                        "tasks=[reconstruction]", "seeds=[0]"]
    im2col = resolve_config("quick", overrides=[*overrides, "conv_path=im2col", f"out={tmp_path / 'a'}"])
    first = Runner(im2col, log=lambda _: None)
    default = resolve_config("quick", overrides=[*overrides, f"out={tmp_path / 'b'}"])
    assert default.conv_path == "im2col"  # a run's default
    Runner(dataclasses.replace(default, conv_path="native"), log=lambda _: None)
    assert get_conv_path() == "native"  # the runner built last set its own
    seen = set()
    native = OutputConvTranspose2d.forward
    monkeypatch.setattr(OutputConvTranspose2d, "forward", lambda self, x, o=None: seen.add(get_conv_path())
                        or native(self, x, o))
    first.run()
    assert seen == {"im2col"}  # the first runner's path while it ran
    set_conv_path("native")
    payload = first.worker_payload()  # what a worker process receives: it rebuilds the runner and runs a group
    try:
        assert run_group_in_worker(payload, []) == [] and get_conv_path() == "im2col"
    finally:
        _RUNNERS.clear()


def test_a_report_says_when_pooled_rows_ran_on_both_paths():
    import pandas as pd

    from genbench.report import _mixed_versions

    base = "genbench=0.1 torch=2.14.1 numpy=2.4.6 python=3.11.7"
    rows = pd.DataFrame({"versions": [base, base + " conv=im2col"], "device": ["cpu", "cpu"]})
    assert "conv=im2col" in _mixed_versions(rows)
    assert _mixed_versions(rows.iloc[:1]) == ""
