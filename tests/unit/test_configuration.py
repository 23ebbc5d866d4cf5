"""docs/configuration.md is generated from the settings classes (sentimentalyzer/configuration.py): the committed page
is what the generator writes, it lists every setting, and each process's settings on it are the flags its command
takes."""

import contextlib
import difflib
import importlib
import io
import re

import pytest

from sentimentalyzer import configuration
from sentimentalyzer.cli import COMMANDS
from tests.helpers import ROOT, setting_names

PAGE = ROOT / "docs" / "configuration.md"
REGENERATE = ".venv/bin/python -m sentimentalyzer.configuration"


def test_the_committed_page_is_what_the_generator_writes():
    expected = configuration.render()
    current = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
    if current != expected:
        diff = list(difflib.unified_diff(current.splitlines(keepends=True), expected.splitlines(keepends=True),
                                         "docs/configuration.md (committed)", "docs/configuration.md (generated)"))
        shown = "".join(diff[:60]) + (f"... ({len(diff) - 60} more diff lines)\n" if len(diff) > 60 else "")
        pytest.fail(f"docs/configuration.md is out of date with the settings classes. Regenerate it with\n\n"
                    f"    {REGENERATE}\n\nand commit the result. The difference:\n{shown}", pytrace=False)


def test_every_setting_is_on_the_page_with_its_flag():
    page = configuration.render()
    missing = sorted(name for name in setting_names()
                     if f"`{name}`" not in page or f"`--{name.lower().replace('_', '-')}`" not in page)
    assert not missing, f"settings missing from the configuration page: {missing}"


def help_flags(command: str) -> set[str]:
    """The flags ``sentimentalyzer <command> --help`` lists (but --help)."""
    module = importlib.import_module(COMMANDS[command][0])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        module.main(["--help"], prog=f"sentimentalyzer {command}")
    assert done.value.code == 0
    return set(re.findall(r"^\s+(--[a-z0-9][a-z0-9-]*)", out.getvalue(), re.MULTILINE)) - {"--help"}


def page_flags(process: configuration.Process) -> set[str]:
    return {row.flag for group in configuration.GROUPS for processes, row in configuration.group_rows(group)
            if process in processes}


@pytest.mark.parametrize("process", configuration.PROCESSES, ids=lambda p: p.key)
def test_each_commands_help_lists_the_flags_the_page_gives_its_process(process):
    assert help_flags(process.key) == page_flags(process)


def test_serve_takes_the_api_and_worker_settings_and_its_own_flags():
    by_key = {p.key: p for p in configuration.PROCESSES}
    own = set(re.findall(r"`(--[a-z-]+)`:", configuration.serve_text()))
    assert own == {"--workers", "--no-api"}
    assert help_flags("serve") == page_flags(by_key["api"]) | page_flags(by_key["worker"]) | own


def test_check_mode_says_how_to_regenerate(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n", encoding="utf-8")
    assert configuration.main(["--check", "--output", str(stale)]) == 1
    assert "run `python -m sentimentalyzer.configuration`" in capsys.readouterr().err
    assert configuration.main(["--output", str(stale)]) == 0
    assert configuration.main(["--check", "--output", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == configuration.render()


def test_a_default_computed_per_machine_is_described_not_evaluated():
    """EXPORT_CACHE_DIR's default depends on $HOME: the page must not hold the generating machine's path."""
    page = configuration.render()
    assert "`$XDG_CACHE_HOME/sentimentalyzer` (else `~/.cache/sentimentalyzer`)" in page
    assert str(ROOT.home()) not in page
