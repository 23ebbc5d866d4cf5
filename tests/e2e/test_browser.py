"""A person's flows in a real browser (headless Chromium, driven by selenium through Debian's chromium-driver):
``/docs`` (Swagger UI) calls ``POST /predict`` and shows what a direct request gets, ``/redoc`` renders, and the
classic Locust flow (its web UI: users, start, statistics, stop) loads the service with ``locustfile.py``.

Everything is offline and on loopback: the docs pages load Swagger UI's and ReDoc's assets from the API itself
(fastapi-offline, api/app.py), Locust's web UI ships its own. Selenium is given the browser and the driver's paths,
so Selenium Manager never runs (it would download a driver). Each test's screenshots are under its tmp_path."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Process, free_port, python_env, wait_until

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = [what for what, found in (("selenium (pip install -r requirements-dev.txt)", webdriver),
                                    ("chromium (apt-get install -y chromium)", CHROMIUM),
                                    ("chromedriver (apt-get install -y chromium-driver)", CHROMEDRIVER)) if not found]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"not installed: {'; '.join(MISSING)} (.ci/run installs them)")

# Headless and quiet: without the background-networking flags Chromium dials Google's services at start-up.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT_S = 20  # the longest any one step waits (page loads, a page's reaction to a click, a process's start)
BODY = {"text": "a charming, moving film"}
PREDICT_OK = ("sentimentalyzer_requests", "/predict", "200")


@contextmanager
def chromium(profile_parent: Path) -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile, through chromedriver; quit (browser and driver), profile removed, on
    the way out."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=profile_parent)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(WAIT_S)
        driver.set_script_timeout(WAIT_S)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: WebDriver, what: str, condition: Callable[[WebDriver], Any], timeout: float = WAIT_S) -> Any:
    """``condition``'s first truthy value (an element not yet there counts as falsy); on timeout, fail with what was
    awaited."""
    def check(d: WebDriver) -> Any:
        try:
            return condition(d)
        except WebDriverException:
            return False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except WebDriverException:
        raise AssertionError(f"timed out after {timeout}s waiting for {what} on {driver.current_url}") from None


def replace_text(field: WebElement, text: str) -> None:
    """Select what the field holds and type over it, as a person does (React sees the keystrokes)."""
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(text)


def screenshot(driver: WebDriver, path: Path) -> Path:
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def foreign_requests(driver: WebDriver, origin: str) -> list[str]:
    """What the page fetched (or tried to) from anywhere but ``origin``: resource timing entries, and the console's
    network errors."""
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    failed = [entry["message"].split(" ")[0] for entry in driver.get_log("browser")
              if "Failed to load resource" in entry["message"]]
    return sorted({url for url in [*fetched, *failed] if not url.startswith((origin, "data:", "blob:"))})


def predictions_answered(url: str) -> float:
    """``POST /predict`` requests the API answered 200, from its /metrics."""
    name, route, status = PREDICT_OK
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)}
    return sum(s.value for s in families[name].samples
               if s.name == f"{name}_total" and s.labels["route"] == route and s.labels["status"] == status)


@pytest.mark.timeout(60, func_only=True)
def test_swagger_ui_try_it_out_answers_as_the_api_does_and_redoc_renders_offline(service, tmp_path):
    started = time.monotonic()
    with chromium(tmp_path) as driver:
        driver.get(f"{service.url}/docs")
        operation = wait_for(driver, "Swagger UI's POST /predict operation", lambda d: d.find_element(
            By.CSS_SELECTOR, ".opblock-post:has(.opblock-summary-path[data-path='/predict'])"))
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
        wait_for(driver, "the Try it out button", lambda d: operation.find_element(
            By.CSS_SELECTOR, "button.try-out__btn")).click()
        editor = wait_for(driver, "the request body editor", lambda d: operation.find_element(
            By.CSS_SELECTOR, "textarea.body-param__text"))
        replace_text(editor, json.dumps(BODY))
        operation.find_element(By.CSS_SELECTOR, "button.execute").click()
        status = wait_for(driver, "the live response's status", lambda d: operation.find_element(
            By.CSS_SELECTOR, ".live-responses-table .response .response-col_status")).text.strip()
        shown = wait_for(driver, "the live response's body", lambda d: operation.find_element(
            By.CSS_SELECTOR, ".live-responses-table .response-col_description pre.microlight").text)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})",
                              operation.find_element(By.CSS_SELECTOR, ".live-responses-table"))
        screenshot(driver, tmp_path / "swagger-ui-predict.png")
        # The browser's request went where a direct one goes, and the page shows exactly its answer.
        direct = httpx.post(f"{service.url}/predict", json=BODY, timeout=10)
        answer = json.loads(shown)
        print(f"Swagger UI: {status} {answer}; direct: {direct.status_code} {direct.json()}")
        assert status == "200" and direct.status_code == 200
        assert set(answer) == {"label", "score"} and 0 <= answer["score"] <= 1
        assert answer == direct.json()
        assert foreign_requests(driver, service.url) == []  # every asset from the API itself

        driver.get(f"{service.url}/redoc")
        wait_for(driver, "ReDoc's POST /predict operation", lambda d: d.find_element(
            By.XPATH, "//h2[starts-with(normalize-space(), 'Classify a text, a pair or a batch')]"))
        assert wait_for(driver, "ReDoc's title", lambda d: d.find_element(By.TAG_NAME, "h1")).text.startswith(
            "Sentimentalyzer")
        screenshot(driver, tmp_path / "redoc.png")
        # ReDoc's own footer logo ("API docs by Redocly") is an image on its CDN; the page needs nothing else.
        assert [url for url in foreign_requests(driver, service.url) if not url.startswith("https://cdn.redoc.ly/")] == []
    print(f"browser test took {time.monotonic() - started:.1f} s")


def status_figure(driver: WebDriver, label: str) -> str:
    """A figure of Locust's header bar (Status, Users, RPS, Failures), as the page shows it."""
    return driver.find_element(By.XPATH, f"//p[normalize-space()='{label}']/following-sibling::*[1]").text.strip()


