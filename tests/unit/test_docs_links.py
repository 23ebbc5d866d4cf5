"""Every relative link in README.md and docs/*.md resolves: the file exists and, with ``#anchor``, the anchor is a
heading of that page (GitHub's slugs) or an explicit ``<a id=...>`` in it."""

import re
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import ROOT

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.\-]*:", re.IGNORECASE)  # http:, https:, mailto:


def prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links and markup dropped) lower-cased, punctuation removed, spaces to
    hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    text = page.read_text(encoding="utf-8")
    found: set[str] = set(EXPLICIT_ANCHOR.findall(text))
    counts: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def where(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{target}: no such file ({where(resolved)})")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading or anchor #{anchor} in {where(resolved)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert not broken_links(page)


def test_the_checker_catches_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading (2 cores)\n\n<a id=\"row\"></a>\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-code-heading-2-cores) [row](other.md#row) [self](#title)\n\n# Title\n\n"
                    "[gone](missing.md) [no anchor](other.md#nope) [web](https://example.com/x.md)\n"
                    "`[not a link](nowhere.md)`\n\n```\n[nor this](nowhere.md)\n```\n")
    assert broken_links(page) == [
        f"missing.md: no such file ({(tmp_path / 'missing.md').resolve()})",
        "other.md#nope: no heading or anchor #nope in " + str((tmp_path / "other.md").resolve()),
    ]


def test_the_readme_is_a_front_page():
    """What, compatibility and quick start on the first screen; at most 250 lines; every docs page linked."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move detail to docs/"
    first_screen = "\n".join(lines[:40])
    for needed in ("Compatible with", "## Quick start", "scripts/run", "scripts/test", "curl"):
        assert needed in first_screen, f"{needed!r} is not in the README's first 40 lines"
    linked = set(re.findall(r"\]\(docs/([\w\-]+\.md)", "\n".join(lines)))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"mutation.md"}
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"
