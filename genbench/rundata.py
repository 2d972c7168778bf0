"""The data of a run, as the runner hands it to cells: the loaded splits on the device (per run seed
when the split varies with it), every task's variants for the image shape, and each (task, variant,
seed)'s operator with the splits observed through it once.

With ``data.vary_split`` (on in the ``default`` preset) run seed ``s`` draws its own train/test
split: it loads the data with ``DataConfig.seed = split_seed(data.seed, s)``, so the seed-to-seed
spread of a table includes which images were trained and tested on, not only initialisation and
masks. Off, every seed sees the split of ``data.seed`` (and the numbers of earlier runs). The split
seed is a field of the cell's data settings, hence of its ``config_hash``.

Example::

    >>> data = RunData(config, tasks, log=print)  # loads (and checks) the first seed's data
    >>> data.splits(seed=1)["train"].shape        # (4000, 1, 28, 28): seed 1's own split
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from genbench.config import ConfigError, RunConfig
from genbench.dataconfig import DataConfig, data_settings
from genbench.operators import Identity, Observations, Operator
from genbench.planning import SPLIT_STREAMS, derive_seed, effective_data_config, shared_fit_warnings
from genbench.results import config_hash
from genbench.task import DataView, Task, Variant

Log = Callable[[str], None]

#: seeds whose loaded splits are kept in memory at once (cells run seed by seed; two covers a change-over)
_KEEP_SEEDS = 2


def split_seed(data_seed: int, run_seed: int) -> int:
    """The ``DataConfig.seed`` of run seed ``run_seed``'s split under ``data.vary_split``."""
    return derive_seed(data_seed, run_seed, "split") % 2 ** 31


@dataclass
class SeedData:
    """One seed's loaded data: its data settings, the clean splits on the device and what a task that
    trains a helper of its own sees (:class:`~genbench.task.DataView`)."""

    data_config: DataConfig
    splits: dict[str, Tensor]
    view: DataView


class RunData:
    """The run's data (see the module docstring). Construction loads the first seed's data and builds
    every task's variants: bad input fails here, before anything is written."""

    def __init__(self, config: RunConfig, tasks: Mapping[str, Task], device: Any, log: Log) -> None:
        self.config, self.device, self.log = config, device, log
        self.base_config = effective_data_config(config)
        self._seeds: dict[int, SeedData] = {}
        self._obs: dict[tuple, tuple[Operator, dict[str, Observations]]] = {}
        first = self.for_seed(config.seeds[0] if config.seeds else 0)
        self.image_shape: tuple[int, int, int] = tuple(first.splits["train"].shape[1:])
        self.variants: dict[str, list[Variant]] = {}
        for name, task in tasks.items():
            try:
                self.variants[name] = task.variants(self.image_shape)
            except ValueError as err:
                raise ConfigError(f"task {name!r}: {err}") from None
        self.used: dict[str, Any] = {f"n_{s}": len(x) for s, x in first.splits.items()}
        short = [f"{k} {n} (asked {getattr(self.base_config, k)})" for k, n in self.used.items()
                 if getattr(self.base_config, k, None) is not None and n < getattr(self.base_config, k)]
        for warning in shared_fit_warnings(config):
            log(warning)
        if short:
            log(f"warning: {self.base_config.name} holds fewer images than asked: {', '.join(short)}; the run uses "
                f"what it holds (config.json: data_used)")
        self.used["image_shape"] = list(self.image_shape)
        if self.base_config.vary_split:
            self.used["split_seeds"] = {str(s): split_seed(self.base_config.seed, s) for s in config.seeds}

    def data_config(self, seed: int) -> DataConfig:
        """The data settings run seed ``seed`` loads (its own split seed under ``vary_split``)."""
        if not self.base_config.vary_split:
            return self.base_config
        return dataclasses.replace(self.base_config, seed=split_seed(self.base_config.seed, seed))

    def for_seed(self, seed: int) -> SeedData:
        """Seed ``seed``'s data, loaded once (one load serves every seed when the split does not vary)."""
        key = seed if self.base_config.vary_split else None
        if key not in self._seeds:
            from genbench.data import load_data  # torchvision and the data packages: only once a run loads

            data_config = self.data_config(seed)
            data = load_data(data_config)
            splits = {s: getattr(data, s).to(self.device) for s in SPLIT_STREAMS}
            view = DataView(splits, {"train": data.train_labels, "test": data.test_labels},
                            config_hash(data_settings(data_config)))
            while len(self._seeds) >= _KEEP_SEEDS:
                self._seeds.pop(next(iter(self._seeds)))
            self._seeds[key] = SeedData(data_config, splits, view)
        return self._seeds[key]

    def splits(self, seed: int) -> dict[str, Tensor]:
        return self.for_seed(seed).splits

    def variant(self, task: str, name: str) -> Variant:
        return next(v for v in self.variants[task] if v.name == name)

    def operator(self, task: str, variant: str, seed: int) -> Operator:
        """A fresh operator of (task, variant, seed): its seed derived from the run seed."""
        return self.variant(task, variant).make_operator(self.image_shape, derive_seed(seed, task, variant))

    def fit_observations(self, task: str, variant: str, seed: int, clean: bool) -> Observations:
        """What a fit learns from: the clean training images (``clean``: the fit every clean-train cell of the seed
        shares) or the training images observed through the variant's operator."""
        if clean:
            return Identity(seed=seed).observe(self.splits(seed)["train"])
        return self.observations(task, variant, seed)[1]["train"]

    def observations(self, task: str, variant: str, seed: int) -> tuple[Operator, dict[str, Observations]]:
        """The operator of (task, variant, seed) and each split observed once through it, each split on
        its own random stream; the observations of one seed are kept at a time (memory)."""
        key = (task, variant, seed)
        if key not in self._obs:
            op = self.operator(task, variant, seed)
            observed = {}
            for split, stream in SPLIT_STREAMS.items():
                op.reset(stream)
                observed[split] = op.observe(self.splits(seed)[split])
            self._obs = {k: v for k, v in self._obs.items() if k[2] == seed}
            self._obs[key] = (op, observed)
        return self._obs[key]
