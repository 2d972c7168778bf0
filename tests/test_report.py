"""The report: tables, plots and summary of one or more runs, regenerated from results.csv alone."""

from __future__ import annotations

import dataclasses

import math
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer, ErrorbarContainer

from genbench.cli import main
from genbench.figures import model_colors, report_figures
from genbench.report import write_report
from genbench.results import ResultRow, ResultsWriter, read_results
from genbench.summary import MAX_COLUMNS, aggregate, summary_markdown

SPLITS = {"clean-train": ("test",), "learn-from-corrupted": ("train",)}
TASKS = {"reconstruction": (["identity"], {"clean-train": ("train", "test")}),
         "inpainting": (["salt-pepper-0.5", "salt-pepper-0.7", "block-3", "block-5"], SPLITS),
         "projection": (["k-10", "k-20"], SPLITS)}
LEVELS = {"identity": ("", None, ""), "salt-pepper-0.5": ("fraction occluded", 0.5, ""),
          "salt-pepper-0.7": ("fraction occluded", 0.7, ""), "block-3": ("block size", 3, "px"),
          "block-5": ("block size", 5, "px"), "k-10": ("projections K", 10, ""), "k-20": ("projections K", 20, "")}
MODELS = {"abp": (4, 8), "pca": (4, 8), "biharmonic": (None,), "lasso-dct": (None,)}  # None: no latent code
REFERENCE_TASK = {"biharmonic": "inpainting", "lasso-dct": "projection"}
QUALITY = {"abp": 1.0, "pca": 2.0, "biharmonic": 1.5, "lasso-dct": 2.5}
FAILED = ("pca", 8, "inpainting", "block-3", "learn-from-corrupted", "train", 1)  # model, d, task, v, p, split, seed


def _value(model: str, d: int, variant: str, split: str, seed: int, metric: str) -> float:
    """Made-up errors: abp < biharmonic < pca < lasso-dct, larger d better, harder variants worse."""
    level = sum(ord(c) for c in variant) % 7 / 10
    mae = 0.01 * QUALITY[model] * (1 + level) * (1.2 if split == "test" else 1.0) / (1 + (d or 0) / 8) + 0.003 * seed
    if model == "biharmonic" and variant == "block-5":
        mae = 0.001 + 0.0005 * seed  # the reference wins one column
    return 10 / mae if metric == "psnr" else mae


def _rows(dataset: str = "digits", run_id: str = "r1", seeds=(0, 1), models=MODELS, tasks=tuple(TASKS)
          ) -> list[ResultRow]:
    rows = []
    for model, dims in models.items():
        for d in dims:
            for task, (variants, protocols) in TASKS.items():
                if task not in tasks or REFERENCE_TASK.get(model, task) != task:
                    continue
                for variant in variants:
                    for protocol, splits in protocols.items():
                        for split in splits:
                            for seed in seeds:
                                failed = (model, d, task, variant, protocol, split, seed) == FAILED
                                for metric in ("mae", "psnr"):
                                    value = math.nan if failed else _value(model, d, variant, split, seed, metric)
                                    rows.append(ResultRow(
                                        run_id=run_id, dataset=dataset, model=model, task=task, variant=variant,
                                        level_name=LEVELS[variant][0], level=LEVELS[variant][1],
                                        level_unit=LEVELS[variant][2], protocol=protocol, split=split, latent_dim=d, seed=seed, metric=metric,
                                        value=value, n_images=10, fit_seconds=1.0, eval_seconds=0.5,
                                        infer_seconds=0.01, infer_steps=5, device="cpu",
                                        status="failed" if failed else "ok", message="boom" if failed else "",
                                        config_hash="abc", versions="genbench=test"))
    return rows


def _dim(d: object) -> int | None:
    """A latent dim as read back from a CSV (empty: no latent code) -> int or None."""
    return None if d is None or pd.isna(d) else int(d)


def _write_run(folder: Path, rows: list[ResultRow]) -> Path:
    ResultsWriter(folder / "results.csv").append(rows)
    return folder


def _hand_stats(rows: list[ResultRow]) -> dict[tuple, tuple[float, float, int]]:
    """(dataset, task, metric, model, d, variant, protocol, split) -> (mean, std or nan, n) of the ok rows."""
    values = defaultdict(list)
    for r in rows:
        if r.status == "ok":
            key = (r.dataset, r.task, r.metric, r.model, r.latent_dim, r.variant, r.protocol, r.split)
            values[key].append(r.value)
    return {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else math.nan, len(v))
            for k, v in values.items()}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[ResultRow]]:
    rows = _rows()
    run = _write_run(tmp_path_factory.mktemp("runs") / "r1", rows)
    assert write_report([run]) == run
    return run, rows


