"""Bad input to ``run_benchmarks.py``: exit code 2, one line on stderr that starts with
``genbench: error:`` and names what was wrong (the key, value or path), and nothing written.

One case per kind of bad input, each run end to end through :func:`genbench.cli.main` on tiny
8x8 digits: every error comes from checking the config, the data or the variants, before any
training, so each case takes a fraction of a second. "Nothing written" is checked on the whole
``tmp_path`` tree, which holds ``--out`` and every input file.

Elsewhere: more bad variant parameters (``cell``, a non-list, duplicates) in tests/test_tasks.py;
bad model-config values, an unknown preset, a missing torchvision dataset or config file and
``report`` on a non-run folder in tests/test_runner.py; ``--resume`` with the resume tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.cli import main

TINY = ["--dataset", "digits", "--set", "data.n_train=60", "--set", "data.n_test=20",
        "--set", "data.n_negative=10", "--set", "n_eval=20", "--tasks", "reconstruction",
        "--models", "pca", "--latent-dims", "2"]
ROOT = os.geteuid() == 0  # root reads and writes whatever the permission bits say
needs_non_root = pytest.mark.skipif(ROOT, reason="root ignores permission bits")


def _png(path: Path, seed: int, size: int = 8) -> None:
    """A noise image (so PNG cannot compress it to a few bytes)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Bad inputs under ``tmp_path``: a regular file, data folders and YAML configs."""
    (tmp_path / "somefile").write_text("not a folder\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("text, not an image\n")
    for cls in ("cats", "dogs"):  # class sub-folders without images
        (tmp_path / "empty-classes" / cls).mkdir(parents=True)
    (tmp_path / "one-image").mkdir()
    _png(tmp_path / "one-image" / "a.png", 0)
    configs = {
        "syntax.yaml": "models: [abp\n",
        "list.yaml": "- models\n- tasks\n",
        "scalar.yaml": "just a sentence\n",
        "unknown-key.yaml": "bogus_key: 1\n",
        "python-tag.yaml": "models: !!python/object:collections.OrderedDict {}\n",
        "python-apply.yaml": f"!!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n",
    }
    for name, text in configs.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "latin1.yaml").write_bytes("models: [pca]\nout: \xe9t\xe9\n".encode("latin-1"))
    return tmp_path


def _tree(root: Path) -> list[str]:
    return sorted(f"{p.relative_to(root)}{'/' if p.is_dir() else ''}" for p in root.rglob("*"))


def _run(tmp_path: Path, args: list[str]) -> int:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    return main([*TINY, *args])


def _assert_bad_input(tmp_path: Path, capsys, args: list[str], names: list[str], run=_run) -> None:
    """``run(tmp_path, args)`` (default: a sweep with TINY in front) exits 2 with one line naming ``names``,
    and the whole tree under ``tmp_path`` is unchanged."""
    before = _tree(tmp_path)
    code = run(tmp_path, args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("genbench: error:"), err
    for name in names:
        assert name.replace("{tmp}", str(tmp_path)) in lines[0], f"{name!r} not named in: {lines[0]}"
    assert _tree(tmp_path) == before, "bad input wrote files"


# ---------------------------------------------------------------------------- config and overrides
CASES = [
    # unknown names
    ("unknown-model", ["--models", "nope"], ["unknown model 'nope'", "pca"]),
    ("unknown-task", ["--tasks", "nope"], ["unknown task 'nope'", "reconstruction"]),
    ("unknown-dataset", ["--dataset", "nope"], ["'nope'", "digits"]),
    ("unknown-task-parameter", ["--set", "task.inpainting.foo=1"], ["task.inpainting.foo", "fractions"]),
    ("unknown-task-section", ["--set", "task.nope.ks=1"], ["task.nope", "unknown task 'nope'"]),
    ("unknown-model-section", ["--set", "model.nope.lr=1"], ["model.nope", "unknown model 'nope'"]),
    # invalid variant parameters (checked against the 8x8 images before any fit)
    ("fraction-is-1", ["--tasks", "inpainting", "--set", "task.inpainting.fractions=[1.0]"],
     ["task.inpainting.fractions", "(0, 1)", "got 1.0"]),
    ("fraction-negative", ["--tasks", "inpainting", "--set", "task.inpainting.fractions=[-0.2]"],
     ["task.inpainting.fractions", "got -0.2"]),
    ("block-larger-than-image", ["--tasks", "inpainting", "--set", "task.inpainting.blocks=[4, 12]"],
     ["task.inpainting.blocks", "12 pixels", "8x8"]),
    ("block-zero", ["--tasks", "inpainting", "--set", "task.inpainting.blocks=[0]"],
     ["task.inpainting.blocks", "0 pixels"]),
    ("k-negative", ["--tasks", "projection", "--set", "task.projection.ks=[-3]"],
     ["task.projection.ks", "1..64", "got -3"]),
    ("k-above-pixels", ["--tasks", "projection", "--set", "task.projection.ks=[10, 100]"],
     ["task.projection.ks", "1..64", "got 100"]),
    ("k-empty", ["--tasks", "projection", "--set", "task.projection.ks=[]"], ["task.projection.ks is empty"]),
    # latent dimensions
    ("latent-dim-zero", ["--latent-dims", "0"], ["latent_dims", "got 0"]),
    ("latent-dim-negative", ["--latent-dims", "8,-3"], ["latent_dims", "got -3"]),
    ("latent-dim-not-int", ["--latent-dims", "ten"], ["--latent-dims", "'ten'", "ints"]),
    ("latent-dim-override-zero", ["--set", "latent_dims=[0]"], ["latent_dims", "got 0"]),
    # malformed YAML (--config)
    ("yaml-syntax", ["--config", "{tmp}/syntax.yaml"], ["{tmp}/syntax.yaml", "not valid YAML", "line 2"]),
    ("yaml-list", ["--config", "{tmp}/list.yaml"], ["{tmp}/list.yaml", "mapping", "got a list"]),
    ("yaml-scalar", ["--config", "{tmp}/scalar.yaml"], ["{tmp}/scalar.yaml", "mapping", "got a str"]),
    ("yaml-unknown-key", ["--config", "{tmp}/unknown-key.yaml"], ["unknown config key 'bogus_key'"]),
    ("yaml-python-tag", ["--config", "{tmp}/python-tag.yaml"],
     ["{tmp}/python-tag.yaml", "python/object", "safe_load", "line 1"]),
    ("yaml-python-apply", ["--config", "{tmp}/python-apply.yaml"],  # never runs: no 'pwned' file appears
     ["{tmp}/python-apply.yaml", "python/object/apply:os.system", "safe_load"]),
    # unknown or ill-typed overrides
    ("override-unknown-key", ["--set", "nope=1"], ["unknown config key 'nope'", "latent_dims"]),
    ("override-unknown-data-key", ["--set", "data.nope=1"], ["unknown config key 'data.nope'", "n_train"]),
    ("override-not-int", ["--set", "latent_dims=abc"], ["latent_dims", "integer", "'abc'"]),
    ("override-negative-count", ["--set", "data.n_train=-5"], ["n_train", "positive integer", "-5"]),
    ("override-count-not-int", ["--set", "data.n_train=many"], ["data.n_train", "integer", "'many'"]),
    ("override-negative-seed", ["--set", "seeds=[-1]"], ["seeds", "-1"]),
    ("override-bad-choice", ["--set", "device=gpu"], ["device", "auto, cpu, cuda", "'gpu'"]),
    ("override-not-bool", ["--set", "dry_run=maybe"], ["dry_run", "true or false", "'maybe'"]),
    ("override-section-not-mapping", ["--set", "data=5"], ["data must be a mapping", "5"]),
    ("override-without-equals", ["--set", "novalue"], ["key=value", "'novalue'"]),
    ("override-without-key", ["--set", "=1"], ["key=value", "'=1'"]),
    ("override-empty-key-part", ["--set", "model..lr=1"], ["key=value", "'model..lr=1'"]),
    # image folders (folder:PATH)
    ("folder-missing", ["--dataset", "folder:{tmp}/missing"], ["Cannot read the image folder", "{tmp}/missing"]),
    ("folder-is-a-file", ["--dataset", "folder:{tmp}/somefile"], ["{tmp}/somefile", "Not a directory"]),
    ("folder-empty", ["--dataset", "folder:{tmp}/empty"], ["no readable images", "{tmp}/empty"]),
    ("folder-no-images", ["--dataset", "folder:{tmp}/no-images"], ["no readable images", "{tmp}/no-images"]),
    ("folder-empty-classes", ["--dataset", "folder:{tmp}/empty-classes"],
     ["no readable images", "{tmp}/empty-classes"]),
    ("folder-one-image", ["--dataset", "folder:{tmp}/one-image"], ["{tmp}/one-image", "1 readable image"]),
    # seeds
    ("seed-too-large", ["--seeds", "2147483648"], ["seeds", "2^31", "2147483648"]),
    ("seed-not-int", ["--seeds", "a"], ["--seeds", "'a'"]),
    ("seeds-duplicate", ["--seeds", "0,0"], ["seeds lists a value twice"]),
    ("seeds-empty", ["--set", "seeds=[]"], ["seeds is empty"]),
    ("data-seed-negative", ["--set", "data.seed=-1"], ["DataConfig.seed", "-1"]),
    ("data-seed-too-large", ["--set", "data.seed=2147483648"], ["DataConfig.seed", "2147483648"]),
    # sizes
    ("image-size-zero", ["--image-size", "0"], ["image_size", "got 0"]),
    ("image-size-negative", ["--image-size", "-3"], ["image_size", "got -3"]),
    ("image-size-huge", ["--image-size", "100000"], ["image_size 100000", "1024"]),
    ("n-eval-zero", ["--set", "n_eval=0"], ["n_eval", "got 0"]),
    ("n-negative-zero", ["--set", "data.n_negative=0"], ["n_negative", "got 0"]),
    ("n-test-zero", ["--set", "data.n_test=0"], ["n_test", "got 0"]),
    ("n-train-float-text", ["--set", "data.n_train=1e9"], ["data.n_train", "integer", "'1e9'"]),
    ("models-empty", ["--models", ""], ["models is empty"]),
    ("latent-dims-empty", ["--latent-dims", ""], ["latent_dims is empty"]),
    # paths and encodings
    ("config-missing", ["--config", "{tmp}/missing.yaml"], ["{tmp}/missing.yaml", "No such file"]),
    ("config-not-utf8", ["--config", "{tmp}/latin1.yaml"], ["{tmp}/latin1.yaml", "not UTF-8"]),
    ("config-is-a-folder", ["--config", "{tmp}/empty"], ["{tmp}/empty"]),
    ("resume-missing", ["--resume", "{tmp}/missing"], ["--resume {tmp}/missing", "no such folder"]),
    ("resume-a-file", ["--resume", "{tmp}/somefile"], ["--resume {tmp}/somefile"]),
    ("resume-not-a-run", ["--resume", "{tmp}/empty"], ["{tmp}/empty"]),
    # switches and values
    ("cell-timeout-zero", ["--set", "cell_timeout=0"], ["cell_timeout", "got 0"]),
    ("workers-zero", ["--workers", "0"], ["--workers", "'0'"]),
    ("workers-word", ["--workers", "many"], ["--workers", "'many'"]),
    ("vary-split-not-bool", ["--set", "data.vary_split=3"], ["data.vary_split", "true or false", "3"]),
    ("preset-unknown", ["--preset", "nope"], ["--preset", "'nope'"]),
    ("executor-unknown", ["--executor", "nope"], ["--executor", "'nope'"]),
    ("langevin-bn-unknown", ["--models", "abp", "--set", "model.abp.langevin_bn=none"], ["langevin_bn", "'none'"]),
]

# the other commands (no sweep flags in front)
COMMAND_CASES = [
    ("report-no-run", ["report", "{tmp}/empty"], ["{tmp}/empty", "no results.csv"]),
    ("report-nothing", ["report"], ["report", "run folders"]),
    ("list-with-arguments", ["list", "extra"], ["list", "extra"]),
    ("tune-zero-trials", ["tune", "--dataset", "digits", "--models", "pca", "--trials", "0"], ["--trials", "0"]),
    ("tune-zero-budget", ["tune", "--dataset", "digits", "--models", "pca", "--budget", "0"], ["--budget"]),
    ("tune-validation-all", ["tune", "--dataset", "digits", "--models", "pca", "--validation-fraction", "1"],
     ["--validation-fraction", "(0, 1)"]),
    ("tune-unknown-model", ["tune", "--dataset", "digits", "--models", "nope"], ["unknown model 'nope'"]),
    ("tune-unknown-task", ["tune", "--dataset", "digits", "--models", "pca", "--objective", "nope"], ["nope"]),
    ("tune-unknown-variant", ["tune", "--dataset", "digits", "--models", "pca", "--objective", "inpainting:block-99"],
     ["no variant 'block-99'"]),
    ("tune-wrong-protocol", ["tune", "--dataset", "digits", "--models", "pca", "--objective",
                             "reconstruction:identity:learn-from-corrupted"], ["runs under clean-train"]),
    ("tune-unknown-metric", ["tune", "--dataset", "digits", "--models", "pca", "--metric", "nope"], ["nope"]),
    ("tune-metric-of-another-task", ["tune", "--dataset", "digits", "--models", "pca", "--metric", "fid"],
     ["does not score 'fid'"]),
    ("tune-resume-missing", ["tune", "--resume", "{tmp}/missing"], ["{tmp}/missing", "not a tuning folder"]),
]


@pytest.mark.parametrize("args, names", [c[1:] for c in COMMAND_CASES], ids=[c[0] for c in COMMAND_CASES])
def test_bad_input_to_the_other_commands_is_one_line_exit_2_nothing_written(inputs, capsys, monkeypatch, args,
                                                                              names):
    monkeypatch.chdir(inputs)  # a default --out (results/) would land here: the tree check sees it
    _assert_bad_input(inputs, capsys, args, names,
                      run=lambda tmp, argv: main([a.replace("{tmp}", str(tmp)) for a in argv]))


@pytest.mark.parametrize("args, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(inputs, capsys, args, names):
    _assert_bad_input(inputs, capsys, args, names)
    assert not (inputs / "pwned").exists()  # yaml.safe_load built no Python object


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_device_cuda_without_a_gpu(inputs, capsys):
    _assert_bad_input(inputs, capsys, ["--device", "cuda"], ["--device cuda", "no CUDA GPU", "--device cpu"])


@needs_non_root
def test_unreadable_data_folder(inputs, capsys):
    folder = inputs / "locked"
    folder.mkdir()
    _png(folder / "a.png", 0)
    folder.chmod(0)
    try:
        _assert_bad_input(inputs, capsys, ["--dataset", f"folder:{folder}"],
                          ["Cannot read the image folder", str(folder), "Permission denied"])
    finally:
        folder.chmod(0o755)


# ------------------------------------------------------------------------------- corrupt image files
def _folder_with_corrupt_files(root: Path, n_good: int) -> list[str]:
    """``n_good`` noise PNGs and three corrupt files: random bytes, an empty file and a PNG cut in
    half (its header opens, its pixels do not decode). Returns the corrupt files' names."""
    root.mkdir()
    for i in range(n_good):
        _png(root / f"ok{i}.png", i)
    _png(root / "truncated.png", 99)
    whole = (root / "truncated.png").read_bytes()
    (root / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "noise.png").write_bytes(np.random.default_rng(0).bytes(300))
    (root / "empty.jpg").write_bytes(b"")
    return ["empty.jpg", "noise.png", "truncated.png"]


