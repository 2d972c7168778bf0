"""Tests for the tidy results table: CSV round trip, pivots, markdown summary, provenance helpers."""

import math

import pandas as pd
import pytest

from genbench.results import COLUMNS, ResultRow, ResultsWriter, config_hash, read_results, versions_string
from genbench.summary import markdown_table, summary_markdown, summary_table, write_summary


def _row(**overrides) -> ResultRow:
    fields = dict(
        run_id="r1", dataset="digits", model="abp", task="inpainting", variant="pepper50",
        level_name="fraction occluded", level=0.5, protocol="clean-train", split="test", latent_dim=8, seed=0, metric="mae", value=0.1, n_images=10,
        fit_seconds=1.5, eval_seconds=0.25, infer_seconds=0.01, infer_steps=20, device="cpu",
        config_hash="abc123def456", versions="genbench=0.1.0 torch=x",
    )  # fmt: skip
    fields.update(overrides)
    return ResultRow(**fields)


def _frame(rows: list[ResultRow]) -> pd.DataFrame:
    return pd.DataFrame([r.as_dict() for r in rows], columns=list(COLUMNS))


def test_row_fields_are_the_columns_in_order():
    row = _row()
    assert tuple(row.as_dict()) == COLUMNS
    assert row.status == "ok" and row.message == ""
    with pytest.raises(ValueError, match="status"):
        _row(status="crashed")


def test_writer_writes_header_once_and_round_trips(tmp_path):
    path = tmp_path / "run" / "results.csv"
    first = [_row(metric="mae", value=0.1 + 0.2, ci_low=0.25, ci_high=0.35, flag="degenerate: why"),
             _row(metric="psnr", value=float("nan"))]
    second = [_row(seed=1, value=1 / 3, status="failed", message="boom")]
    ResultsWriter(path).append(first)
    ResultsWriter(path).append(second)  # a new writer on an existing file (a resumed run) appends
    text = path.read_text()
    assert text.count("run_id,") == 1 and len(text.splitlines()) == 4

    df = read_results(path)
    assert tuple(df.columns) == COLUMNS and len(df) == 3
    for col in ("latent_dim", "seed", "n_images", "infer_steps"):
        assert df[col].dtype == "int64", col
    for col in ("value", "fit_seconds", "eval_seconds", "infer_seconds"):
        assert df[col].dtype == "float64", col
    assert df["message"].tolist() == ["", "", "boom"]
    assert df["value"].iloc[0] == 0.1 + 0.2  # floats round-trip exactly
    assert math.isnan(df["value"].iloc[1])
    assert df["value"].iloc[2] == 1 / 3
    assert df.iloc[0].to_dict() == {**first[0].as_dict()}


def test_awkward_message_round_trips(tmp_path):
    path = tmp_path / "results.csv"
    message = 'RuntimeError: "bad", shape (2, 3)\nnext line, with | pipe'
    ResultsWriter(path).append([_row(status="failed", message=message, value=float("nan"))])
    assert read_results(path)["message"].iloc[0] == message


def test_read_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_results(tmp_path / "nope.csv")


def test_writer_refuses_a_file_with_other_columns(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        ResultsWriter(path)


def _seeded_frame() -> pd.DataFrame:
    rows = [
        _row(model="abp", seed=0, value=0.10),
        _row(model="abp", seed=1, value=0.20),
        _row(model="vae", seed=0, value=0.30),
        _row(model="vae", seed=1, value=0.50),
        _row(model="abp", seed=0, variant="block16", value=0.40),
        _row(model="vae", seed=0, variant="block16", value=0.35),
        _row(model="abp", seed=0, metric="psnr", value=20.0),
        _row(model="abp", seed=1, metric="psnr", value=22.0),
        _row(model="vae", seed=0, metric="psnr", value=18.0),
        _row(model="vae", seed=1, metric="psnr", value=30.0),
        _row(model="vae", seed=2, value=float("nan"), status="failed", message="loss is NaN | diverged"),
        _row(model="pca", seed=0, task="projection", variant="k100", value=float("nan"), status="unsupported",
             message="no sampler"),
    ]  # fmt: skip
    return _frame(rows)


def test_summary_table_pivots_means_over_seeds():
    df = _seeded_frame()
    table = summary_table(df, metric="mae")
    assert list(table.index.names) == ["model", "latent_dim"]
    assert list(table.columns.names) == ["task", "variant", "protocol", "split"]
    pepper = ("inpainting", "pepper50", "clean-train", "test")
    block = ("inpainting", "block16", "clean-train", "test")
    assert table.loc[("abp", 8), pepper] == pytest.approx(0.15)
    assert table.loc[("vae", 8), pepper] == pytest.approx(0.40)  # the failed seed-2 row is left out
    assert table.loc[("vae", 8), block] == pytest.approx(0.35)
    assert summary_table(df, metric="mae", stat="count").loc[("vae", 8), pepper] == 2
    std = summary_table(df, metric="mae", stat="std")
    assert std.loc[("abp", 8), pepper] == pytest.approx(pd.Series([0.1, 0.2]).std())
    assert math.isnan(std.loc[("abp", 8), block])  # one seed: the column is kept, std is NaN
    with pytest.raises(ValueError, match="psnr"):
        summary_table(df, metric="ssim")


def test_summary_markdown_bold_best_std_and_failures():
    md = summary_markdown(_seeded_frame(), metrics=("mae", "psnr"))
    assert md.startswith("# ")
    assert "## inpainting: mae" in md and "## inpainting: psnr" in md
    assert "| model | pepper50 / clean-train / test | block16 / clean-train / test |" in md
    assert "| abp (d=8) | **0.1500 ± 0.0707** | 0.4000 |" in md  # lowest mae in bold, ± std at the mean's decimals
    assert "| vae (d=8) | 0.4000 ± 0.1414 | **0.3500** |" in md  # one seed: no std
    assert "| vae (d=8) | **24.00 ± 8.49** |" in md  # highest psnr in bold, 2 decimals
    assert "Failed or unsupported" in md
    assert "loss is NaN \\| diverged" in md and "no sampler" in md
    assert "12 rows; 3 seed(s): 0, 1, 2." in md


def test_write_summary(tmp_path):
    df = _seeded_frame()
    path = write_summary(df, tmp_path / "summary.md")
    assert path.read_text(encoding="utf-8") == summary_markdown(df, ("mae", "mse", "psnr"))


def test_markdown_table_escapes_pipes():
    assert markdown_table(["a", "b"], [["x|y", "1\n2"]]) == "| a | b |\n|---|---|\n| x\\|y | 1 2 |"


def test_config_hash_stable_and_order_independent():
    a = {"model": "abp", "latent_dim": 8, "sub": {"lr": 0.1, "steps": 20}}
    b = {"sub": {"steps": 20, "lr": 0.1}, "latent_dim": 8, "model": "abp"}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 12 and int(config_hash(a), 16) >= 0
    assert config_hash(a) != config_hash({**a, "latent_dim": 16})
    assert config_hash({}) == "44136fa355b3"  # sha256("{}")[:12]: stable across runs and machines


def test_versions_string_mentions_torch():
    import torch

    text = versions_string()
    assert f"torch={torch.__version__}" in text
    assert text.startswith("genbench=") and "numpy=" in text and "python=" in text
