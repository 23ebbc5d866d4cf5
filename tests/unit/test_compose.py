"""Static checks of docker-compose.yml and the Dockerfile (no Docker engine runs here)."""

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import SHARED

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


# The worker services: one per model (`worker`, the default; `worker-minilm` under the `two-models` profile).
WORKERS = sorted(name for name, service in SERVICES.items() if service.get("command") == ["python", "-m", "worker"])
INTERPOLATION = re.compile(r"^\$\{[A-Z_]+:-([^}]*)\}$")


def default(value: str) -> str:
    """What compose makes of ``value`` with no variable set: ``${NAME:-default}`` -> default."""
    found = INTERPOLATION.match(str(value))
    return found[1] if found else str(value)


def init_of(worker: str) -> str:
    """The model-init service that resolves a worker's model: the one it waits for."""
    (init,) = [name for name, needed in SERVICES[worker]["depends_on"].items()
               if needed["condition"] == "service_completed_successfully"]
    return init


def python_module(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], f"entry points run as python -m <module>: {command}"
    return command[2]


def test_services_present():
    assert {"redis", "api", "worker", "model-init", "worker-minilm", "model-init-minilm"} <= set(SERVICES)


def test_commands_are_the_projects_real_entry_points():
    for name in ("api", "worker", "model-init", "worker-minilm", "model-init-minilm"):
        module = python_module(SERVICES[name]["command"])
        assert importlib.util.find_spec(module) is not None, f"{name}: {module} does not exist"
    assert SERVICES["api"]["command"] == ["python", "-m", "api"]
    assert WORKERS == ["worker", "worker-minilm"]
    assert SERVICES["model-init"]["command"] == ["python", "-m", "engine.offline.default_model", "--link",
                                                 "/models/default", "--bench", "/models/bench"]
    assert SERVICES["model-init-minilm"]["command"] == ["python", "-m", "engine.offline.default_model", "--link",
                                                        "/models/sst2-minilm", "--bench", "/models/bench"]


def test_the_model_is_resolved_once_as_scripts_run_does_and_the_workers_load_it_offline():
    """model-init chooses as scripts/run (engine.offline.default_model: the hub model when the Hub answers, else
    the bench model, loudly) and links the files where the workers' MODEL points; the workers never ask the Hub."""
    from engine.offline.default_model import main

    links = set()
    for name in WORKERS:  # each model's workers: from their own model-init
        init, worker = SERVICES[init_of(name)], SERVICES[name]
        command = init["command"]
        link, bench = command[command.index("--link") + 1], command[command.index("--bench") + 1]
        assert worker["environment"]["MODEL"] == link and "MODEL_REVISION" not in worker["environment"]
        assert worker["environment"]["HF_HUB_OFFLINE"] == "1"
        assert init["environment"]["HF_HOME"] == worker["environment"]["HF_HOME"]
        (mount,) = [volume.split(":")[1] for volume in init["volumes"] if volume.startswith("models:")]
        assert f"models:{mount}" in worker["volumes"]
        for path in (link, bench, init["environment"]["HF_HOME"]):
            assert path.startswith(mount + "/"), path
        # A directory the init links to (outside the volume: an absolute link) is mounted where the workers see it.
        for volume in init["volumes"]:
            if not volume.startswith("models:"):
                assert volume in worker["volumes"] and volume.endswith(":ro"), (name, volume)
        assert init["restart"] == "no" and init.get("profiles") == worker.get("profiles")
        links.add(link)
    assert len(links) == len(WORKERS)  # each model its own files
    # The user's choice reaches model-init (empty: unset, the default choice), on the volume the workers read.
    init = SERVICES["model-init"]["environment"]
    assert init["MODEL"] == "${MODEL:-}" and init["MODEL_REVISION"] == "${MODEL_REVISION:-}"
    # The second model: the trained MiniLM of ../shared unless MINILM_MODEL names another, offline.
    minilm = SERVICES["model-init-minilm"]
    assert minilm["environment"]["MODEL"] == "${MINILM_MODEL:-/shared/models/minilm-sst2}"
    assert "${SHARED_DIR:-../shared}:/shared:ro" in minilm["volumes"]
    assert (ROOT / "../shared").resolve() == SHARED.resolve()  # where the project keeps it (tests/helpers.py)
    with pytest.raises(SystemExit) as info:  # the module parses those arguments
        main(["--help"])
    assert info.value.code == 0


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


