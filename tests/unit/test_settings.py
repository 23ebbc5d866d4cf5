import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from api.settings import MESSAGE_OVERHEAD_BYTES, ApiSettings, QueueLimits, limits_problem
from common.keys import Keys
from common.settings import load_or_exit, shown
from naive.settings import NaiveSettings
from tests.helpers import ROOT, python_env, setting_names
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
    monkeypatch.setenv("SERVED_MODEL_NAME", "sst2")
    monkeypatch.setenv("MODEL_VERSION", "3")
    s = WorkerSettings()
    assert (s.max_batch_size, s.max_batch_wait_ms, s.model) == (8, 2.5, "/models/x")
    assert s.served_keys().requests == "staging:{sst2}:v3:requests" and s.keys().models == "staging:models"


@pytest.mark.parametrize(
    "name,value",
    [("MAX_BATCH_SIZE", "0"), ("MAX_BATCH_SIZE", "many"), ("DEVICE", "tpu"), ("HEARTBEAT_TTL_S", "1"),
     ("MAX_BATCH_WAIT_MS", "-1")],
)
def test_bad_values_fail_at_start(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        WorkerSettings()


@pytest.mark.parametrize("wait_ms,lease_s", [("1000", "2"), ("2500", "2"), ("5000", "8")])
def test_a_batch_wait_the_work_lease_cannot_cover_is_refused_with_the_fix_named(monkeypatch, wait_ms, lease_s):
    """A worker waiting for batch-mates holds its window under the lease: a wait past it was taken for a freeze,
    and the window ran twice with a death counted against each text."""
    monkeypatch.setenv("MAX_BATCH_WAIT_MS", wait_ms)
    monkeypatch.setenv("WORK_LEASE_S", lease_s)
    with pytest.raises(ValidationError, match="MAX_BATCH_WAIT_MS .* must be under half of WORK_LEASE_S .*raise "
                                              "WORK_LEASE_S above"):
        WorkerSettings()
    monkeypatch.setenv("WORK_LEASE_S", str(2 * float(wait_ms) / 1000 + 0.1))  # the fix it names
    assert WorkerSettings().max_batch_wait_ms == float(wait_ms)


def test_the_readme_settings_table_names_real_settings_with_their_defaults():
    """The README lists the settings people change, each linking to its row of the generated configuration page
    (docs/configuration.md, where every setting is: tests/unit/test_configuration.py) with the default the code has."""
    from sentimentalyzer.configuration import PROCESSES, default_text

    rows = re.findall(r"^\| \[`([A-Z0-9_]+)`\]\(docs/configuration\.md#([a-z0-9_]+)\) \| ([^|]+?) \|", README.read_text(),
                      re.MULTILINE)
    assert len(rows) == 10, rows
    names = setting_names()
    for name, anchor, default in rows:
        assert name in names, f"README names {name}, which is no setting"
        assert anchor == name.lower(), f"README links {name} to #{anchor}"
        # The default of the first process that reads it (the API's or the worker's, as `serve` runs them).
        cls = next(c for p in PROCESSES for c in p.classes if name.lower() in c.model_fields)
        assert default == default_text(cls, name.lower()), f"README states {name}'s default as {default}"


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
    assert capsys.readouterr().err == ("invalid settings: MAX_QUEUE_DEPTH=16 is below MAX_BATCH_TEXTS=64: a full-size "
                                       "batch call could never be admitted (429 forever). Fix: set MAX_QUEUE_DEPTH to "
                                       "at least 128, or lower MAX_BATCH_TEXTS to at most 8\n")
    monkeypatch.setenv("MAX_BATCH_TEXTS", "16")
    with pytest.raises(SystemExit):  # now one client's share (half the queue) is below one full batch call
        load_or_exit(ApiSettings)
    err = capsys.readouterr().err
    assert err.startswith("invalid settings: MAX_CLIENT_SHARE=0.5 leaves one client less than one full-size batch call")
    assert err.endswith("Fix: set MAX_CLIENT_SHARE to at least 1, or set MAX_QUEUE_DEPTH to at least 32, or lower "
                        "MAX_BATCH_TEXTS to at most 8\n")
    monkeypatch.setenv("MAX_CLIENT_SHARE", "1")  # one client, a small queue: it may hold all of it
    assert load_or_exit(ApiSettings).max_queue_depth == 16


def test_a_longer_text_limit_alone_says_which_variable_to_raise_and_to_what(monkeypatch):
    """`MAX_TEXT_CHARS=5000 python -m api`: the queue's byte limit cannot admit a full batch of such texts."""
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    env = python_env(MAX_TEXT_CHARS="5000", REDIS_URL="redis://:s3cret@127.0.0.1:1/0")
    done = subprocess.run([sys.executable, "-m", "api"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    needed = 64 * (2 * 4 * 5000 + MESSAGE_OVERHEAD_BYTES)  # 64 pairs of 5000 characters of up to 4 bytes
    # One client's share (MAX_CLIENT_SHARE=0.5, of MAX_QUEUE_BYTES=2097152) must hold that call too.
    share = 1_048_576
    chars, texts = (share // 64 - MESSAGE_OVERHEAD_BYTES) // 8, share // (8 * 5000 + MESSAGE_OVERHEAD_BYTES)
    assert done.stderr == (
        f"invalid settings: MAX_QUEUE_BYTES=2097152 is below the {needed} bytes a full-size batch call can take "
        "(MAX_BATCH_TEXTS=64 text pairs of MAX_TEXT_CHARS=5000 characters, up to 4 bytes each in UTF-8, plus "
        f"{MESSAGE_OVERHEAD_BYTES} bytes per message): it could never be admitted (429 forever). Fix: set "
        f"MAX_QUEUE_BYTES to at least {2 * needed}, or lower MAX_TEXT_CHARS to at most {chars} or MAX_BATCH_TEXTS to "
        f"at most {texts}\n")
    assert "s3cret" not in done.stderr
    monkeypatch.setenv("MAX_TEXT_CHARS", "5000")  # each value it names works
    for fix in ({"MAX_QUEUE_BYTES": str(2 * needed)}, {"MAX_TEXT_CHARS": str(chars)},
                {"MAX_BATCH_TEXTS": str(texts)}):
        with monkeypatch.context() as patch:
            for name, value in fix.items():
                patch.setenv(name, value)
            load_or_exit(ApiSettings)


@settings(max_examples=300, deadline=None)
@given(depth=st.integers(1, 5000), queue_bytes=st.integers(4096, 1 << 24), texts=st.integers(1, 4096),
       chars=st.integers(1, 20_000), share=st.sampled_from([0.05, 0.25, 0.5, 0.9, 1.0]))
def test_every_fix_the_limits_message_names_makes_the_limits_consistent(depth, queue_bytes, texts, chars, share):
    limits = QueueLimits(depth, queue_bytes, texts, chars, share)
    message = limits_problem(limits)
    assert (message is None) == (limits.failing() is None)
    if message is None:
        return
    alternatives = re.split(r",? or ", message.split("Fix: ")[1])
    for alternative in alternatives:  # each alone: "set X to at least N", "Y to at most M", "X ... and Z ..."
        changes = {name.lower(): float(value) if name == "MAX_CLIENT_SHARE" else int(value)
                   for name, value in re.findall(r"([A-Z_]+) to at (?:least|most) ([0-9.]+)", alternative)}
        assert changes, message
        assert replace(limits, **changes).failing() is None, (message, alternative)


def test_an_invalid_value_names_its_variable_its_value_and_one_that_works(monkeypatch, capsys):
    monkeypatch.setenv("WORKER_ID", "two words")
    with pytest.raises(SystemExit):
        load_or_exit(WorkerSettings)
    assert capsys.readouterr().err.startswith("invalid setting WORKER_ID=two words: ")
    monkeypatch.delenv("WORKER_ID")
    monkeypatch.setenv("MAX_TEXT_CHARS", "many")
    monkeypatch.setenv("DEVICE", "tpu")
    with pytest.raises(SystemExit):
        load_or_exit(ApiSettings)
    assert capsys.readouterr().err == ("invalid setting MAX_TEXT_CHARS=many: Input should be a valid integer, unable to "
                                       "parse string as an integer; e.g. MAX_TEXT_CHARS=2000 (the default)\n")
    with pytest.raises(SystemExit):
        load_or_exit(WorkerSettings)
    assert "invalid setting DEVICE=tpu: String should match pattern '^(auto|cpu|cuda(:[0-9]+)?)$'; e.g. DEVICE=auto " \
           "(the default)\n" in capsys.readouterr().err


def test_setting_errors_never_print_a_secret(monkeypatch, capsys):
    monkeypatch.setenv("API_KEY", "k3y-s3cret")
    monkeypatch.setenv("REDIS_URL", "http://:s3cret@redis.example:6379/0")  # not a Redis URL: refused, masked
    monkeypatch.setenv("CACHE_REDIS_URL", "redis://:s3cret@cache:notaport")
    monkeypatch.setenv("MAX_TEXT_CHARS", "5000")
    with pytest.raises(SystemExit):
        load_or_exit(ApiSettings)
    err = capsys.readouterr().err
    assert err.startswith("invalid setting REDIS_URL=http://:***@redis.example:6379/0: String should match pattern")
    assert "s3cret" not in err
    assert shown("API_KEY", "k3y-s3cret") == shown("REDIS_SENTINEL_PASSWORD", "x") == "<hidden>"
    assert shown("REDIS_URL", "redis://user:p/a@ss@host:1/0") == "redis://user:***@host:1/0"
    assert shown("REDIS_URL", "unix:///run/redis.sock?db=0&password=s3cret") == "unix:///run/redis.sock?db=0&password=***"
    assert shown("KEY_PREFIX", "staging") == "staging"


def test_an_empty_api_key_means_no_key(monkeypatch):
    monkeypatch.setenv("API_KEY", "")  # what compose passes when the variable is unset
    assert ApiSettings().api_key is None
    monkeypatch.setenv("API_KEY", "s3cret")
    assert ApiSettings().api_key == "s3cret"


def test_an_invalid_optional_setting_says_to_unset_it(monkeypatch, capsys):
    """Where the default is none, the value that works is no value: the line says so, not `NAME=None`."""
    monkeypatch.setenv("REDIS_SENTINELS", "sentinel-1")  # the port forgotten
    with pytest.raises(SystemExit):
        load_or_exit(WorkerSettings)
    assert capsys.readouterr().err.endswith(
        "invalid setting REDIS_SENTINELS=sentinel-1: String should match pattern "
        r"'^\s*[^\s,:]+:\d+\s*(,\s*[^\s,:]+:\d+\s*)*$'; or unset REDIS_SENTINELS for the default" "\n")


def test_an_invalid_switch_names_its_default_as_it_is_written(monkeypatch, capsys):
    monkeypatch.setenv("ACCESS_LOG", "maybe")
    with pytest.raises(SystemExit):
        load_or_exit(ApiSettings)
    assert capsys.readouterr().err == ("invalid setting ACCESS_LOG=maybe: Input should be a valid boolean, unable to "
                                       "interpret input; e.g. ACCESS_LOG=true (the default)\n")


@pytest.mark.parametrize("url", ["REDIS://:s3cret@redis.example:6379/0", "Rediss://user:s3cret@redis.example:6380/0"])
def test_a_url_with_a_capitalised_scheme_is_refused_without_its_password(monkeypatch, capsys, url):
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(SystemExit):
        load_or_exit(WorkerSettings)
    err = capsys.readouterr().err
    assert err.startswith(f"invalid setting REDIS_URL={url.replace('s3cret', '***')}: String should match pattern")
    assert "s3cret" not in err


def test_precision_is_exact_unless_asked_and_the_old_name_means_fastest(monkeypatch):
    assert WorkerSettings().effective_precision == "exact"
    monkeypatch.setenv("PRECISION", "faithful")
    assert WorkerSettings().effective_precision == "faithful"
    monkeypatch.delenv("PRECISION")
    monkeypatch.setenv("BACKEND_ALLOW_APPROXIMATE", "true")  # the deprecated name: any backend may win
    assert WorkerSettings().effective_precision == NaiveSettings().effective_precision == "fastest"


@pytest.mark.parametrize("precision", ["exact", "faithful"])
def test_the_old_approximate_switch_contradicting_precision_is_refused_with_the_fix(monkeypatch, precision):
    monkeypatch.setenv("BACKEND_ALLOW_APPROXIMATE", "true")
    monkeypatch.setenv("PRECISION", precision)
    with pytest.raises(ValidationError, match=f"contradicts PRECISION={precision}: unset BACKEND_ALLOW_APPROXIMATE"):
        WorkerSettings()
    monkeypatch.setenv("PRECISION", "fastest")
    assert WorkerSettings().effective_precision == "fastest"
