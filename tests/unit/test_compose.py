"""Static checks of docker-compose.yml and the Dockerfile (no Docker engine runs here)."""

import importlib.util
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def python_module(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], f"entry points run as python -m <module>: {command}"
    return command[2]


def test_services_present():
    assert {"redis", "api", "worker", "model-init"} <= set(SERVICES)


def test_commands_are_the_projects_real_entry_points():
    for name in ("api", "worker", "model-init"):
        module = python_module(SERVICES[name]["command"])
        assert importlib.util.find_spec(module) is not None, f"{name}: {module} does not exist"
    assert SERVICES["api"]["command"] == ["python", "-m", "api"]
    assert SERVICES["worker"]["command"] == ["python", "-m", "worker"]
    assert SERVICES["model-init"]["command"][3:5] == ["bench", "/models/bench"]


def test_redis_never_evicts_and_is_health_checked():
    command = " ".join(SERVICES["redis"]["command"])
    assert "--maxmemory-policy noeviction" in command
    assert SERVICES["redis"]["healthcheck"]["test"][-1] == "ping"


def test_the_cache_redis_is_opt_in_bounded_by_memory_and_the_api_can_be_pointed_at_it():
    cache = SERVICES["redis-cache"]
    assert cache["profiles"] == ["cache"]  # not started by a plain `docker compose up`
    command = " ".join(cache["command"])
    assert "--maxmemory 256mb" in command and "--maxmemory-policy allkeys-lru" in command
    env = SERVICES["api"]["environment"]
    assert env["CACHE_TTL_S"] == "${CACHE_TTL_S:-0}" and env["CACHE_REDIS_URL"] == "${CACHE_REDIS_URL:-}"


def test_every_long_running_service_has_a_healthcheck_using_real_code():
    for name in ("redis", "api", "worker"):
        assert "healthcheck" in SERVICES[name], name
    worker_check = SERVICES["worker"]["healthcheck"]["test"]
    assert importlib.util.find_spec(python_module(worker_check[1:])) is not None
    assert "/healthz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_worker_scales():
    worker = SERVICES["worker"]
    # --scale worker=N needs no fixed names or host ports.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["model-init"]["condition"] == "service_completed_successfully"


def test_model_cache_lives_on_a_volume_and_settings_come_from_env():
    assert "models" in COMPOSE["volumes"]
    for name in ("worker", "model-init"):
        assert "models:/models" in SERVICES[name]["volumes"]
    env = SERVICES["worker"]["environment"]
    assert env["REDIS_URL"] == "redis://redis:6379/0" and "MODEL" in env and env["HF_HOME"].startswith("/models")
    assert SERVICES["api"]["environment"]["HOST"] == "0.0.0.0"


def test_environment_names_are_real_settings():
    from tests.helpers import setting_names

    known = setting_names() | {"HF_HOME"}
    for name in ("api", "worker"):
        unknown = set(SERVICES[name]["environment"]) - known
        assert not unknown, f"{name} sets unknown variables {unknown}"


def test_dockerfile_installs_the_locked_requirements_and_copies_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile
    for package in ("common", "engine", "api", "worker", "naive", "sentimentalyzer", "harness"):
        assert re.search(rf"COPY {package} \./{package}", dockerfile), package