def aggregated_row(driver: WebDriver) -> dict[str, str]:
    """The statistics table's Aggregated row, by column heading."""
    headings, rows = driver.execute_script(
        "const t = document.querySelector('table');"
        "return t ? [[...t.querySelectorAll('thead th')].map(e => e.innerText.replace(/\\s+/g, ' ').trim()),"
        "            [...t.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.innerText.trim()))]"
        "         : [[], []];")
    for row in rows:
        if "Aggregated" in row:
            return dict(zip(headings, row))
    return {}


@contextmanager
def locust_web_ui(host: str, log: Path) -> Iterator[str]:
    """``locust -f locustfile.py --host <host>`` in web UI mode on a free loopback port, until the way out. Its
    standard input is /dev/null: on a terminal Locust would read keys from it (and set it to cbreak mode)."""
    port = free_port()
    locust = Process(["sh", "-c", 'exec "$@" </dev/null', "sh", sys.executable, "-m", "locust", "-f", "locustfile.py",
                      "--host", host, "--web-host", "127.0.0.1", "--web-port", str(port)],
                     python_env(), log, name="locust")
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            if not locust.alive():
                raise AssertionError(f"locust exited:\n{locust.output()[-3000:]}")
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, WAIT_S, "Locust's web UI", interval=0.1)
        yield url
    finally:
        locust.stop(15)


@pytest.mark.timeout(60, func_only=True)
def test_locust_web_ui_runs_the_load_test_against_the_service(service, tmp_path):
    started = time.monotonic()
    answered_before = predictions_answered(service.url)
    with locust_web_ui(service.url, tmp_path / "locust.log") as locust_url, chromium(tmp_path) as driver:
        driver.get(locust_url)
        users = wait_for(driver, "the new test form", lambda d: d.find_element(By.NAME, "userCount"))
        assert driver.find_element(By.NAME, "host").get_attribute("value") == service.url
        replace_text(users, "10")
        replace_text(driver.find_element(By.NAME, "spawnRate"), "10")
        screenshot(driver, tmp_path / "locust-start.png")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        wait_for(driver, "the test to run with 10 users", lambda d: status_figure(d, "Status").lower() == "running"
                 and status_figure(d, "Users") == "10")
        time.sleep(3)  # a few seconds of load (the page refreshes its statistics every 2 s)
        row = wait_for(driver, "requests in the statistics table",
                       lambda d: (r := aggregated_row(d)) and float(r["Current RPS"]) > 0 and r)
        header = {label: status_figure(driver, label) for label in ("Status", "Users", "RPS", "Failures")}
        screenshot(driver, tmp_path / "locust-running.png")
        print(f"Locust while running: {header}; aggregated {row}")
        assert float(row["Current RPS"]) > 0 and float(header["RPS"]) > 0
        assert int(row["# Requests"]) > 0
        assert row["# Fails"] == "0" and float(row["Current Failures/s"]) == 0 and header["Failures"] == "0%"

        driver.find_element(By.XPATH, "//button[normalize-space()='Stop']").click()
        wait_for(driver, "the test to stop", lambda d: status_figure(d, "Status").lower() == "stopped")
        final = aggregated_row(driver)  # of the refresh that brought the stopped state: no request after it
        screenshot(driver, tmp_path / "locust-stopped.png")
        print(f"Locust after stop: {final}")
        assert final["# Fails"] == "0" and int(final["# Requests"]) >= int(row["# Requests"])
    # Locust's requests reached the service: it answered at least as many as the page counted (a request cut at stop
    # may be answered yet not counted).
    answered = predictions_answered(service.url) - answered_before
    assert answered >= int(final["# Requests"]) > 0
    print(f"locust test took {time.monotonic() - started:.1f} s; the API answered {answered:.0f} /predict")