def test_tables_hold_the_hand_computed_mean_and_std(report):
    run, rows = report
    expected = _hand_stats(rows)
    agg = pd.read_csv(run / "tables" / "aggregated.csv")
    assert len(agg) == len(expected)
    for r in agg.itertuples(index=False):
        mean, std, n = expected[(r.dataset, r.task, r.metric, r.model, _dim(r.latent_dim), r.variant, r.protocol,
                                 r.split)]
        assert r.mean == pytest.approx(mean, rel=1e-12) and r.count == n
        assert (math.isnan(r.std) and math.isnan(std)) or r.std == pytest.approx(std, rel=1e-9)
    wide = pd.read_csv(run / "tables" / "digits__inpainting__mae.csv", index_col=["model", "latent_dim"])
    mean, std, _ = expected[("digits", "inpainting", "mae", "abp", 4, "salt-pepper-0.7", "clean-train", "test")]
    assert wide.loc[("abp", 4), "salt-pepper-0.7/clean-train/test:mean"] == pytest.approx(mean, rel=1e-12)
    assert wide.loc[("abp", 4), "salt-pepper-0.7/clean-train/test:std"] == pytest.approx(std, rel=1e-9)
    # the failed seed is left out: one value, no std
    mean, _, n = expected[("digits", "inpainting", "mae", "pca", 8, "block-3", "learn-from-corrupted", "train")]
    assert n == 1 and wide.loc[("pca", 8), "block-3/learn-from-corrupted/train:mean"] == pytest.approx(mean)
    assert math.isnan(wide.loc[("pca", 8), "block-3/learn-from-corrupted/train:std"])
    refs = {m for m, d in wide.index if _dim(d) is None}
    assert refs == {"biharmonic"}  # lasso-dct runs on projections only
    assert {p.name for p in (run / "tables").iterdir()} == {"aggregated.csv"} | {
        f"digits__{t}__{m}.{ext}" for t in TASKS for m in ("mae", "psnr") for ext in ("csv", "tex")}


def test_best_per_column_is_marked(report):
    run, rows = report
    expected = _hand_stats(rows)
    best = {}
    for (ds, task, metric, model, d, v, p, s), (mean, _, _) in expected.items():
        col = (ds, task, metric, v, p, s)
        pick = max if metric == "psnr" else min
        if col not in best or pick(mean, best[col][1]) == mean:
            best[col] = ((model, d), mean)
    agg = pd.read_csv(run / "tables" / "aggregated.csv")
    marked = {(r.dataset, r.task, r.metric, r.variant, r.protocol, r.split): (r.model, _dim(r.latent_dim))
              for r in agg.itertuples(index=False) if r.best}
    assert marked == {col: who for col, (who, _) in best.items()}
    assert marked[("digits", "inpainting", "mae", "block-5", "clean-train", "test")] == ("biharmonic", None)
    assert marked[("digits", "inpainting", "psnr", "block-5", "clean-train", "test")] == ("biharmonic", None)
    assert marked[("digits", "projection", "mae", "k-10", "clean-train", "test")] == ("abp", 8)
    summary = (run / "summary.md").read_text()
    section = summary.split("## inpainting: mae")[1].split("\n## ")[0]  # cut into narrower tables (per protocol)
    lines = [x for x in section.splitlines() if x.startswith("| biharmonic |")]
    assert sum(x.count("**") for x in lines) == 2 * 2  # bold in the two block-5 columns of the inpainting tables
    assert all(x.count("|") - 1 <= 1 + MAX_COLUMNS for x in section.splitlines() if x.startswith("| "))


def test_every_plot_is_written_as_png_and_pdf(report):
    run, _ = report
    stems = {"reconstruction__mae__bars", "reconstruction__mae__latent-dim", "inpainting__mae__bars",
             "inpainting__mae__sweep", "inpainting__mae__latent-dim", "projection__mae__bars",
             "projection__mae__sweep", "projection__mae__latent-dim", "cost__infer-seconds-vs-mae"}
    expected = {f"digits__{s}.{ext}" for s in stems for ext in ("png", "pdf")}
    assert {p.name for p in (run / "plots").iterdir()} == expected
    for name in expected:
        head = (run / "plots" / name).read_bytes()[:8]
        assert head.startswith(b"\x89PNG" if name.endswith(".png") else b"%PDF"), name
        assert (run / "plots" / name).stat().st_size > 1000, name


