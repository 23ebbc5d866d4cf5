import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import ApiSettings
from common.keys import Keys
from common.settings import load_or_exit
from naive.settings import NaiveSettings
from tests.helpers import setting_names
from worker.settings import WorkerSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_are_sane(monkeypatch):
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    api, worker = ApiSettings(), WorkerSettings()
    assert api.redis_url.startswith("redis://") and api.request_timeout_s > 0
    assert worker.model == "distilbert-base-uncased-finetuned-sst-2-english"
    assert worker.max_batch_size >= 1 and worker.heartbeat_ttl_s > worker.heartbeat_interval_s
    assert NaiveSettings().port != api.port


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("max_batch_wait_ms", "2.5")
    monkeypatch.setenv("MODEL", "/models/x")
    monkeypatch.setenv("KEY_PREFIX", "staging")
    s = WorkerSettings()
    assert (s.max_batch_size, s.max_batch_wait_ms, s.model) == (8, 2.5, "/models/x")
    assert s.keys().requests == "staging:requests"


@pytest.mark.parametrize(
    "name,value",
    [("MAX_BATCH_SIZE", "0"), ("MAX_BATCH_SIZE", "many"), ("DEVICE", "tpu"), ("HEARTBEAT_TTL_S", "1"),
     ("MAX_BATCH_WAIT_MS", "-1")],
)
def test_bad_values_fail_at_start(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        WorkerSettings()


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    missing = sorted(name for name in setting_names() if not re.search(rf"`{name}`", text))
    assert not missing, f"settings missing from README: {missing}"


def test_every_setting_states_its_purpose():
    for cls in (ApiSettings, WorkerSettings, NaiveSettings):
        for name, field in cls.model_fields.items():
            assert field.description and len(field.description) > 15, f"{cls.__name__}.{name} lacks a description"


def test_keys_are_readable_and_prefixed():
    keys = Keys("sentimentalyzer")
    assert keys.requests == "sentimentalyzer:requests"
    assert keys.reply("ab" * 16) == f"sentimentalyzer:reply:{'ab' * 16}"
    assert keys.heartbeat("host-1") == "sentimentalyzer:worker:host-1"
    assert all(k.startswith("sentimentalyzer:") for k in keys.persistent())
    with pytest.raises(ValueError):
        Keys("has space")


def test_unknown_phases_and_bad_key_prefixes_are_refused_with_the_rule():
    from common.counters import PHASES, PhaseTimes

    with pytest.raises(ValueError) as info:
        PhaseTimes().measure("nap_s")
    assert str(info.value) == f"unknown phase 'nap_s' (one of {', '.join(PHASES)})"
    with pytest.raises(ValueError) as info:
        Keys("bad prefix")
    assert str(info.value) == "key prefix 'bad prefix' must be letters, digits, '_', '.', '-' separated by ':'"


def test_contradicting_api_settings_are_refused_with_a_message(monkeypatch, capsys):
    monkeypatch.setenv("MAX_QUEUE_DEPTH", "16")
    monkeypatch.setenv("MAX_BATCH_TEXTS", "64")  # a full batch call could never fit the queue: 429 forever
    with pytest.raises(SystemExit) as info:
        load_or_exit(ApiSettings)
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("invalid settings: Value error, max_queue_depth (16) is below "
                                              "max_batch_texts (64)")
    monkeypatch.setenv("MAX_BATCH_TEXTS", "16")
    with pytest.raises(SystemExit):  # now one client's share (half the queue) is below one full batch call
        load_or_exit(ApiSettings)
    assert "max_client_share (0.5) leaves one client less than one full-size batch call" in capsys.readouterr().err
    monkeypatch.setenv("MAX_CLIENT_SHARE", "1")  # one client, a small queue: it may hold all of it
    assert load_or_exit(ApiSettings).max_queue_depth == 16


def test_an_invalid_value_names_its_variable(monkeypatch, capsys):
    monkeypatch.setenv("WORKER_ID", "two words")
    with pytest.raises(SystemExit):
        load_or_exit(WorkerSettings)
    assert capsys.readouterr().err.startswith("invalid setting WORKER_ID: ")


def test_an_empty_api_key_means_no_key(monkeypatch):
    monkeypatch.setenv("API_KEY", "")  # what compose passes when the variable is unset
    assert ApiSettings().api_key is None
    monkeypatch.setenv("API_KEY", "s3cret")
    assert ApiSettings().api_key == "s3cret"
