"""The installed package, not the checkout: a wheel built from the project holds the model contract
(genbench.testing), the baselines, the tasks and the presets, and its checks pass from outside the repository."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import genbench, sys
from genbench.registry import MODELS
from genbench.testing import check_model
assert sys.argv[1] in genbench.__file__, genbench.__file__  # the installed copy, not the checkout
names = list(MODELS.as_dict())
assert {"abp", "vae", "dcgan", "rbm", "dbn", "pca", "lasso-dct", "zero"} <= set(names), names
for name in ("pca", "rbm", "zero"):
    out = check_model(name)
    assert all(v == "ok" or v.startswith("skipped") for v in out.values()), (name, out)
print("checked", len(names))
"""


def test_the_wheel_ships_the_contract_and_its_checks_pass_installed(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("genbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for member in ("genbench/testing.py", "genbench/tuning.py", "genbench/presets/default.yaml",
                   "baselines/vae.py", "tasks/likelihood.py"):
        assert member in names, member
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    work = tmp_path / "elsewhere"  # not the checkout: its genbench/ must not be found first
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", CHECK, str(target)], cwd=work, capture_output=True, text=True,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                               "HOME": str(tmp_path)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "checked" in done.stdout
