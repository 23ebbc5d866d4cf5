from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import MINILM, SST2_DEV, RedisServer

TIERS = ("unit", "integration", "e2e")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes share the machine's cores (scripts/test runs pytest-xdist): one math thread each, as
    # E2E_SETTINGS gives every service process one, so that no process's thread pool spins against another's.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def tier_of(item: pytest.Item) -> str:
    return Path(str(item.path)).relative_to(Path(__file__).parent).parts[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with its tier, its directory under tests/ (``-m unit``, ``-m "not e2e"``), and the
    slowest tier runs first: pytest-xdist hands out a file at a time in this order (scripts/test turns off its own
    reordering by test count), so the long e2e files start at once and the many short unit files fill the gaps at
    the end, instead of one long file running alone while the other test process has nothing left."""
    for item in items:
        tier = tier_of(item)
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
    slowest_first = {tier: rank for rank, tier in enumerate(reversed(TIERS))}
    items.sort(key=lambda item: slowest_first.get(tier_of(item), len(TIERS)))  # stable: files stay in order


def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of this test run, shared by its pytest-xdist workers (each has a base temp dir of its own under
    the run's); the base temp dir itself without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def export_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ONNX exports and BACKEND=auto's decisions go to a directory of this run (EXPORT_CACHE_DIR, as a user points
    it at a volume shared by the workers of a deployment), inherited by every process a test starts: tests never
    write to ~/.cache, and each run measures afresh, which is the path a first start takes. The xdist workers share
    it as a deployment's workers do: the first start on a model and policy measures, the others read its decision
    (file locks, engine/autotune/probe.py)."""
    path = run_dir(tmp_path_factory) / "export-cache"
    path.mkdir(exist_ok=True)
    before = os.environ.get("EXPORT_CACHE_DIR")
    os.environ["EXPORT_CACHE_DIR"] = str(path)
    yield path
    if before is None:
        del os.environ["EXPORT_CACHE_DIR"]
    else:
        os.environ["EXPORT_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def key_prefix() -> str:
    """A prefix of its own per test: tests share one redis-server without seeing each other's keys."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test model (trained for ~2 s), written once per run (the xdist workers take turns on a lock: one
    trains, the others read it). ``TEST_MODEL_CACHE`` names a directory to keep it in across sessions
    (scripts/mutation: one pytest session per mutant)."""
    from filelock import FileLock

    from engine.offline.make_model import build, is_model_dir

    directory = Path(os.environ.get("TEST_MODEL_CACHE") or run_dir(tmp_path_factory) / "models")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tiny"
    with FileLock(str(directory / "tiny.lock")):
        return path if is_model_dir(path) else build("tiny", path)


@pytest.fixture(scope="session")
def tiny_predictor(tiny_model: Path):
    from engine.hf_predictor import TransformersPredictor
    from engine.settings import ModelSettings

    return TransformersPredictor(ModelSettings(model=str(tiny_model), device="cpu", torch_threads=1))


@pytest.fixture(scope="session")
def shared_minilm() -> Path:
    if not (MINILM / "config.json").is_file() or not SST2_DEV.is_file():
        pytest.skip("../shared (SST-2 dev and the trained MiniLM) is not present")
    return MINILM
