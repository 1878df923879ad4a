"""README.md is the front door and docs/ the manual: every relative link in them resolves.

A link or image (``[text](target)``, ``![alt](target)``) outside code must name a file that exists, relative
to the page; a ``#anchor`` must name a heading of the target page, slugged as GitHub does. README.md stays
under 300 lines, and every page of the manual is reachable from its index (docs/README.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+).*?\1")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fence = [], None
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*(```|~~~)", line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        if fence is None:
            out.append((n, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").strip().lower()
    return re.sub(r" ", "-", re.sub(r"[^\w\- ]", "", text))


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        k = seen.get(base, 0)
        seen[base] = k + 1
        out.add(base if k == 0 else f"{base}-{k}")
    return out


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image outside code."""
    text = page.read_text(encoding="utf-8")
    return [(n, m.group(1)) for n, line in prose_lines(text) for m in LINK.finditer(INLINE_CODE.sub("", line))]


def broken_links(page: Path) -> list[str]:
    bad = []
    for n, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:: not checked here
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{n}: {target}"
        if not dest.exists():
            bad.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert links(page) or page.name != "README.md", f"{page} links nowhere"
    assert broken_links(page) == []


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 300, f"README.md has {len(lines)} lines; the manual belongs in docs/"


def test_every_manual_page_is_in_the_index():
    index = ROOT / "docs" / "README.md"
    linked = {(index.parent / t.partition("#")[0]).resolve() for _, t in links(index) if t.partition("#")[0]}
    pages = {p.resolve() for p in PAGES if p.parent.name == "docs" and p != index}
    assert pages and pages <= linked, sorted(str(p.relative_to(ROOT)) for p in pages - linked)


def test_slugs_follow_github():
    assert slug("`calibrate` — build your own artifact") == "calibrate--build-your-own-artifact"
    assert slug("Where a routed request's time goes (`scripts/bench_serve.py`)") == (
        "where-a-routed-requests-time-goes-scriptsbench_servepy"
    )
    assert slug("Serving overhead and the local default's footprint") == "serving-overhead-and-the-local-defaults-footprint"
