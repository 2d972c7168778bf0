"""``n_epochs_by_operator``: the learn-from-corrupted fits of the models on the shared epoch loop train for an
epoch count of their operator's own (masks and projections need not learn alike). Empty, nothing changes (hashes,
fits); set, a fit on data seen through a listed operator runs that many epochs, any other fit ``n_epochs``;
stacks keep fits of different counts apart."""

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
def test_empty_it_leaves_every_hash_as_before(cls):
    """An added field: empty it is not in the hashed config, so earlier rows and checkpoints keep their hash;
    set, it is (and the hash changes)."""
    assert "n_epochs_by_operator" not in hashed_config(cls())
    assert hashed_config(cls(n_epochs_by_operator={})) == hashed_config(cls())
    assert hashed_config(cls(n_epochs_by_operator={"projection": 5}))["n_epochs_by_operator"] == {"projection": 5}
    assert config_hash(hashed_config(cls(n_epochs_by_operator={"projection": 5}))) != config_hash(hashed_config(cls()))


def test_a_subclass_keeps_its_own_added_fields_and_its_parents():
    """ABPConfig declares its own added fields; the parent's (n_epochs_by_operator) still count."""
    hashed = hashed_config(ABPConfig())
    assert not {"n_epochs_by_operator", "infer_init", "restarts", "langevin_bn"} & set(hashed)


@pytest.mark.parametrize("bad, text", [({"pixel_mask": 2}, "'pixel_mask' is not an operator"),
                                       ({"identity": 2}, "'identity' is not an operator"),
                                       ({"projection": 0}, "must be an integer >= 1"),
                                       ({"projection": 2.5}, "must be an integer >= 1"),
                                       ({"projection": True}, "must be an integer >= 1"),
                                       (20, "must map operator names to epoch counts")])
def test_a_bad_mapping_is_refused_with_a_sentence(bad, text):
    with pytest.raises(ValueError, match=text):
        ABPConfig(n_epochs_by_operator=bad)


def test_a_bad_mapping_from_the_command_line_is_one_line(tmp_path, capsys):
    from genbench.cli import main

    code = main(["--dataset", "digits", "--models", "abp", "--out", str(tmp_path),
                 "--set", "model.abp.n_epochs_by_operator={pixel-mask: 0}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "n_epochs_by_operator['pixel-mask'] must be an integer >= 1" in err
    assert len(err.splitlines()) == 1 and not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["abp", "abp-gd", "vae", "dcgan"])
def test_each_fit_runs_its_operators_count_and_the_rest_n_epochs(name):
    spec = get_model(name)
    config = spec.make_config(latent_dim=3, width=8, batch_size=10, n_epochs=3,
                              n_epochs_by_operator={"pixel-mask": 1, "projection": 2})
    x = _x()
    for op, epochs in [(Identity(), 3), (PixelMask(0.5, seed=1), 1), (BlockMask(6, seed=2), 3),
                       (RandomProjection(20, (1, 16, 16), seed=3), 2)]:
        if not isinstance(op, spec.capabilities.operators):
            continue
        torch.manual_seed(0)
        model = spec.cls(config).fit(op.observe(x))
        assert len(model.history_) == epochs, (name, op.name)


def test_a_fit_of_its_operators_count_is_the_fit_of_that_many_epochs():
    """Nothing else changes: {pixel-mask: 2} on masks is bit for bit the fit with n_epochs = 2."""
    obs = PixelMask(0.5, seed=1).observe(_x())
    torch.manual_seed(0)
    a = ABP(ABPConfig(**TINY, n_epochs=5, n_epochs_by_operator={"pixel-mask": 2})).fit(obs)
    torch.manual_seed(0)
    b = ABP(ABPConfig(**TINY, n_epochs=2)).fit(obs)
    assert a.history_ == b.history_
    for k, v in a.generator_.state_dict().items():
        assert torch.equal(v, b.generator_.state_dict()[k]), k


def test_a_stack_refuses_members_of_different_epoch_counts_and_runs_their_count():
    config = ABPConfig(**TINY, n_epochs=3, n_epochs_by_operator={"pixel-mask": 1})
    with pytest.raises(ValueError, match="as many epochs"):
        fit_stacked(config, [Identity().observe(_x()), PixelMask(0.5, seed=1).observe(_x(seed=1))],
                    [torch.Generator().manual_seed(s) for s in (0, 1)])
    members = fit_stacked(config, [PixelMask(0.5, seed=1).observe(_x()), PixelMask(0.7, seed=2).observe(_x(seed=1))],
                          [torch.Generator().manual_seed(s) for s in (0, 1)])
    assert [len(m.history_) for m in members] == [1, 1]


def test_the_stack_plan_stacks_fits_of_one_count_only(tmp_path):
    cells = [Cell("abp", 4, seed, task, variant, protocol)
             for seed in (0, 1)
             for task, variant, protocol in [("reconstruction", "identity", "clean-train"),
                                             ("inpainting", "salt-pepper-0.5", "learn-from-corrupted"),
                                             ("inpainting", "block-10", "learn-from-corrupted")]]

    def chunks(*overrides):
        cfg = resolve_config("quick", None, {"data.name": "digits", "out": str(tmp_path)}, list(overrides))
        return sorted(sorted((c.task, c.variant) for c, _ in chunk) for chunk in stack_plan(cells, cfg, 8))

    # per operator: each variant's fits stack across seeds only (clean ones, and each learn-from-corrupted variant)
    assert chunks("model.abp.n_epochs_by_operator={pixel-mask: 2}") == [
        [("inpainting", "block-10")] * 2, [("inpainting", "salt-pepper-0.5")] * 2, [("reconstruction", "identity")] * 2]
    # empty: one count for all, one stack of all six fits (as before the field)
    assert [len(c) for c in chunks()] == [6]
