"""The OpenAPI document is the contract: schemathesis (all checks) against the real API, with and without an API key.

Every status the server can send must be documented, every documented constraint enforced and nothing else
rejected, 405s carry ``Allow``, auth is enforced exactly when the document says so. Workers are simulated (no
model): the API's behaviour is under test, and a few hundred cases run in seconds.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from harness import service as harness

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Every check on, the one check an operation skips and why, the served model's name for the /v2 model routes.
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.parametrize("api_key", [None, "contract-test-key"], ids=["open", "with-api-key"])
def test_the_api_keeps_its_openapi_contract(redis_server, tmp_path, api_key):
    if not SCHEMATHESIS.exists():
        pytest.skip(f"schemathesis is not installed beside {sys.executable} (scripts/setup installs it)")
    env = dict(BACKEND="simulated", LOG_LEVEL="WARNING", **({"API_KEY": api_key} if api_key else {}))
    svc = harness.start_service(redis_server.url, tmp_path, workers=1, env=env)
    try:
        # No --checks on the command line: CONFIG turns every check on (a check named here would override its skip).
        command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{svc.url}/openapi.json",
                   "--max-examples", "60", "--seed", "1", "--no-color", "--generation-database", "none"]
        if api_key:
            command += ["--header", f"Authorization: Bearer {api_key}"]
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        summary = run.stdout[run.stdout.find("SUMMARY"):]
        print(summary)
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
        assert "generated" in summary and " passed" in summary
    finally:
        svc.stop()
