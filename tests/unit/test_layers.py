"""The code's layering, read from the source: who may import whom, and where Redis scripts live."""

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

# package -> packages it must never import
FORBIDDEN = {
    "common": {"api", "worker", "naive", "launcher", "harness", "benchmarks", "tests"},
    "api": {"worker", "naive", "launcher", "harness", "benchmarks", "tests"},
    "worker": {"api", "naive", "launcher", "harness", "benchmarks", "tests"},
    "naive": {"launcher", "harness", "benchmarks", "tests"},
    "harness": {"api", "worker", "naive", "launcher", "benchmarks", "tests"},
    "launcher": {"api", "worker", "naive", "benchmarks", "tests"},
    "benchmarks": {"tests"},
}


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_downward(package):
    wrong = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
             for path in sources(package)}
    assert not {path: names for path, names in wrong.items() if names}


def test_tests_import_the_benchmarks_only_to_test_them():
    # A test of a benchmark module is named for it; everything else (fixtures, helpers, e2e tests) stands on the
    # service's own code and the harness.
    importers = {str(p.relative_to(ROOT)) for p in sources("tests") if "benchmarks" in imported_packages(p)}
    assert all(Path(p).name.startswith("test_benchmark_") for p in importers), importers


def test_lua_lives_in_common_lua_and_is_bound_in_common_scripts_only():
    packages = ("api", "worker", "common", "naive", "harness", "launcher")
    files = [p for package in packages for p in sources(package)]
    assert {str(p.relative_to(ROOT)) for p in files if "redis.call(" in p.read_text()} == {"common/lua.py"}
    assert {str(p.relative_to(ROOT)) for p in files if "register_script" in p.read_text()} == {"common/scripts.py"}


def test_the_api_process_loads_no_model_runtime_and_no_numpy():
    """API processes are many and light: the model, its runtimes and numpy live in the workers."""
    import subprocess
    import sys

    # Tracing's modules only with tracing on (redis-py imports the OpenTelemetry SDK itself, for its opt-in metrics).
    heavy = ("numpy", "torch", "transformers", "onnxruntime", "api.tracing",
             "opentelemetry.exporter.otlp.proto.http.trace_exporter")
    probe = f"import sys, api.app; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
