"""docs/openapi.json is the API's OpenAPI document at default settings (sentimentalyzer/openapi.py): the committed
file is what the generator writes, and what the API serves at those settings."""

import difflib
import json

import pytest

from sentimentalyzer import openapi
from tests.helpers import ROOT
from tests.unit.api_harness import run, running

REGENERATE = ".venv/bin/python -m sentimentalyzer.openapi"


def test_the_committed_document_is_what_the_generator_writes():
    expected = openapi.render()
    path = ROOT / "docs" / "openapi.json"
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    if current != expected:
        diff = list(difflib.unified_diff(current.splitlines(keepends=True), expected.splitlines(keepends=True),
                                         "docs/openapi.json (committed)", "docs/openapi.json (generated)"))
        pytest.fail(f"docs/openapi.json is out of date with the API. Regenerate it with\n\n    {REGENERATE}\n\nand "
                    f"commit the result. The difference:\n{''.join(diff[:60])}", pytrace=False)


def test_the_document_is_what_the_api_serves_at_default_settings_whatever_the_environment(monkeypatch):
    monkeypatch.setenv("MAX_BATCH_TEXTS", "7")  # set aside by the generator: the document shows the defaults
    monkeypatch.setenv("max_text_chars", "9")
    document = json.loads(openapi.render())

    async def served():
        async with running(openapi.default_settings(), worker=False) as (http, _):
            return (await http.get("/openapi.json")).json()

    assert run(served()) == document
    texts = document["components"]["schemas"]["PredictBatchRequest"]["properties"]["texts"]
    assert texts["maxItems"] == 64 and texts["items"]["anyOf"][0]["maxLength"] == 2000  # the defaults
