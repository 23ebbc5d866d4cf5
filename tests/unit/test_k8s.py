"""Static checks of the Kubernetes manifests (deploy/k8s, kustomize): no cluster runs here. They parse, their
references resolve the way kustomize and Kubernetes resolve them, their commands are the project's entry points,
their environment builds valid settings, each model has its own workers, and KEDA watches, for each, the very list
the API pushes that model's requests to."""

import importlib.util
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from fastapi.routing import APIRoute

from api.app import create_app
from api.settings import ApiSettings
from common.keys import DEFAULT_MODEL_NAME, Keys
from worker.settings import WorkerSettings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
DOCS = [doc for name in KUSTOMIZATION["resources"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
OBJECTS = {(doc["kind"], doc["metadata"]["name"]): doc for doc in DOCS}
# Environment the images set or libraries read, not the project's settings.
NOT_SETTINGS = {"HF_HOME"}
# Every Deployment but the API and Redis runs the workers of one model version.
WORKERS = sorted(name for kind, name in OBJECTS if kind == "Deployment" and name not in {"api", "redis"})


def deployment(name: str) -> dict:
    return OBJECTS[("Deployment", name)]


def container(name: str) -> dict:
    (only,) = deployment(name)["spec"]["template"]["spec"]["containers"]
    return only


def generated_settings() -> dict[str, str]:
    (generator,) = KUSTOMIZATION["configMapGenerator"]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def environment(name: str) -> dict[str, str]:
    """What the container's process sees: the generated ConfigMap, then its own env."""
    c = container(name)
    names = {ref["configMapRef"]["name"] for ref in c.get("envFrom", [])}
    assert names == {KUSTOMIZATION["configMapGenerator"][0]["name"]}, names
    return {**generated_settings(), **{e["name"]: e["value"] for e in c.get("env", [])}}


def served(name: str) -> tuple[str, int]:
    """(SERVED_MODEL_NAME, MODEL_VERSION) a worker Deployment serves, as its manifest says (explicitly)."""
    env = environment(name)
    return env["SERVED_MODEL_NAME"], int(env["MODEL_VERSION"])


def test_every_manifest_is_listed_and_parses():
    listed = set(KUSTOMIZATION["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert {kind for kind, _ in OBJECTS} == {"Deployment", "Service", "PodDisruptionBudget", "ScaledObject",
                                             "PersistentVolumeClaim"}


@pytest.mark.parametrize("kind", ["Service", "PodDisruptionBudget"])
def test_selectors_select_a_deployments_pods(kind):
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for (k, name), d in OBJECTS.items() if k == "Deployment"}
    for (k, name), obj in OBJECTS.items():
        if k != kind:
            continue
        selector = obj["spec"]["selector"] if kind == "Service" else obj["spec"]["selector"]["matchLabels"]
        matched = [d for d, labels in pods.items() if selector.items() <= labels.items()]
        assert matched == [name], f"{kind} {name} selects {matched}"
        assert deployment(name)["spec"]["selector"]["matchLabels"].items() <= pods[name].items()


def test_service_ports_name_container_ports():
    for (kind, name), obj in OBJECTS.items():
        if kind == "Service":
            ports = {p["name"] for p in container(name)["ports"]}
            assert {p["targetPort"] for p in obj["spec"]["ports"]} <= ports


def test_commands_are_the_projects_entry_points():
    for name, module in (("api", "api"), *((worker, "worker") for worker in WORKERS)):
        command = container(name)["command"]
        assert command == ["python", "-m", module], name
        assert importlib.util.find_spec(module) is not None
    for worker in WORKERS:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = container(worker)[probe]["exec"]["command"]
            assert command == ["python", "-m", "worker.healthcheck"] and importlib.util.find_spec(command[2])


def test_two_models_each_version_served_by_one_deployment_and_the_apis_default_among_them():
    """One Deployment per model version (two Deployments of one version could serve different cards: a mixed
    answer), set explicitly; the model TEI's and the Inference API's bodies go to is one the workers serve."""
    versions = [served(name) for name in WORKERS]
    assert len(set(versions)) == len(versions), versions
    assert len({name for name, _ in versions}) >= 2  # the two-model example
    for name, version in versions:
        Keys().served(name, version)  # a valid name and version for the keys
    assert environment("api")["SERVED_MODEL_NAME"] in {name for name, _ in versions}
    assert served("worker") == (DEFAULT_MODEL_NAME, 1)  # the default model, as before


def test_volumes_mounted_are_the_pods_and_claims_exist_and_each_workers_model_is_mounted_or_a_hub_id():
    for worker in WORKERS:
        pod = deployment(worker)["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: mount for mount in container(worker)["volumeMounts"]}
        for mount in mounts.values():
            assert mount["name"] in volumes, f"{worker} mounts {mount['name']}, which is not a volume of its pod"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in OBJECTS
        model = environment(worker)["MODEL"]
        if model.startswith("/"):  # a directory: on a volume of its own, read only
            (mount,) = [m for path, m in mounts.items() if model == path or model.startswith(path.rstrip("/") + "/")]
            assert mount.get("readOnly") and "persistentVolumeClaim" in volumes[mount["name"]], worker


def test_api_probes_are_its_readiness_and_liveness_routes():
    paths = {route.path for route in create_app(ApiSettings()).routes if isinstance(route, APIRoute)}
    api = container("api")
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz" and "/readyz" in paths
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz" and "/healthz" in paths
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert api["readinessProbe"]["httpGet"]["port"] in ports
    assert ports["http"] == int(environment("api")["PORT"])


@pytest.mark.parametrize("name, settings_class", [("api", ApiSettings), *((w, WorkerSettings) for w in WORKERS)])
def test_environment_names_real_settings_and_builds_valid_ones(name, settings_class, monkeypatch):
    env = environment(name)
    fields = {field.upper() for field in settings_class.model_fields}
    unknown = set(env) - fields - NOT_SETTINGS
    assert not unknown, f"{name}: not settings of {settings_class.__name__}: {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings_class()  # validates every value, as the process would at start


def test_the_api_drains_within_its_grace_period():
    api_pod = deployment("api")["spec"]["template"]["spec"]
    settings = ApiSettings(**{k.lower(): v for k, v in environment("api").items()
                              if k.lower() in ApiSettings.model_fields})
    pause = int(container("api")["lifecycle"]["preStop"]["exec"]["command"][1])
    # uvicorn's graceful shutdown is REQUEST_TIMEOUT_S + 2 (api/main.py), after the preStop pause.
    assert api_pod["terminationGracePeriodSeconds"] >= pause + int(settings.request_timeout_s) + 2


def test_keda_scales_each_models_workers_on_the_queue_the_api_pushes_that_model_to(monkeypatch):
    scaled_objects = {name: obj for (kind, name), obj in OBJECTS.items() if kind == "ScaledObject"}
    targets = sorted(obj["spec"]["scaleTargetRef"]["name"] for obj in scaled_objects.values())
    assert targets == WORKERS  # one ScaledObject per worker Deployment, none for anything else
    settings = generated_settings()
    redis_url = urlsplit(settings["REDIS_URL"])
    for name, scaled in scaled_objects.items():
        worker = scaled["spec"]["scaleTargetRef"]["name"]
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "redis"
        meta = trigger["metadata"]
        # The list this worker's model version is queued on: from its manifest's env, and from its settings.
        model, version = served(worker)
        expected = Keys(settings["KEY_PREFIX"]).served(model, version).requests
        assert meta["listName"] == expected, f"ScaledObject {name} watches {meta['listName']}, {worker} pops {expected}"
        for key, value in environment(worker).items():
            monkeypatch.setenv(key, value)
        assert WorkerSettings().served_keys().requests == expected
        assert meta["address"] == redis_url.netloc and meta["databaseIndex"] == redis_url.path.strip("/")
        host, port = meta["address"].split(":")
        assert int(port) in {p["port"] for p in OBJECTS[("Service", host)]["spec"]["ports"]}
        # The target: one full window queued per busy worker (see scaledobject.yaml for the derivation).
        assert int(meta["listLength"]) == int(environment(worker)["MAX_BATCH_SIZE"])
        assert scaled["spec"]["minReplicaCount"] >= 1  # cold starts take minutes: keep one warm
        assert scaled["spec"]["maxReplicaCount"] > scaled["spec"]["minReplicaCount"]


def test_images_are_the_one_kustomize_retags():
    (image,) = KUSTOMIZATION["images"]
    for name in ("api", *WORKERS):
        assert container(name)["image"] == image["name"]
