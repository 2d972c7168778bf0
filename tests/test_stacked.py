"""The stacked ensemble (genbench/stacked.py): M ABP fits at once equal M separate fits up to float rounding."""

from __future__ import annotations

import pytest
import torch

from baselines.vae import VAE
from genbench.abp import ABP, ABPConfig
from genbench.model import MissingCapabilityError
from genbench.operators import BlockMask, Identity, PixelMask, RandomProjection
from genbench.stacked import StackedNetwork, fit_stacked

TINY = dict(latent_dim=4, width=8, n_epochs=2, batch_size=10, langevin_steps=2, step_size=0.1)  # the default step: rounding stays rounding


def _members(n: int = 30) -> list:
    g = torch.Generator().manual_seed(123)
    xs = [torch.rand(n, 1, 16, 16, generator=g) * 2 - 1 for _ in range(4)]
    # each member its own data and operator kind, as the seeds and variants of one sweep
    ops = [Identity(), PixelMask(0.5, seed=3), BlockMask(6, seed=4), RandomProjection(20, (1, 16, 16), seed=5)]
    return [op.observe(x) for op, x in zip(ops, xs)]


def _separate(config: ABPConfig, obs, seed: int) -> ABP:
    torch.manual_seed(seed)  # what the runner does before a fit
    return ABP(config).fit(obs)


def _max_diff(a: ABP, b: ABP) -> float:
    sa, sb = a.generator_.state_dict(), b.generator_.state_dict()
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)


@pytest.mark.parametrize("overrides", [{}, {"langevin_noise": False}, {"langevin_bn": "eval"}],
                         ids=["abp", "abp-gd", "langevin-bn-eval"])
def test_every_member_equals_its_separate_fit(overrides):
    config = ABPConfig(**TINY, **overrides)
    obs, seeds = _members(), [0, 1, 2, 3]
    stacked = fit_stacked(config, obs, [torch.Generator().manual_seed(s) for s in seeds])
    for s, o, member in zip(seeds, obs, stacked):
        ref = _separate(config, o, s)
        # batched (grouped) convolutions round differently: agreement to float32 rounding, not bits
        assert _max_diff(member, ref) < 1e-4
        torch.testing.assert_close(member.z_train_, ref.z_train_, atol=1e-4, rtol=1e-4)
        assert member.history_ == pytest.approx(ref.history_, rel=1e-5)
        assert not member.generator_.training  # recalibrated and in eval mode, as after fit
        test = Identity().observe(o.naive_inverse()[:5].clamp(-1, 1))
        torch.manual_seed(9)
        a = member.reconstruct(test)
        torch.manual_seed(9)
        # 100 inference steps amplify the weights' rounding differences a little
        assert (a - ref.reconstruct(test)).abs().max() < 5e-3


def test_members_do_not_leak_into_each_other_and_the_global_generator_is_untouched():
    config = ABPConfig(**TINY)
    obs = _members()
    torch.manual_seed(77)
    before = torch.get_rng_state()
    two = fit_stacked(config, obs[:2], [torch.Generator().manual_seed(s) for s in (5, 6)])
    assert torch.equal(torch.get_rng_state(), before)
    # member 0 alone, and beside another member with other data, learns the same weights
    one = fit_stacked(config, obs[:1], [torch.Generator().manual_seed(5)])
    assert _max_diff(one[0], two[0]) < 1e-4
    assert _max_diff(two[0], two[1]) > 1e-2  # different seeds and data: different models