@pytest.mark.parametrize("name", WORKERS)
def test_worker_scales(name):
    worker = SERVICES[name]
    # --scale worker=N needs no fixed names or host ports.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"][init_of(name)]["condition"] == "service_completed_successfully"
    assert worker["healthcheck"] == SERVICES["worker"]["healthcheck"]
    assert worker["stop_grace_period"] == SERVICES["worker"]["stop_grace_period"]


def test_a_plain_up_serves_one_model_and_the_two_models_profile_adds_a_second_with_its_own_queue(monkeypatch):
    from common.keys import DEFAULT_MODEL_NAME, Keys
    from worker.settings import WorkerSettings

    plain = [name for name in WORKERS if "profiles" not in SERVICES[name]]
    assert plain == ["worker"] and "profiles" not in SERVICES["model-init"]
    assert SERVICES["worker-minilm"]["profiles"] == ["two-models"]
    served = {}
    for name in WORKERS:
        env = {key: default(value) for key, value in SERVICES[name]["environment"].items()}
        served[name] = (env["SERVED_MODEL_NAME"], int(env["MODEL_VERSION"]))
        assert env["REDIS_URL"] == "redis://redis:6379/0" and env["KEY_PREFIX"] == "sentimentalyzer"
        for key, value in env.items():  # valid settings with compose's defaults, serving that model's queue
            monkeypatch.setenv(key, value)
        keys = WorkerSettings().served_keys()
        assert keys == Keys(env["KEY_PREFIX"]).served(*served[name]), name
    assert served == {"worker": (DEFAULT_MODEL_NAME, 1), "worker-minilm": ("sst2-minilm", 1)}
    # The API's default model (bodies naming none) is the default worker's, from the same variable.
    api, worker = SERVICES["api"]["environment"], SERVICES["worker"]["environment"]
    assert api["SERVED_MODEL_NAME"] == worker["SERVED_MODEL_NAME"] == "${SERVED_MODEL_NAME:-sentimentalyzer}"
    # Everything else the second model's workers run with is the first's (the YAML merge of the worker service).
    minilm = SERVICES["worker-minilm"]["environment"]
    assert {k: v for k, v in minilm.items() if k not in {"SERVED_MODEL_NAME", "MODEL_VERSION", "MODEL"}} == \
        {k: v for k, v in worker.items() if k not in {"SERVED_MODEL_NAME", "MODEL_VERSION", "MODEL"}}


def test_model_cache_lives_on_a_volume_and_settings_come_from_env():
    assert "models" in COMPOSE["volumes"]
    for name in (*WORKERS, "model-init", "model-init-minilm"):
        assert "models:/models" in SERVICES[name]["volumes"]
    for name in WORKERS:
        env = SERVICES[name]["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0" and "MODEL" in env and env["HF_HOME"].startswith("/models")
    assert SERVICES["api"]["environment"]["HOST"] == "0.0.0.0"


def test_environment_names_are_real_settings():
    from tests.helpers import setting_names

    known = setting_names() | {"HF_HOME", "HF_HUB_OFFLINE", "HF_TOKEN"}
    for name in ("api", *WORKERS, "model-init", "model-init-minilm"):
        unknown = set(SERVICES[name]["environment"]) - known
        assert not unknown, f"{name} sets unknown variables {unknown}"


def test_dockerfile_installs_the_runtime_lock_and_the_package_with_all_its_runtimes_but_no_test_tools():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = " ".join(re.findall(r"pip install ([^\n\\&]+)", dockerfile))
    assert "-r requirements.txt" in installs and "requirements-dev" not in dockerfile
    assert "pip install -c requirements.txt '.[all]'" in dockerfile  # the package, every runtime, as locked
    assert "COPY pyproject.toml README.md LICENSE ./" in dockerfile  # what building the package reads
    for package in ("common", "engine", "api", "worker", "naive", "sentimentalyzer", "harness"):
        assert re.search(rf"COPY {package} \./{package}", dockerfile), package
    # What the image's entry points import is locked: every package the runtime lock pins, nothing the tests need.
    locked = {line.split("==")[0].lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert {"torch", "onnxruntime", "openvino", "opentelemetry-sdk"} <= locked
    assert not locked & {"pytest", "locust", "matplotlib", "tritonclient", "fakeredis", "hypothesis", "selenium"}
