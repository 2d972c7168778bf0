"""``benchmarks/reference_claims.py``: the README's claims recomputed from a results table. Checked on a
hand-made table whose means, stds, paired differences, floor marks and counts are known."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import benchmark_module

DEGENERATE = "learns nothing of the null space"


@pytest.fixture(scope="module")
def claims():
    return benchmark_module("reference_claims")


def _rows(model, d, task, variant, protocol, split, values, metric="mae", seeds=None, flag=""):
    from genbench.results import COLUMNS, FLOAT_COLUMNS

    blank = {c: (float("nan") if c in FLOAT_COLUMNS else "") for c in COLUMNS}
    return [blank | dict(run_id="r", dataset="digits", model=model, latent_dim=d, task=task, variant=variant,
                         protocol=protocol, split=split, metric=metric, seed=s, value=v, status="ok", flag=flag,
                         n_images=10, infer_steps=0, device="cpu", config_hash=f"{model}{d}{task}{variant}",
                         versions="torch=2")
            for s, v in zip(seeds or range(len(values)), values)]


def _table() -> pd.DataFrame:
    rec = ("reconstruction", "identity", "clean-train", "test")
    k50 = ("projection", "k-50", "learn-from-corrupted", "train")
    block = ("inpainting", "block-10", "learn-from-corrupted", "train")
    rows = []
    rows += _rows("abp", 10, *rec, [0.04, 0.05, 0.06])
    rows += _rows("pca", 10, *rec, [0.09, 0.07, 0.08])
    rows += _rows("zero", None, *rec, [0.2, 0.2, 0.2])
    # two floors whose best differs by seed: abp (0.12, 0.12) beats the best floor mean (0.15, as summary.md
    # compares) but neither seed's best floor (0.10)
    rows += _rows("abp", 10, *k50, [0.12, 0.12])
    rows += _rows("zero", None, *k50, [0.10, 0.20])
    rows += _rows("mean-image", None, *k50, [0.20, 0.10])
    rows += _rows("vae", 10, *k50, [0.30])  # one seed of three finished
    rows += _rows("pca", 10, *k50, [0.5, 0.5], flag=DEGENERATE)
    rows += _rows("abp", 10, *block, [0.13, 0.14, 0.12])
    rows += _rows("vae", 10, *block, [0.15, 0.10], seeds=[1, 2])  # paired on seeds 1 and 2 only
    failed = _rows("dcgan", 10, *rec, [0.01])
    failed[0]["status"] = "failed"  # a failed row is never read
    table = pd.DataFrame(rows + failed)
    table["latent_dim"] = table["latent_dim"].astype("Int64")  # as results.csv holds it: 10, or empty
    return table


def test_claims_tables_hold_the_numbers(claims) -> None:
    text = claims.claims_markdown(_table())
    assert text.startswith("# Reference claims") and "Seeds 0, 1, 2;" in text
    assert "| abp | 0.05000 ± 0.01000 |" in text  # mean ± sample std over the three seeds
    assert "| pca | 0.08000 ± 0.01000 |" in text and "| zero | 0.2000 ± 0.0000 |" in text
    assert "| d=10 | 0.03000 ± 0.01732; lower in 0/3 |" in text  # pca − abp = 0.05, 0.02, 0.02
    assert "dcgan" not in text  # the failed row
    section4 = text.split("## 4.")[1].split("## 5.")[0]
    assert "| abp (d=10) | — | — | 0.1200 ± 0.0000 (2) | — |" in section4  # beats the floors' best mean: no †
    assert "| vae (d=10) | — | — | 0.3000 (1) † | — |" in section4
    assert "| pca (d=10) | — | — | 0.5000 ± 0.0000 (2) † ‡ |" in section4  # degenerate: marked as summary.md does
    # seed by seed against that seed's best floor (0.10 in both): abp never beats it; pca's row is not counted
    assert "| abp (d=10) | — | — | 0/2 | — |" in section4 and "| vae (d=10) | — | — | 0/1 | — |" in section4
    assert "| pca (d=10) | — | — | ‡ | — |" not in section4
    vae_abp = next(line for line in text.splitlines() if line.startswith("| vae − abp (d=10)"))
    assert "-0.005000 ± 0.021213; lower in 1/2" in vae_abp  # seeds 1 and 2: vae − abp = +0.01, -0.02


def test_claims_cli_writes_the_page_and_refuses_bad_input(claims, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _table().to_csv(run / "results.csv", index=False)
    assert claims.main([str(run)]) == 0
    assert "| abp | 0.05000 ± 0.01000 |" in (run / "claims.md").read_text()
    assert claims.main([str(tmp_path / "none")]) == 2
    assert "not a genbench run folder" in capsys.readouterr().err
    two = pd.concat([_table(), _table().assign(dataset="celeba")])
    two.to_csv(run / "results.csv", index=False)
    assert claims.main([str(run), "--out", str(tmp_path / "c.md")]) == 2
    assert "one dataset's; the table holds 2" in capsys.readouterr().err


def test_compare_tables_pairs_cells_by_seed_and_scales_by_the_seed_spread() -> None:
    compare = benchmark_module("compare_tables").compare
    before = _table()
    after = before.copy()
    moved = (after.model == "abp") & (after.task == "reconstruction")
    after.loc[moved, "value"] = after.loc[moved, "value"] + [0.001, -0.002, 0.0]
    rows = compare(before, after, ["mae"])
    abp = rows[(rows.model == "abp") & (rows.task == "reconstruction")].iloc[0]
    assert abp.seeds == 3 and abp.max_abs_diff == pytest.approx(0.002) and abp.seed_std == pytest.approx(0.01)
    assert abp.ratio == pytest.approx(0.2) and abp.mean_ratio == pytest.approx(0.001 / 3 / 0.01)
    assert (rows.drop(index=abp.name).max_abs_diff == 0).all()  # nothing else moved
    assert "dcgan" not in set(rows.model)  # failed rows are not compared
    assert compare(before, after[after.seed == 5]).empty
