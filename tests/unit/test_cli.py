"""The command lines generated from settings classes (common/cli.py): what ``--help`` says of each setting, and flags
winning over the environment."""

from __future__ import annotations

import argparse
import contextlib
import io
import os

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from common.cli import parse_into_environment


class Base(BaseSettings):
    """Shared knobs of example X.

    Second line, not in the title."""

    redis_url: str = Field("redis://x:1/0", description="Where Redis is.")
    api_key: str | None = Field(None, description="A key; 100% secret.")


class Child(Base):
    max_things: int = Field(5, description="The most things.")
    verbose: bool = Field(False, description="Say more.")
    prefix: str = Field("", description="Prepended.")
    tags: list[str] = Field(default_factory=lambda: ["a", "b"], description="Labels.")
    quiet: bool = True  # no description: the bracket alone


class Undocumented(BaseSettings):
    retries: int = Field(3, description="How many tries.")


def help_of(classes, **kwargs) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as ended:
        parse_into_environment(classes, ["--help"], prog="example", description="Runs the example.", **kwargs)
    assert ended.value.code == 0
    return " ".join(out.getvalue().split())  # argparse wraps lines where it likes


def test_help_gives_each_setting_its_flag_environment_name_default_and_description():
    text = help_of([Child])
    assert text.startswith("usage: example [options] Runs the example.")
    assert "--max-things MAX_THINGS [env MAX_THINGS; default 5] The most things." in text
    assert "--verbose true|false [env VERBOSE; default false] Say more." in text
    assert '--prefix PREFIX [env PREFIX; default ""] Prepended.' in text
    assert "--tags TAGS [env TAGS; default ['a', 'b']] Labels." in text  # a default factory is called
    assert "--api-key API_KEY [env API_KEY; default unset] A key; 100% secret." in text  # % is literal
    assert "Labels. --quiet true|false [env QUIET; default true] Every setting" in text  # nothing to add
    assert text.endswith("Every setting is also read from its environment variable; a flag wins.")


def test_settings_are_grouped_by_the_class_that_declares_them_titled_by_its_docstring():
    text = help_of([Child])
    base = text.index("Base (Shared knobs of example X):")
    child = text.index("Child:")
    assert base < text.index("--redis-url") < text.index("--api-key") < child < text.index("--max-things")
    assert "Second line" not in text


def test_a_field_of_several_classes_is_listed_once_and_classes_add_their_own():
    text = help_of([Base, Child, Undocumented])
    assert text.count("--redis-url") == 1 and text.count("--max-things") == 1
    assert "Undocumented: --retries RETRIES [env RETRIES; default 3] How many tries." in text


def test_flags_win_over_the_environment_and_unnamed_settings_keep_theirs(monkeypatch):
    monkeypatch.setenv("MAX_THINGS", "7")
    monkeypatch.setenv("PREFIX", "from-env")
    monkeypatch.delenv("REDIS_URL", raising=False)
    args = parse_into_environment([Child], ["--max-things", "9", "--redis-url", "redis://r:2/0"], prog="example",
                                  description="")
    assert os.environ["MAX_THINGS"] == "9" and os.environ["REDIS_URL"] == "redis://r:2/0"
    assert os.environ["PREFIX"] == "from-env"
    assert "VERBOSE" not in os.environ and "API_KEY" not in os.environ
    assert args.max_things == "9" and args.verbose is None
    assert Child().max_things == 9  # the settings built afterwards read the flag


def test_a_command_adds_its_own_arguments(monkeypatch):
    monkeypatch.delenv("MAX_THINGS", raising=False)

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("kind", choices=["tiny", "bench"])

    args = parse_into_environment([Child], ["bench", "--max-things", "2"], prog="example", description="",
                                  extra=extra)
    assert args.kind == "bench" and os.environ["MAX_THINGS"] == "2"
    assert "{tiny,bench}" in help_of([Child], extra=extra)


def test_an_unknown_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as ended:
        parse_into_environment([Child], ["--max-thingz", "2"], prog="example", description="")
    assert ended.value.code == 2
    assert "unrecognized arguments: --max-thingz 2" in capsys.readouterr().err
