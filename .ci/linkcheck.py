"""Check every link of the built book, offline.

Every internal href/src of every page (links, images, scripts, stylesheets, the
downloadable .md/.ipynb sources, [source] pages) must point at a file of the build,
and every #anchor at an id on the target page. External http(s) links are only
counted, unless FITBOOK_LINKCHECK_EXTERNAL=1 asks to fetch them (needs a network).
Before checking the book, the script proves on a broken copy of it that it does
catch a missing page and a missing anchor (skip with --no-self-check).

Usage: python .ci/linkcheck.py [_build/html] [--no-self-check]
"""

import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup

LINK_ATTRIBUTES = {"a": "href", "link": "href", "img": "src", "script": "src"}
IGNORED_SCHEMES = ("mailto", "javascript", "data", "tel")
SKIPPED_DIRS = ("_static",)  # theme templates there are fragments, not pages
EXTERNAL_ENV = "FITBOOK_LINKCHECK_EXTERNAL"
TIMEOUT_S = 10  # per external link, when they are checked


def pages(html_root):
    """Every built HTML page under ``html_root``, except theme fragments."""
    return sorted(
        p
        for p in html_root.rglob("*.html")
        if not set(p.relative_to(html_root).parts) & set(SKIPPED_DIRS)
    )


def links(page):
    """(tag, url) for every link-like attribute on ``page``."""
    soup = BeautifulSoup(page.read_text(), "html.parser")
    for tag, attribute in LINK_ATTRIBUTES.items():
        for element in soup.find_all(tag):
            url = element.get(attribute)
            if url:
                yield tag, url


def anchors(page, cache):
    """The ids and names on ``page`` that a #fragment may point at (cached)."""
    if page not in cache:
        soup = BeautifulSoup(page.read_text(), "html.parser")
        cache[page] = {e["id"] for e in soup.find_all(id=True)}
        cache[page] |= {e["name"] for e in soup.find_all(attrs={"name": True})}
    return cache[page]


def check_internal(html_root):
    """Return (problems, external urls) for the whole build."""
    problems, external, cache = [], set(), {}
    root = html_root.resolve()
    for page in pages(html_root):
        name = page.relative_to(html_root)
        for tag, url in links(page):
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                external.add(url)
                continue
            if parts.scheme in IGNORED_SCHEMES or parts.scheme:
                continue
            target = page if not parts.path else page.parent / unquote(parts.path)
            target = target.resolve()
            if target.is_dir():
                target = target / "index.html"
            if root != target and root not in target.parents:
                problems.append(f"{name}: <{tag}> {url} points outside the build")
            elif not target.is_file():
                problems.append(f"{name}: <{tag}> {url} does not exist")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in anchors(target, cache):
                    problems.append(f"{name}: <{tag}> {url}: no such anchor")
    return problems, sorted(external)


def check_external(urls):
    """Fetch each external URL; return the ones that fail, with the reason."""
    problems = []
    for url in urls:
        request = urllib.request.Request(url, method="HEAD")
        request.add_header("User-Agent", "fitbook-linkcheck")
        try:
            urllib.request.urlopen(request, timeout=TIMEOUT_S).close()
        except Exception as err:  # any failure is reported, the loop goes on
            problems.append(f"external {url}: {type(err).__name__}: {err}")
    return problems


def self_check(html_root):
    """Break a copy of the build twice; fail loudly if either goes unnoticed."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "html"
        shutil.copytree(html_root, copy, ignore=shutil.ignore_patterns("_static"))
        (copy / "_static").mkdir()  # keep the copy small; assets are not at stake
        page = next(p for p in pages(copy) if p.parent == copy / "book")
        text = page.read_text().replace(
            "</main>",
            '<a href="missing-page.html">x</a>'
            f'<a href="{page.name}#no-such-anchor">y</a></main>',
            1,
        )
        page.write_text(text)
        problems, _ = check_internal(copy)
    caught = [p for p in problems if "missing-page.html" in p or "no-such-anchor" in p]
    if len(caught) != 2:
        print("FAIL self-check: a broken link or anchor went unnoticed")
        return False
    print("ok   self-check: a broken link and a broken anchor are both reported")
    return True


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    html_root = Path(args[0] if args else "_build/html")
    if not (html_root / "index.html").is_file():
        print(f"FAIL: {html_root} holds no built book (no index.html); build it first")
        return 1
    if "--no-self-check" not in argv and not self_check(html_root):
        return 1
    problems, external = check_internal(html_root)
    n_pages = len(pages(html_root))
    print(f"checked {n_pages} pages: {len(problems)} broken internal links")
    if os.environ.get(EXTERNAL_ENV) == "1":
        problems += check_external(external)
        print(f"checked {len(external)} external links")
    else:
        print(f"skipped {len(external)} external links (set {EXTERNAL_ENV}=1 to check)")
    for problem in problems:
        print("FAIL", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
