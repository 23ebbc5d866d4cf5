"""The package as a user gets it: the wheel built from the tracked files (and new ones not yet added), installed into a fresh virtual environment,
and its ``sentimentalyzer`` command run from a directory with no source tree in sight: ``--help``, ``make-model
tiny``, and ``serve`` answering a ``/predict``.

The wheel is installed with ``--no-deps``, and its dependencies are the ones this test run already has: a ``.pth``
file in the fresh venv's site-packages names this interpreter's site-packages (appended to ``sys.path`` after the
venv's own, so the wheel's modules come first; nothing is downloaded). ``--system-site-packages`` would not do: a
venv made from this venv's interpreter is based on the interpreter *it* was made from, so it would see that base
installation's site-packages, not this venv's, where the dependencies are.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.processes import free_port, wait_until
from tests.helpers import ROOT
from tests.integration.test_package import tracked

# What the fresh venv's commands may not inherit from this run: anything that puts the checkout on their path.
DROPPED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV")


def committable() -> list[str]:
    """The tracked files, and new ones not yet added that git does not ignore: in a clean clone (CI) the tracked
    files alone; in a working tree, what its next commit would hold (no build/, *.egg-info or caches)."""
    tracked()  # skips outside a git checkout of the project
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def build_wheel(directory: Path) -> Path:
    """The wheel of a copy of the committable files only, as from a clean clone."""
    source = directory / "source"
    for path in committable():
        if (ROOT / path).is_file():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            (source / path).write_bytes((ROOT / path).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(directory / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (directory / "dist").glob("sentimentalyzer-*.whl")
    return wheel


def fresh_venv(directory: Path, wheel: Path) -> Path:
    """A new venv holding the wheel (no pip of its own: this one's installs into it), seeing this one's
    dependencies through a .pth file. Returns its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    python = directory / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        check=True, capture_output=True, text=True).stdout.strip())
    (site_packages / "_dependencies_of_the_test_run.pth").write_text("".join(f"{p}\n" for p in dependency_paths()))
    return site_packages


def dependency_paths() -> list[str]:
    """This interpreter's site-packages: where the installed wheel's dependencies are."""
    return list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))


def wait_ready(url: str, serve: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            pytest.fail(f"serve exited with {serve.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"not ready within {timeout}s:\n{log.read_text()}")


def test_the_installed_wheel_runs_its_command_and_serves_a_request(tmp_path, redis_server, key_prefix):
    started = time.monotonic()
    wheel = build_wheel(tmp_path / "build")
    venv = tmp_path / "venv"
    site_packages = fresh_venv(venv, wheel)
    bin_dir = venv / "bin"
    cwd = tmp_path / "elsewhere"  # no source tree here, nor on the path
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in DROPPED} | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}

    def run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(command), check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{command} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    where = json.loads(run(str(bin_dir / "python"), "-c", "import api, engine, harness, sentimentalyzer, json, os, sys; "
                           "print(json.dumps({'modules': [m.__file__ for m in (api, engine, harness, sentimentalyzer)], "
                           "'path': [os.path.realpath(p) for p in sys.path]}))").stdout)
    for module in where["modules"]:
        assert Path(module).is_relative_to(site_packages), module  # the wheel's copy, not the checkout's
    dependencies = {os.path.realpath(path) for path in dependency_paths()}
    in_checkout = [e for e in where["path"] if Path(e).is_relative_to(ROOT.resolve()) and e not in dependencies]
    assert not in_checkout, where["path"]  # only the dependencies (which may live in the checkout's .venv)

    licence = json.loads(run(str(bin_dir / "python"), "-c", "import json; from importlib.metadata import distribution as d; "
                             "m = d('sentimentalyzer'); print(json.dumps([m.metadata['License-Expression'], "
                             "[str(f) for f in m.files if f.name == 'LICENSE']]))").stdout)
    assert licence[0] == "Apache-2.0" and licence[1], licence  # the expression, and the licence text shipped with it

    command = str(bin_dir / "sentimentalyzer")
    assert "commands:" in run(command, "--help").stdout
    worker_help = run(command, "worker", "--help").stdout
    assert "--model-revision" in worker_help and "MODEL_REVISION" in worker_help
    model = tmp_path / "tiny"
    assert "wrote tiny model" in run(command, "make-model", "tiny", str(model)).stdout

    port = free_port()
    log = tmp_path / "serve.log"
    serve_env = env | {"REDIS_URL": redis_server.url, "KEY_PREFIX": key_prefix, "HOST": "127.0.0.1", "PORT": str(port),
                       "MODEL": str(model), "BACKEND": "torch", "TORCH_THREADS": "1", "IDLE_BLOCK_S": "0.5"}
    with log.open("wb") as output:
        serve = subprocess.Popen([command, "serve", "--workers", "1"], cwd=cwd, env=serve_env, stdout=output,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, serve, log, timeout=90)
        request = urllib.request.Request(f"{url}/predict", data=json.dumps({"text": "a good and charming film"}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            answer = json.loads(response.read())
        assert answer["label"] in ("NEGATIVE", "POSITIVE") and 0 <= answer["score"] <= 1, answer
        # serve polls /readyz on its own schedule: its line may come a poll after this test saw the service ready
        wait_until(lambda: f"ready at {url}" in log.read_text(), 10, "serve to say where the service is")
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, log.read_text()
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
    said = log.read_text()
    assert f"ready at {url}" in said and "[worker-1]" in said, said
    print(f"\n[wheel] built, installed, --help, make-model, serve and one /predict in {time.monotonic() - started:.1f}s")
