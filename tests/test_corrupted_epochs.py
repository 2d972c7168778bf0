"""``n_epochs_corrupted``: the learn-from-corrupted fits of the models on the shared epoch loop train for their
own number of epochs. Unset, nothing changes (hashes, fits); set, a fit on occluded or projected data runs that
many epochs and a fit on clean images ``n_epochs``; stacks keep the two apart."""

from __future__ import annotations

import pytest
import torch

from baselines.dcgan import DCGANConfig
from baselines.vae import VAEConfig
from genbench.abp import ABP, ABPConfig
from genbench.config import resolve_config
from genbench.model import hashed_config
from genbench.operators import BlockMask, Identity, PixelMask, RandomProjection
from genbench.planning import Cell, stack_plan
from genbench.registry import get_model
from genbench.results import config_hash
from genbench.stacked import fit_stacked

TINY = dict(latent_dim=3, width=8, batch_size=10, langevin_steps=1, step_size=0.1)


def _x(n: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("cls", [ABPConfig, VAEConfig, DCGANConfig])
def test_unset_it_leaves_every_hash_as_before(cls):
    """An added field: at None it is not in the hashed config, so earlier rows and checkpoints keep their hash;
    set, it is (and the hash changes)."""
    assert "n_epochs_corrupted" not in hashed_config(cls())
    assert hashed_config(cls(n_epochs_corrupted=None)) == hashed_config(cls())
    assert hashed_config(cls(n_epochs_corrupted=5))["n_epochs_corrupted"] == 5
    assert config_hash(hashed_config(cls(n_epochs_corrupted=5))) != config_hash(hashed_config(cls()))


def test_a_subclass_keeps_its_own_added_fields_and_its_parents():
    """ABPConfig declares its own added fields; the parent's (n_epochs_corrupted) still count."""
    hashed = hashed_config(ABPConfig())
    assert not {"n_epochs_corrupted", "infer_init", "restarts", "langevin_bn"} & set(hashed)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10"])
def test_a_bad_count_is_refused_with_a_sentence(bad):
    with pytest.raises(ValueError, match="n_epochs_corrupted must be None"):
        ABPConfig(n_epochs_corrupted=bad)


@pytest.mark.parametrize("name", ["abp", "abp-gd", "vae", "dcgan"])
def test_a_fit_on_corrupted_data_runs_n_epochs_corrupted_and_a_clean_fit_n_epochs(name):
    spec = get_model(name)
    config = spec.make_config(**{k: v for k, v in TINY.items() if k in ("latent_dim", "width", "batch_size")},
                              n_epochs=3, n_epochs_corrupted=1)
    x = _x()
    for op, epochs in [(Identity(), 3), (PixelMask(0.5, seed=1), 1), (BlockMask(6, seed=2), 1),
                       (RandomProjection(20, (1, 16, 16), seed=3), 1)]:
        if not isinstance(op, spec.capabilities.operators):
            continue
        torch.manual_seed(0)
        model = spec.cls(config).fit(op.observe(x))
        assert len(model.history_) == epochs, (name, type(op).__name__)


def test_a_corrupted_fit_of_n_epochs_corrupted_is_the_fit_of_that_many_epochs():
    """Nothing else changes: n_epochs_corrupted = 2 on masks is bit for bit the fit with n_epochs = 2."""
    obs = PixelMask(0.5, seed=1).observe(_x())
    torch.manual_seed(0)
    a = ABP(ABPConfig(**TINY, n_epochs=5, n_epochs_corrupted=2)).fit(obs)
    torch.manual_seed(0)
    b = ABP(ABPConfig(**TINY, n_epochs=2)).fit(obs)
    assert a.history_ == b.history_
    for k, v in a.generator_.state_dict().items():
        assert torch.equal(v, b.generator_.state_dict()[k]), k


def test_a_stack_refuses_members_of_different_epoch_counts_and_runs_the_corrupted_count():
    config = ABPConfig(**TINY, n_epochs=3, n_epochs_corrupted=1)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    with pytest.raises(ValueError, match="as many epochs"):
        fit_stacked(config, [Identity().observe(_x()), PixelMask(0.5, seed=1).observe(_x(seed=1))], gens)
    members = fit_stacked(config, [PixelMask(0.5, seed=1).observe(_x()), BlockMask(6, seed=2).observe(_x(seed=1))],
                          [torch.Generator().manual_seed(s) for s in (0, 1)])
    assert [len(m.history_) for m in members] == [1, 1]


def test_the_stack_plan_puts_clean_and_corrupted_fits_in_different_stacks(tmp_path):
    cfg = resolve_config("quick", None, {"data.name": "digits", "out": str(tmp_path)},
                         ["model.abp.n_epochs_corrupted=2"])
    cells = [Cell("abp", 4, seed, task, variant, protocol)
             for seed in (0, 1)
             for task, variant, protocol in [("reconstruction", "identity", "clean-train"),
                                             ("inpainting", "salt-pepper-0.5", "learn-from-corrupted")]]
    chunks = stack_plan(cells, cfg, 4)
    kinds = [{fk.clean for _, fk in chunk} for chunk in chunks]
    assert sorted(map(sorted, kinds)) == [[False], [True]]
    assert sorted(len(chunk) for chunk in chunks) == [2, 2]
    same = resolve_config("quick", None, {"data.name": "digits", "out": str(tmp_path)},
                          ["model.abp.n_epochs_corrupted=null"])  # unset: one count, one stack of all four
    assert [len(chunk) for chunk in stack_plan(cells, same, 4)] == [4]