def test_the_ensemble_is_the_models_own_and_differs_with_the_seed():
    config = ABPConfig(**TINY)
    o = _members()[0]
    a, b = fit_stacked(config, [o, o], [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    assert _max_diff(a, b) > 1e-2
    assert ABP.capabilities.stacks and not VAE.capabilities.stacks
    c = ABP.fit_stacked(config, [o], [torch.Generator().manual_seed(0)])[0]
    assert _max_diff(a, c) < 1e-6  # the class method is the same loop


def test_stacked_network_applies_member_m_to_slice_m():
    from genbench.backbone import Generator

    torch.manual_seed(0)
    nets = [Generator(4, (1, 16, 16), 8).eval() for _ in range(3)]
    net = StackedNetwork(nets).train(False)
    z = torch.randn(3, 5, 4)
    out = net(z)
    for m in range(3):
        torch.testing.assert_close(out[m], nets[m](z[m]), atol=1e-5, rtol=1e-5)


def test_bad_members_are_refused_with_a_sentence():
    config = ABPConfig(**TINY)
    obs = _members()
    gens = [torch.Generator().manual_seed(s) for s in range(2)]
    with pytest.raises(ValueError, match="as many images"):
        fit_stacked(config, [obs[0], obs[1][:20]], gens)
    with pytest.raises(ValueError, match="one generator per member"):
        fit_stacked(config, obs[:2], gens[:1])
    with pytest.raises(TypeError, match="ABPConfig"):
        fit_stacked(VAE.Config(latent_dim=4), obs[:2], gens)
    with pytest.raises(MissingCapabilityError, match="stacks"):
        VAE.fit_stacked(VAE.Config(latent_dim=4), obs[:2], gens)


# -- the runner's --stack ------------------------------------------------------------------------------------
SWEEP = ["--dataset", "digits", "--set", "data.n_train=60", "--set", "data.n_test=12", "--set", "data.n_negative=6",
         "--set", "n_eval=12", "--models", "abp,pca", "--tasks", "reconstruction,inpainting", "--set",
         "task.inpainting.fractions=[0.5]", "--set", "task.inpainting.blocks=[]", "--latent-dims", "2",
         "--set", "model.abp.n_epochs=2", "--set", "model.abp.infer_steps=5", "--set", "model.abp.width=8",
         "--seeds", "0,1"]


def test_stack_gives_the_one_at_a_time_table_up_to_rounding(tmp_path, one_thread, capsys):
    import pandas as pd

    from genbench.cli import main
    from genbench.results import read_results

    keys = ["model", "latent_dim", "seed", "task", "variant", "protocol", "split", "metric"]
    tables = {}
    for name, extra in (("one", []), ("stacked", ["--stack", "8"])):
        assert main([*SWEEP, "--out", str(tmp_path / name), *extra]) == 0
        (run_dir,) = (tmp_path / name).iterdir()
        tables[name] = read_results(run_dir / "results.csv").sort_values(keys).reset_index(drop=True)
    err = capsys.readouterr().err
    # abp's 4 fits (clean and learn-from-corrupted, 2 seeds) in one stack; pca does not stack
    assert "stacked fit: 4 abp d=2 fits at once" in err and "stacked fit" not in err.split("stacked fit: 4")[1]
    one, stacked = tables["one"], tables["stacked"]
    pd.testing.assert_frame_equal(one[keys + ["config_hash", "status"]], stacked[keys + ["config_hash", "status"]])
    pca = one.model == "pca"
    assert (one[pca].value == stacked[pca].value).all()  # untouched
    assert (one.value - stacked.value).abs().max() < 1e-3  # abp: float rounding of the batched convolutions
    assert len(list(run_dir.glob("checkpoints/abp__*.pt"))) == 4  # the stacked fits are kept as checkpoints


def test_bad_stack_is_one_line(tmp_path, capsys):
    from genbench.cli import main

    assert main([*SWEEP, "--out", str(tmp_path), "--stack", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "stack must be an integer in [1, 1024]" in err and len(err.splitlines()) == 1


def test_stack_with_workers_hands_the_fits_over_as_checkpoints(tmp_path, one_thread, capsys, monkeypatch):
    from genbench.cli import main
    from genbench.results import read_results

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert main([*SWEEP, "--out", str(tmp_path / "one")]) == 0
    assert main([*SWEEP, "--out", str(tmp_path / "w"), "--stack", "4", "--workers", "2"]) == 0
    assert "stacked fit: 4 abp d=2 fits at once" in capsys.readouterr().err
    keys = ["model", "latent_dim", "seed", "task", "variant", "protocol", "split", "metric"]
    one, w = (read_results(next((tmp_path / n).iterdir()) / "results.csv").sort_values(keys).reset_index(drop=True)
              for n in ("one", "w"))
    assert (one[keys] == w[keys]).all().all() and (one.value - w.value).abs().max() < 1e-3


def test_stack_may_change_on_resume_and_finished_fits_are_not_stacked_again(tmp_path, one_thread, capsys):
    from genbench.cli import main

    assert main([*SWEEP, "--out", str(tmp_path), "--seeds", "0"]) == 0  # seed 0's fits, one at a time
    (run_dir,) = tmp_path.iterdir()
    capsys.readouterr()
    # the same run with seed 1 added is another config; resuming the run with another --stack is allowed
    assert main(["--resume", str(run_dir), "--stack", "4"]) == 0
    assert "stacked fit" not in capsys.readouterr().err  # every fit is done: nothing left to stack


@pytest.mark.parametrize("extra, text", [(["--compile"], "--compile"), (["--cell-timeout", "100"], "--cell-timeout")])
def test_stack_refuses_what_it_cannot_honour(extra, text, tmp_path, capsys):
    from genbench.cli import main

    assert main([*SWEEP, "--out", str(tmp_path), "--stack", "2", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--stack cannot be combined with {text}" in err and len(err.splitlines()) == 1


def test_a_subclass_of_abp_is_not_stacked_with_abps_loop():
    from genbench.planning import stack_plan  # noqa: F401  -- the plan asks for a class's own fit_stacked

    class Mine(ABP):
        def _train_step(self, state, obs_b, idx):  # noqa: ANN001, ANN202
            return super()._train_step(state, obs_b, idx)

    assert "fit_stacked" not in vars(Mine) and Mine.capabilities.stacks
    with pytest.raises(MissingCapabilityError, match="subclasses ABP"):
        Mine.fit_stacked(ABPConfig(**TINY), _members()[:2], [torch.Generator().manual_seed(s) for s in (0, 1)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_members_equal_separate_fits():
    config = ABPConfig(**TINY)
    obs = [o.to("cuda") for o in _members()[:2]]
    stacked = fit_stacked(config, obs, [torch.Generator("cuda").manual_seed(s) for s in (0, 1)])
    for s, o, member in zip((0, 1), obs, stacked):
        assert _max_diff(member, _separate(config, o, s)) < 1e-3
