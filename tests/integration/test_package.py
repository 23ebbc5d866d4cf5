"""The distribution: a wheel built from the tracked files holds every module of the service's import packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests.helpers import ROOT


def tracked() -> list[str]:
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT.resolve():
        pytest.skip("not a git checkout of the project (e.g. mutmut's copy): the tracked files are unknown")
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def shipped_packages() -> list[str]:
    """The top-level packages pyproject.toml's packages.find includes."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = {path.split("/")[0] for path in tracked() if path.endswith("/__init__.py") and path.count("/") == 1}
    return sorted(top for top in tops if any(fnmatch(top, pattern) for pattern in patterns))


def test_every_import_package_but_the_tests_and_benchmarks_is_shipped():
    tops = {path.split("/")[0] for path in tracked() if path.endswith("/__init__.py") and path.count("/") == 1}
    assert tops - set(shipped_packages()) == {"tests", "benchmarks"}


def test_the_wheel_holds_every_tracked_module_of_its_packages(tmp_path: Path):
    # Built from a copy of the tracked files only, as from a clean clone (nothing untracked, no build/ left here).
    source = tmp_path / "source"
    for path in tracked():
        if (ROOT / path).is_file():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, source / path)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("sentimentalyzer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if name.endswith(".py")}
    packages = shipped_packages()
    expected = {path for path in tracked() if path.endswith(".py") and path.split("/")[0] in packages}
    assert in_wheel == expected
