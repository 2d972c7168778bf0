"""Which dataset a run loads (:class:`DataConfig`) and the error a data problem raises, without torch:
the config and the command line read these before anything heavy is imported (:mod:`genbench.data`
loads the images)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

FOLDER_PREFIX = "folder:"


class DataError(ValueError):
    """A data problem the user can fix: says what was expected, what was found and what to do."""


MAX_IMAGE_SIZE = 1024  # pixels per side: beyond it one image batch would not fit a GPU, let alone the suite


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load and how to split it (caps of ``None`` mean the dataset's default).

    ``vary_split``: each run seed draws its own train/test split (:mod:`genbench.rundata`); off,
    every seed uses the split of ``seed``."""

    name: str = "mnist5k"
    n_train: int | None = None
    n_test: int | None = None
    n_negative: int = 200
    image_size: int | None = None
    root: str | None = None
    download: bool = False
    seed: int = 0
    vary_split: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DataError(f"DataConfig.name must be a dataset name or 'folder:PATH', got {self.name!r}; "
                            f"see list_datasets() for the choices.")
        for field in ("n_train", "n_test", "n_negative", "image_size"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise DataError(f"DataConfig.{field} must be a positive integer, got {value!r}; "
                                f"pass a value >= 1{' or None' if field != 'n_negative' else ''}.")
        if self.image_size is not None and self.image_size > MAX_IMAGE_SIZE:
            raise DataError(f"DataConfig.image_size {self.image_size} is larger than {MAX_IMAGE_SIZE}: the images "
                            f"alone would need {self.image_size ** 2 * 4 * 3 / 2 ** 30:.3g} GiB each (RGB float32); "
                            f"pass a side <= {MAX_IMAGE_SIZE}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2 ** 31:
            raise DataError(f"DataConfig.seed must be an integer in [0, 2^31), got {self.seed!r}.")
        if not isinstance(self.vary_split, bool):
            raise DataError(f"DataConfig.vary_split must be true or false, got {self.vary_split!r}.")


def data_settings(config: DataConfig) -> dict[str, Any]:
    """The data settings as hashed into a row's ``config_hash``: every field, ``vary_split`` only when
    on (a run from before the field existed keeps its hashes)."""
    out = dataclasses.asdict(config)
    if not out["vary_split"]:
        del out["vary_split"]
    return out
