"""The book and src/ cannot drift: every included object exists, every page runs."""

import re

import pytest
from sphinx.pycode import ModuleAnalyzer

from conftest import REPO_ROOT, toc_files

BOOK = REPO_ROOT / "book"
DIRECTIVE = re.compile(
    r"^(`{3,}|:{3,})\{literalinclude\}\s+(\S+)\s*\n"  # opening fence and path
    r"((?:\s*:[\w-]+:.*\n)*)",  # its :option: lines
    re.M,
)


def literalincludes():
    """(page, target path, options) for every literalinclude in book/."""
    for page in sorted(BOOK.rglob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text()):
            options = dict(re.findall(r":([\w-]+):\s*(.*)", match.group(3)))
            yield page, (page.parent / match.group(2)).resolve(), options


def line_numbers(spec):
    """Expand Sphinx's '1,3-5' line specification into a list of ints."""
    numbers = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        first, _, last = part.partition("-")
        numbers += range(int(first), int(last or first) + 1)
    return numbers


INCLUDES = list(literalincludes())


def test_book_has_includes():
    assert INCLUDES, "the book shows no code from src/"


@pytest.mark.parametrize(
    "page,target,options",
    INCLUDES,
    ids=[f"{p.name}:{o.get('pyobject', t.name)}" for p, t, o in INCLUDES],
)
def test_literalinclude_resolves(page, target, options):
    assert target.is_file(), f"{page.name} includes missing file {target}"
    outside = f"{page.name} includes code outside src/"
    assert REPO_ROOT / "src" in target.parents, outside
    tools = REPO_ROOT / "src" / "fitbook" / "tools"
    assert tools not in target.parents, f"{page.name} includes a tool, {target.name}"
    length = len(target.read_text().splitlines())
    if "pyobject" in options:
        # The same lookup Sphinx's literalinclude uses for :pyobject:.
        tags = ModuleAnalyzer.for_file(str(target), "").find_tags()
        name = options["pyobject"]
        assert name in tags, f"{page.name}: no {name} in {target.name}"
        _, start, end = tags[name]
        length = end - start + 1  # Sphinx includes lines[start - 1:end]
    for key in ("emphasize-lines", "lines"):
        if key in options:
            bad = [n for n in line_numbers(options[key]) if not 1 <= n <= length]
            assert not bad, f"{page.name}: {key} {bad} outside the {length} lines"


@pytest.mark.parametrize("name", toc_files())
def test_toc_entry_exists_and_executes(name):
    page = REPO_ROOT / f"{name}.md"
    assert page.is_file(), f"_toc.yml lists {name} but {page} does not exist"
    text = page.read_text()
    if "{code-cell}" in text:
        # Without this front matter myst-nb silently leaves the cells unexecuted.
        front_matter = text.split("\n---", 2)[0]
        has_jupytext = text.startswith("---\njupytext:")
        assert has_jupytext, f"{page.name} lacks jupytext front matter"
        assert "kernelspec:" in front_matter, f"{page.name} lacks a kernelspec"


def test_every_chapter_is_in_the_toc():
    listed = set(toc_files())
    pages = {str(p.relative_to(REPO_ROOT).with_suffix("")) for p in BOOK.rglob("*.md")}
    assert pages <= listed, f"pages missing from _toc.yml: {sorted(pages - listed)}"
