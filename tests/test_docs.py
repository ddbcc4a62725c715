"""The README and docs/ hold together: the README's first screen is the two commands,
every relative link in README.md and docs/*.md reaches a file (and, for a Markdown file,
a heading) that exists, and the source paths the docs name are there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)
EXTERNAL = ("http://", "https://", "mailto:")
PACKAGES = ("store", "people", "channels", "agents", "escalation", "gateway")
TOP = "|".join((*PACKAGES, "tests", "benchmarks", "config"))
SOURCE_PATH = re.compile(rf"`((?:{TOP})/[^`\s]*)`")
TABLE_ROW = re.compile(r"^\| *\d* *\| *`(\w+)/` *\|(.*)\|$", re.MULTILINE)
MODULE = re.compile(r"`([\w/]+(?:\.py|/))`")
# Folders the gateway split (issue 14) creates: named by the docs already, and checked once
# they exist.
SPLIT = ("gateway/api/", "gateway/cli/", "gateway/web/")


def links(markdown: str) -> list[str]:
    """The link targets of ``markdown``, outside code blocks and code spans."""
    prose = CODE.sub("", FENCE.sub("", markdown))
    return LINK.findall(prose)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown``: lower case, punctuation
    dropped, spaces as hyphens, repeated headings numbered."""
    seen: dict[str, int] = {}
    found = set()
    for title in HEADING.findall(FENCE.sub("", markdown)):
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file, or heading, does not exist."""
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif (
            anchor
            and file.suffix == ".md"
            and anchor not in anchors(file.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_reach_existing_files_and_headings(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# Here\n\n## Some section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#some-section) [web](https://example.com/x)\n"
        "`[code](nowhere.md)`\n```\n[fenced](nowhere.md)\n```\n"
        "[gone](missing.md) [bad anchor](there.md#nope)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "there.md#nope: no heading #nope in there.md",
    ]


def test_readme_first_screen_is_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "# frontdesk"
    assert lines[1] == ""
    assert lines[2] == "```sh"
    assert lines[3].startswith("make serve ")
    assert lines[4].startswith("make test ")
    assert lines[5] == "```"
    screen = "\n".join(lines[: lines.index("---")])
    assert "frontdesk listening on http://127.0.0.1:8080" in screen
    assert "http://127.0.0.1:8080/webchat" in screen
    assert "FRONTDESK_REQUIRE_SERVICES=1" in screen


def test_docs_index_links_every_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {Path(t.partition("#")[0]).name for t in links(readme) if t.startswith("docs/")}
    assert {p.name for p in PAGES[1:]} <= linked


def missing_paths(page: Path) -> list[str]:
    """The source paths ``page`` names in code spans that do not exist: placeholders
    (``channels/<name>.py``) and the WhatsApp channel followed on paper are not paths."""
    missing = []
    for path in SOURCE_PATH.findall(page.read_text(encoding="utf-8")):
        if "<" in path or "whatsapp" in path:
            continue
        folder = next((ROOT / f for f in SPLIT if path.startswith(f)), None)
        if folder is not None and not folder.exists():
            continue
        if not (ROOT / path).exists():
            missing.append(path)
    return missing


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_source_paths_the_docs_name_exist(page: Path) -> None:
    assert missing_paths(page) == []


def test_every_module_in_the_architecture_table_exists() -> None:
    table = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = TABLE_ROW.findall(table)
    assert {package for package, _ in rows} >= set(PACKAGES)
    missing = [
        f"{package}/{name}"
        for package, cells in rows
        for name in MODULE.findall(cells)
        if not name.startswith(f"{package}/") and not (ROOT / package / name).exists()
    ]
    assert missing == []
