"""Shared fixtures: tiny real data (scikit-learn's 8x8 digits) and a results folder per test."""

from __future__ import annotations

import pytest
import torch

from genbench.data import DataConfig, DataSplits, load_data


@pytest.fixture(scope="session")
def tiny() -> DataSplits:
    """200 train / 50 test real 8x8 digits in [-1, 1] (no network)."""
    return load_data(DataConfig(name="digits", n_train=200, n_test=50, n_negative=20))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)  # tests are the edge: they seed, library code does not