def test_a_model_has_one_colour_in_every_plot(report):
    run, _ = report
    df = read_results(run / "results.csv")
    colors = model_colors(df["model"])
    assert colors == model_colors(reversed(df["model"].tolist()))  # order of appearance does not matter
    assert len(set(colors.values())) == len(colors)
    seen = defaultdict(set)  # model -> {(plot, colour)}
    for stem, fig in report_figures(aggregate(df), colors=colors):
        for label, rgba in _drawn_colours(fig):
            seen[label.split(" (d=")[0]].add((stem, rgba))
    for model, where in seen.items():
        assert {c for _, c in where} == {to_rgba(colors[model])}, model
        assert len({s for s, _ in where}) >= 3, model  # really compared across plots
    assert set(seen) == {"abp", "pca", "biharmonic", "lasso-dct"}


def _drawn_colours(fig) -> list[tuple[str, tuple]]:
    """(label, rgba) of every labelled bar group, error-bar line and horizontal line of a figure."""
    found = []
    for ax in fig.axes:
        for container in ax.containers:
            if isinstance(container, BarContainer):
                found += [(container.get_label(), to_rgba(p.get_facecolor())) for p in container.patches]
            elif isinstance(container, ErrorbarContainer) and container.lines[0] is not None:  # not a bar's
                found.append((container.get_label(), to_rgba(container.lines[0].get_color())))
        found += [(line.get_label(), to_rgba(line.get_color())) for line in ax.lines
                  if not line.get_label().startswith("_")]
    return found


def test_a_report_regenerated_from_the_csv_alone_is_identical(report, tmp_path):
    run, _ = report
    copy = shutil.copytree(run, tmp_path / "copy")
    before = {p.relative_to(copy): p.read_bytes() for p in [copy / "summary.md", *(copy / "tables").iterdir()]}
    for name in ("summary.md",):
        (copy / name).unlink()
    shutil.rmtree(copy / "tables")
    old_plots = sorted((copy / "plots").iterdir())
    assert old_plots and (copy / ".genbench-report.json").is_file()
    (copy / "plots" / "figure1.png").write_bytes(b"mine")  # the user's own file: never deleted
    (copy / "tables" / "mine.csv").parent.mkdir()
    (copy / "tables" / "mine.csv").write_text("a\n1\n")
    write_report([copy], plot_metrics=())  # summary and tables do not depend on the plots (time)
    (copy / "tables" / "mine.csv").unlink()
    after = {p.relative_to(copy): p.read_bytes() for p in [copy / "summary.md", *(copy / "tables").iterdir()]}
    assert after == before
    assert not any(p.exists() for p in old_plots)  # the previous report's plots, not drawn now: removed
    assert (copy / "plots" / "figure1.png").read_bytes() == b"mine"
    # one run, one dataset: summary.md is the run's summary
    df = read_results(copy / "results.csv")
    assert (copy / "summary.md").read_text() == summary_markdown(df)


def test_two_datasets_in_one_report(tmp_path):
    a = _write_run(tmp_path / "a", _rows("digits", "ra", seeds=(0,), models={"pca": (4,), "biharmonic": (0,)},
                                         tasks=("inpainting",)))
    b = _write_run(tmp_path / "b", _rows("mnist5k", "rb", seeds=(0,), models={"abp": (4,)}))
    out = write_report([a, b])
    assert out.parent == tmp_path and out.name.startswith("report-")
    tables = {p.name for p in (out / "tables").iterdir() if p.suffix == ".csv"}
    assert tables == {"aggregated.csv", "digits__inpainting__mae.csv", "digits__inpainting__psnr.csv"} | {
        f"mnist5k__{t}__{m}.csv" for t in TASKS for m in ("mae", "psnr")}
    summary = (out / "summary.md").read_text()
    assert "## Dataset: digits" in summary and "## Dataset: mnist5k" in summary and "`../a`" in summary
    assert "### inpainting: mae (lower is better)" in summary
    agg = pd.read_csv(out / "tables" / "aggregated.csv")
    assert set(agg["dataset"]) == {"digits", "mnist5k"}
    assert agg.groupby(["dataset", "task", "metric", "variant", "protocol", "split"])["best"].sum().eq(1).all()
    assert (out / "plots" / "mnist5k__inpainting__mae__sweep.png").exists()
    assert not (out / "plots" / "mnist5k__inpainting__mae__latent-dim.png").exists()  # one latent dim
    assert not (a / "summary.md").exists()  # the runs are inputs only


