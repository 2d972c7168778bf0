"""Adding a model (docs/adding_a_model.md): the two registration routes and the two examples.

- decorator route: ``--plugin FILE.py`` / ``GENBENCH_PLUGINS`` imports a user's file before the CLI
  reads model names (``examples/autoencoder.py``);
- entry-point route: a package with a ``genbench.models`` entry point
  (``examples/genbench_plugin_example``), "installed" here by putting it and a dist-info folder on
  sys.path, which is all importlib.metadata looks at;
- both examples pass every check of genbench.testing (the contract the built-ins pass);
- a bad plug-in is one line on stderr and exit code 2, and registers nothing.

Every test runs on a copy of the registry (the ``isolated_registry`` fixture): nothing a plug-in
registers here leaks into other tests.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from genbench import registry
from genbench.cli import main
from genbench.registry import available_models, get_model, load_plugins, loaded_plugins
from genbench.results import read_results
from genbench.testing import CHECKS, Skip, run_check

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_FILE = ROOT / "examples" / "autoencoder.py"
EXAMPLE_PACKAGE = ROOT / "examples" / "genbench_plugin_example"
DRY = ["--dry-run", "--dataset", "digits", "--tasks", "reconstruction"]


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch, tmp_path_factory):
    """Each test starts from the built-ins and installed entry points (plug-ins already loaded, e.g.
    through GENBENCH_PLUGINS, are set aside) and leaves the registry, the plug-in record and
    sys.modules as it found them."""
    registry._load_all()
    saved = [(store, dict(store)) for store in (registry._MODELS, registry._TASKS, registry._PLUGINS)]
    modules = dict(sys.modules)
    aside = set(registry._PLUGINS.values())
    for store in (registry._MODELS, registry._TASKS):
        for name, value in list(store.items()):
            if getattr(value, "cls", value).__module__ in aside:
                del store[name]
    registry._PLUGINS.clear()
    for name in aside:
        sys.modules.pop(name, None)
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    yield
    for store, before in saved:
        store.clear()
        store.update(before)
    homes = (str(ROOT / "examples"), str(tmp_path_factory.getbasetemp()))
    for name in set(sys.modules) - set(modules):
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(homes):
            del sys.modules[name]
    sys.modules.update({name: modules[name] for name in aside if name in modules})


def install_example_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``pip install examples/genbench_plugin_example`` amounts to for importlib.metadata: the
    package importable and a dist-info whose entry_points.txt is the one its pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE_PACKAGE / "pyproject.toml").read_text())["project"]
    eps = project["entry-points"][registry.ENTRY_POINT_GROUP]
    dist = tmp_path / "genbench_plugin_example-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n"
                                           + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(EXAMPLE_PACKAGE / "src"))
    monkeypatch.syspath_prepend(str(tmp_path))


# ----------------------------------------------------------------------------- decorator route
def test_plugin_file_runs_beside_the_builtins(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the documented command, relative path and all
    code = main(["--plugin", "examples/autoencoder.py", "--models", "autoencoder,pca", *DRY, "--out", str(tmp_path)])
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    df = read_results(run_dir / "results.csv")
    assert set(df.model) == {"autoencoder", "pca"} and set(df.status) == {"ok"}
    assert set(df[df.model == "autoencoder"].split) == {"train", "test", "negative"}
    assert loaded_plugins() == [str(EXAMPLE_FILE)]  # absolute: what a resumed run reloads


def test_plugin_models_show_in_list_and_help(monkeypatch, capsys):
    assert "autoencoder" not in available_models()  # nothing leaked from the test before
    assert main(["list", "--plugin", str(EXAMPLE_FILE)]) == 0
    assert re.search(r"autoencoder +Plain autoencoder", capsys.readouterr().out)
    assert main(["--plugin", str(EXAMPLE_FILE), "--help"]) == 0  # loading twice is a no-op
    assert "autoencoder" in capsys.readouterr().out.split("models to compare")[1]


def test_plugins_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv(registry.PLUGINS_ENV, f" {EXAMPLE_FILE} ,")
    assert registry.plugins_from_env() == [str(EXAMPLE_FILE)]
    assert main(["--help"]) == 0  # a sweep's command line: GENBENCH_PLUGINS counts
    assert "autoencoder" in capsys.readouterr().out.split("models to compare")[1]


# --------------------------------------------------------------------------- entry-point route
def test_entry_point_package_is_found(tmp_path, monkeypatch, capsys):
    if "linear-ae" in available_models():
        pytest.skip("the example package is installed here: its entry point was found already")
    install_example_package(tmp_path, monkeypatch)
    registry.load_entry_points()  # the registry looks once; a running interpreter looks again
    assert get_model("linear-ae").cls.__module__ == "genbench_plugin_example.model"
    assert main(["list"]) == 0 and "linear-ae" in capsys.readouterr().out


def test_a_broken_entry_point_is_a_warning(tmp_path, monkeypatch):
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nbroken = no_such_module_gb\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match="could not load genbench model plug-in 'broken'"):
        registry.load_entry_points()
    assert "abp" in available_models()


# ------------------------------------------------ the examples pass the contract the built-ins pass
def test_the_contract_checks_are_found():
    assert {"shapes_and_range", "save_load", "beats_mean_image", "same_seed_same_numbers"} <= set(CHECKS)


@pytest.fixture(params=["autoencoder", "linear-ae"])
def example(request, tmp_path, monkeypatch) -> str:
    """An example model, registered the way a user would: by file or by entry point."""
    if request.param == "autoencoder":
        load_plugins([str(EXAMPLE_FILE)])
    else:
        install_example_package(tmp_path / "site", monkeypatch)
        registry.load_entry_points()
    return request.param


@pytest.mark.parametrize("check", list(CHECKS))
def test_example_passes_the_contract(example, check, tiny):
    try:
        run_check(example, check, tiny)  # genbench.testing: the checks a plug-in author runs
    except Skip as skip:
        pytest.skip(str(skip))


# ---------------------------------------------------------------------------------- bad plug-ins
def _file(source: str):
    """A plug-in file with this source, written into the test's folder."""
    def write(folder: Path) -> str:
        (folder / "gb_bad.py").write_text(source)
        return str(folder / "gb_bad.py")
    return write


BAD = {  # case: (folder -> what --plugin gets, the error it gives)
    "missing-file": (lambda folder: str(folder / "gb_missing.py"), "plug-in file .* does not exist"),
    "missing-module": (lambda folder: "no_such_module_gb.models",
                       "plug-in module 'no_such_module_gb.models' not found"),
    "import-error": (_file("import no_such_dependency_gb\n"),
                     "failed to import: ModuleNotFoundError: No module named 'no_such_dependency_gb'"),
    "name-taken": (_file("from genbench.registry import register_model\nfrom genbench.abp import ABP\n"
                         "register_model('gb-first')(ABP)\nregister_model('abp')(ABP)\n"),
                   "failed to import: a model named 'abp' is already registered"),
    "registers-nothing": (_file("x = 1\n"), "registered no model: decorate"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_plugin_is_one_line_and_exit_2(case, tmp_path, capsys):
    make_spec, message = BAD[case]
    before = set(available_models())
    assert main(["list", "--plugin", make_spec(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("genbench: error: plug-in") and re.search(message, captured.err)
    assert set(available_models()) == before and loaded_plugins() == []  # nothing half-registered
