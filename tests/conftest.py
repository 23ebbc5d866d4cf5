from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import MINILM, SST2_DEV, RedisServer


@pytest.fixture(scope="session", autouse=True)
def export_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ONNX exports and BACKEND=auto's decisions go to a directory of this session (EXPORT_CACHE_DIR, as a user
    points it at a volume), inherited by every process a test starts: tests never write to ~/.cache, and each
    session measures afresh, which is the path a first start takes."""
    path = tmp_path_factory.mktemp("export-cache")
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
    """The tiny test model (trained for ~2 s), written once per session. ``TEST_MODEL_CACHE`` names a directory
    to keep it in across sessions (scripts/mutation: one pytest session per mutant)."""
    from engine.offline.make_model import build, is_model_dir

    cache = os.environ.get("TEST_MODEL_CACHE")
    if cache:
        path = Path(cache) / "tiny"
        return path if is_model_dir(path) else build("tiny", path)
    return build("tiny", tmp_path_factory.mktemp("models") / "tiny")


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
