"""The code's layering, read from the source: who may import whom, and where Redis scripts live."""

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

# package -> packages it must never import
FORBIDDEN = {
    "common": {"engine", "api", "worker", "naive", "sentimentalyzer", "harness", "benchmarks", "tests"},
    "engine": {"api", "worker", "naive", "sentimentalyzer", "harness", "benchmarks", "tests"},  # the model, no Redis
    "api": {"engine", "worker", "naive", "sentimentalyzer", "harness", "benchmarks", "tests"},  # no model in the API
    "worker": {"api", "naive", "sentimentalyzer", "harness", "benchmarks", "tests"},
    "naive": {"worker", "sentimentalyzer", "harness", "benchmarks", "tests"},
    "harness": {"engine", "api", "worker", "naive", "sentimentalyzer", "benchmarks", "tests"},
    "sentimentalyzer": {"benchmarks", "tests"},  # the command: on top of everything it starts
    "benchmarks": {"tests"},
}
FIRST_PARTY = set(FORBIDDEN) | {"tests"}


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (``from a import b``: ``a.b`` where that is a
    module, else ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" if module_path(f"{node.module}.{alias.name}") else node.module
                         for alias in node.names)
    return found


def imported_packages(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_downward(package):
    wrong = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
             for path in sources(package)}
    assert not {path: names for path, names in wrong.items() if names}


def test_runtimes_are_the_bottom_of_the_engine():
    """A backend is the Runtime interface, its entry in the registry and one module: nothing else of engine/."""
    wrong = {str(path.relative_to(ROOT)): sorted(name for name in imported_modules(path)
                                                 if name.startswith("engine.") and not name.startswith("engine.runtimes"))
             for path in sources("engine/runtimes")}
    assert not {path: names for path, names in wrong.items() if names}


def test_no_module_imports_itself_through_others():
    """No import circles among first-party modules (a package's __init__ run before its modules is not counted)."""
    graph = {module_name(path): {name for name in imported_modules(path)
                                 if name.split(".")[0] in FIRST_PARTY and module_path(name)}
             for package in FIRST_PARTY for path in sources(package)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles


def test_tests_import_the_benchmarks_only_to_test_them():
    # A test of a benchmark module is named for it; everything else (fixtures, helpers, e2e tests) stands on the
    # service's own code and the harness.
    importers = {str(p.relative_to(ROOT)) for p in sources("tests") if "benchmarks" in imported_packages(p)}
    assert all(Path(p).name.startswith("test_benchmark_") for p in importers), importers


def test_lua_lives_in_common_lua_and_is_bound_in_common_scripts_only():
    packages = ("api", "worker", "common", "engine", "naive", "harness", "sentimentalyzer")
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
