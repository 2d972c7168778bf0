"""``benchmarks/reference_claims.py``: the README's claims recomputed from a results table. Checked on a
hand-made table whose means, stds, paired differences and floor comparisons are known."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import benchmark_module


@pytest.fixture(scope="module")
def claims():
    return benchmark_module("reference_claims")


def _rows(model, d, task, variant, protocol, split, metric, values):
    return [dict(model=model, latent_dim=d, task=task, variant=variant, protocol=protocol, split=split, metric=metric,
                 seed=s, value=v, status="ok") for s, v in enumerate(values)]


def _table() -> pd.DataFrame:
    rows = []
    rows += _rows("abp", 10, "reconstruction", "identity", "clean-train", "test", "mae", [0.04, 0.05, 0.06])
    rows += _rows("pca", 10, "reconstruction", "identity", "clean-train", "test", "mae", [0.09, 0.07, 0.08])
    rows += _rows("zero", None, "reconstruction", "identity", "clean-train", "test", "mae", [0.2, 0.2, 0.2])
    # learn-from-projections: abp beats the blank image in seeds 0 and 2 only; only two seeds of vae finished
    rows += _rows("abp", 10, "projection", "k-50", "learn-from-corrupted", "train", "mae", [0.10, 0.30, 0.12])
    rows += _rows("zero", None, "projection", "k-50", "learn-from-corrupted", "train", "mae", [0.13, 0.13, 0.13])
    rows += _rows("vae", 10, "projection", "k-50", "learn-from-corrupted", "train", "mae", [0.2, 0.4])
    rows += _rows("abp", 10, "inpainting", "block-10", "learn-from-corrupted", "train", "mae", [0.13, 0.14, 0.12])
    rows += _rows("vae", 10, "inpainting", "block-10", "learn-from-corrupted", "train", "mae", [0.12, 0.15, 0.11])
    failed = _rows("pca", 10, "projection", "k-50", "learn-from-corrupted", "train", "mae", [0.01])
    failed[0]["status"] = "failed"  # a failed row is never read
    return pd.DataFrame(rows + failed)


def test_claims_tables_hold_the_numbers(claims) -> None:
    text = claims.claims_markdown(_table())
    assert "| abp | 0.05000 ± 0.01000 |" in text  # mean ± sample std over the three seeds
    assert "| d=10 | 0.03000 ± 0.01732; lower in 0/3 |" in text  # pca − abp = 0.05, 0.02, 0.02
    assert "| zero | 0.2000 ± 0.0000 |" in text  # floors get no dagger themselves
    # abp's mean 0.1733 does not beat the blank image's 0.13: a dagger; vae finished 2 of 3 seeds: (2)
    assert "| abp (d=10) | — | — | 0.1733 ± 0.1102 † | — |" in text
    assert "0.3000 ± 0.1414 (2) †" in text
    assert "| abp (d=10) | — | — | 2/3 | — |" in text  # the floor counts, seed by seed
    assert "| vae (d=10) | — | — | 0/2 | — |" in text
    vae_abp = next(line for line in text.splitlines() if line.startswith("| vae − abp (d=10)"))
    assert "-0.003333 ± 0.011547; lower in 2/3" in vae_abp  # vae − abp = -0.01, +0.01, -0.01
    assert "| pca (d=10) |" not in text.split("## 4.")[1]  # the failed row is not read
    assert "| pca | 0.08000 ± 0.01000 |" in text and "| abp | 0.05000 ± 0.01000 |" in text  # both beat the floor


def test_claims_cli_writes_the_page_and_refuses_a_non_run(claims, tmp_path: Path, capsys) -> None:
    assert claims.main([str(tmp_path)]) == 2
    assert "not a genbench run folder" in capsys.readouterr().err