def test_runs_of_one_dataset_pool_over_seeds_and_clashing_seeds_are_refused(tmp_path, capsys):
    rows0, rows1 = _rows(seeds=(0,)), _rows(seeds=(1,), run_id="r2")
    a, b = _write_run(tmp_path / "a", rows0), _write_run(tmp_path / "b", rows1)
    out = write_report([a, b], tmp_path / "pooled", plot_metrics=())  # tables only (time)
    expected = _hand_stats(rows0 + rows1)
    agg = pd.read_csv(out / "tables" / "aggregated.csv")
    r = agg[(agg.model == "abp") & (agg.latent_dim == 8) & (agg.variant == "k-20") & (agg.split == "train")
            & (agg.metric == "mae")].iloc[0]
    mean, std, n = expected[("digits", "projection", "mae", "abp", 8, "k-20", "learn-from-corrupted", "train")]
    assert n == 2 and r["count"] == 2 and r["seeds"] == "0 1"
    assert r["mean"] == pytest.approx(mean) and r["std"] == pytest.approx(std)
    assert "± " in (out / "summary.md").read_text()

    # the very same result in two runs is one result (e.g. a reference method in two latent-dim sweeps)
    same = _write_run(tmp_path / "same", _rows(seeds=(1,), run_id="r3", models={"pca": (4,)}))
    assert write_report([b, same], tmp_path / "deduplicated", plot_metrics=()).is_dir()
    # a different value for the same seed of the same cell is a conflict
    other = [dataclasses.replace(r, value=r.value + 0.5) for r in _rows(seeds=(1,), run_id="r3", models={"pca": (4,)})]
    clash = _write_run(tmp_path / "c", other)
    assert main(["report", str(b), str(clash), "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "both hold seed 1 of pca (d=4)" in err, err
    assert not (tmp_path / "never").exists()


def test_only_failed_rows_or_one_model_still_report(tmp_path):
    failed = [ResultRow(**{**r.as_dict(), "status": "failed", "value": math.nan, "message": "nan loss"})
              for r in _rows(seeds=(0,), models={"abp": (4,)})]
    run = _write_run(tmp_path / "failed", failed)
    write_report([run])
    assert "Failed or unsupported cells" in (run / "summary.md").read_text()
    assert pd.read_csv(run / "tables" / "aggregated.csv").empty
    assert not (run / "plots").exists() or not any((run / "plots").iterdir())

    one = _write_run(tmp_path / "one", _rows(seeds=(0,), models={"pca": (4,)}, tasks=("inpainting",)))
    write_report([one])
    assert (one / "plots" / "digits__inpainting__mae__bars.png").exists()


@pytest.mark.parametrize("make, match", [
    (lambda d: d.mkdir(), "is not a genbench run folder (no results.csv in it)"),
    (lambda d: (d.mkdir(), (d / "results.csv").write_text("a,b\n1,2\n")), "is missing columns"),
    (lambda d: (d.mkdir(), (d / "results.csv").write_bytes(b"\xff\xfe\x00garbage\n\x00")), "cannot read"),
])
def test_a_bad_folder_is_one_line_and_exit_2(tmp_path, capsys, make, match):
    good = _write_run(tmp_path / "good", _rows(seeds=(0,), models={"pca": (4,)}))
    bad = tmp_path / "bad"
    make(bad)
    assert main(["report", str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("genbench: error:") and match in err, err
    assert not (tmp_path / "out").exists() and not (good / "summary.md").exists()


def test_cli_report_of_one_run_writes_into_the_run_folder(tmp_path, capsys):
    run = _write_run(tmp_path / "run", _rows(seeds=(0,), models={"abp": (4,), "biharmonic": (0,)},
                                             tasks=("inpainting",)))
    assert main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    assert "# genbench results" in captured.out and str(run) in captured.err
    assert (run / "summary.md").exists() and (run / "tables" / "aggregated.csv").exists()
    assert (run / "plots" / "digits__inpainting__mae__bars.pdf").exists()
    assert main(["report"]) == 2


# --------------------------------------------------------------- paper-ready tables: LaTeX, digits, ranking
def test_mean_and_std_share_their_decimals():
    from genbench.metrics import Metric

    m = Metric("err", "an error")
    assert m.format_pair(0.02251, 7.189e-05) == "0.02251 ± 0.00007"
    assert m.format_pair(12.3456, 0.5) == "12.35 ± 0.50"
    assert Metric("db", "psnr", decimals=2).format_pair(20.123, 0.004) == "20.12 ± 0.00"


def test_the_negative_split_is_not_ranked_unless_the_metric_is_of_ood_detection():
    rows = [dataclasses.replace(r, split=s) for r in _rows(tasks=("reconstruction",), seeds=(0,))
            for s in ("test", "negative") if r.split == "test"]
    rows += [dataclasses.replace(r, metric="ood_auroc", value=0.5 + 0.1 * i) for i, r in enumerate(rows)
             if r.split == "negative" and r.metric == "mae"]
    agg = aggregate(pd.DataFrame([r.as_dict() for r in rows]))
    assert not agg[(agg.split == "negative") & (agg.metric == "mae")]["best"].any()
    assert agg[(agg.split == "test") & (agg.metric == "mae")]["best"].sum() == 1
    assert agg[(agg.split == "negative") & (agg.metric == "ood_auroc")]["best"].sum() == 1


def test_a_latex_table_beside_every_wide_csv(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ResultsWriter(run_dir / "results.csv").append(_rows())
    write_report([run_dir])
    tex = (run_dir / "tables" / "digits__inpainting__mae.tex").read_text()
    assert tex.startswith("% digits: inpainting, mae") and "n = 1/2 seed(s)" in tex.splitlines()[0]  # one cell failed a seed
    assert "\\begin{tabular}{l" in tex and "\\toprule" in tex and tex.rstrip().endswith("\\end{tabular}")
    body = [line for line in tex.splitlines() if line.startswith("abp (d=4)")]
    assert body and "\\pm" in body[0] and body[0].count("&") == tex.splitlines()[3].count("&")
    assert "\\mathbf{" in tex
    csvs = {p.stem for p in (run_dir / "tables").glob("*__*.csv")}
    assert csvs == {p.stem for p in (run_dir / "tables").glob("*.tex")}


def test_a_plot_not_drawn_says_why_in_summary_and_in_the_log(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ResultsWriter(run_dir / "results.csv").append(_rows(models={"abp": (4,), "pca": (4,)}, seeds=(0,)))
    heard = []
    write_report([run_dir], log=heard.append)
    text = (run_dir / "summary.md").read_text()
    assert "## Plots not drawn" in text and "no latent-dim plot for digits reconstruction mae: 1 latent dim(s)" in text
    assert "trade-off" not in text  # neither task of the trade-off ran: nothing to say
    assert len(heard) == 1 and "plot(s) not drawn" in heard[0]


def test_rows_of_different_torch_versions_are_pooled_with_a_warning(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seed, torch_version in ((a, 0, "2.1.0"), (b, 1, "2.4.1")):
        folder.mkdir()
        rows = [dataclasses.replace(r, versions=f"genbench=0.1 torch={torch_version} numpy=1.26")
                for r in _rows(seeds=(seed,))]
        ResultsWriter(folder / "results.csv").append(rows)
    heard = []
    out = write_report([a, b], tmp_path / "rep", log=heard.append)
    text = (out / "summary.md").read_text()
    assert "## Mixed versions" in text and "torch=2.1.0" in text and "torch=2.4.1" in text
    assert any("different versions" in line for line in heard)
    single = write_report([a], tmp_path / "one")
    assert "Mixed versions" not in (single / "summary.md").read_text()


def test_an_old_table_without_level_and_flag_columns_is_reported_with_them(tmp_path):
    """results/reference/mnist5k-default-corrupted predates the level, ci and flag columns (and wrote latent dim
    0 for a method without a code): the report rebuilds them from the registered variants and models."""
    src = Path(__file__).resolve().parents[1] / "results" / "reference" / "mnist5k-default-corrupted"
    run = tmp_path / "old"
    run.mkdir()
    for name in ("results.csv", "config.json"):
        shutil.copy(src / name, run / name)
    assert "level_name" not in (run / "results.csv").read_text().splitlines()[0]
    write_report([run], plot_metrics=())
    agg = pd.read_csv(run / "tables" / "aggregated.csv", keep_default_na=False)
    k20 = agg[(agg.task == "projection") & (agg.variant == "k-20")]
    assert set(k20.level_name) == {"projections K"} and set(k20.level.astype(float)) == {20.0}
    lasso = agg[agg.model == "lasso-dct"]
    assert set(lasso.latent_dim) == {""}  # no latent code: no latent dim (the old table said 0)
    pca = agg[(agg.model == "pca") & (agg.task == "projection")]
    assert (pca[pca.protocol == "learn-from-corrupted"].flag != "").all()
    assert (pca[pca.protocol == "clean-train"].flag == "").all()
    assert "‡" in (run / "summary.md").read_text()