def _skipped(caught, folder: Path, corrupt: list[str]) -> None:
    """One warning per corrupt file, naming it; none for the good files."""
    warned = [str(w.message) for w in caught if "Skipping unreadable image file" in str(w.message)]
    assert len(warned) == len(corrupt), warned
    for name in corrupt:
        assert sum(str(folder / name) in w for w in warned) == 1, (name, warned)


def test_corrupt_image_files_are_skipped_with_a_warning_naming_each(tmp_path, capsys):
    folder = tmp_path / "mixed"
    corrupt = _folder_with_corrupt_files(folder, n_good=6)
    with pytest.warns(UserWarning) as caught:
        code = _run(tmp_path, ["--dataset", f"folder:{folder}", "--set", "data.n_train=4",
                               "--set", "data.n_test=2", "--set", "n_eval=2"])
    assert code == 0, capsys.readouterr().err
    _skipped(caught, folder, corrupt)
    (run_dir,) = (tmp_path / "out").iterdir()
    assert (run_dir / "results.csv").is_file()


def test_folder_of_only_corrupt_images_is_exit_2(tmp_path, capsys):
    # The warnings (one per skipped file, naming it and the reason) are kept: they say *why* no
    # image was readable. pytest records them, so stderr holds only the error line here.
    folder = tmp_path / "all-corrupt"
    corrupt = _folder_with_corrupt_files(folder, n_good=0)
    with pytest.warns(UserWarning) as caught:
        _assert_bad_input(tmp_path, capsys, ["--dataset", f"folder:{folder}"],
                          ["no readable images", str(folder), "all 3 image files are corrupt"])
    _skipped(caught, folder, corrupt)


# ---------------------------------------------------------------------------- unwritable --out folder
def _assert_unwritable_out(tmp_path: Path, capsys, out: Path) -> None:
    before = _tree(tmp_path)
    code = _run(tmp_path, ["--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert lines and lines[-1].startswith("genbench: error:") and str(out) in lines[-1], lines
    assert _tree(tmp_path) == before, "bad input wrote files"
    if len(lines) > 1:  # the "N cells on ..." line comes first: --out is only tried after prepare()
        pytest.xfail("--out is first tried in Runner.run(), after the 'genbench: N cells' line: "
                     "check it in Runner.prepare()")


@pytest.mark.parametrize("sub", ["somefile", "somefile/sub"])
def test_out_folder_under_a_regular_file(inputs, capsys, sub):
    _assert_unwritable_out(inputs, capsys, inputs / sub)


@needs_non_root
def test_out_folder_not_writable(inputs, capsys):
    locked = inputs / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _assert_unwritable_out(inputs, capsys, locked / "runs")
    finally:
        locked.chmod(0o755)
