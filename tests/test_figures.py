"""Every figure of the book has alt text and a caption, checked in the sources.

`.ci/check_html.py` checks the built pages; this test fails earlier, without a
build. A ``{glue:figure}`` or ``{figure}`` needs a one-line ``:alt:`` option that
describes the picture (MyST options do not continue onto indented lines: such a
line would silently become the caption) and a caption paragraph.
"""

import re

import pytest

from conftest import REPO_ROOT, toc_files

BOOK = REPO_ROOT / "book"
CHAPTERS = [f.split("/", 1)[1] for f in toc_files() if f.startswith("book/")]
# Chapters other helpers are rewriting (issue 16); the lead empties this set
# when their branches are merged.
KNOWN_UNTIL_MERGE = set()
FIGURE = re.compile(
    r"^(`{3,}|:{3,})\{(glue:figure|figure)\}[ \t]*(\S*)\n(.*?)^\1[ \t]*$", re.M | re.S
)


def figures(text):
    """(name, options, caption) of every figure directive in a page."""
    for match in FIGURE.finditer(text):
        lines = match.group(4).splitlines()
        options, i = {}, 0
        while i < len(lines) and lines[i].startswith(":"):
            key, _, value = lines[i][1:].partition(":")
            options[key] = value.strip()
            i += 1
            if i < len(lines) and lines[i].startswith((" ", "\t")) and lines[i].strip():
                options.setdefault("continued", key)
        caption = " ".join(line.strip() for line in lines[i:]).strip()
        yield match.group(3), options, caption


def problems(text):
    found = []
    for name, options, caption in figures(text):
        alt = options.get("alt", "")
        if "continued" in options:
            found.append(f"{name}: option :{options['continued']}: continues onto "
                         "an indented line; write it on one line")
        if len(alt.split()) < 3:
            found.append(f"{name}: no :alt: text describing the picture")
        if not caption:
            found.append(f"{name}: no caption")
    return found


@pytest.mark.parametrize("stem", CHAPTERS)
def test_every_figure_has_alt_text_and_a_caption(stem):
    if stem in KNOWN_UNTIL_MERGE:
        pytest.skip("figures being rewritten on another branch (KNOWN_UNTIL_MERGE)")
    found = problems((BOOK / f"{stem}.md").read_text())
    assert not found, f"book/{stem}.md:\n" + "\n".join(found)


def test_problems_are_found():
    page = (
        "```{glue:figure} a\n:name: fig-a\n\nCaption.\n```\n\n"
        "```{glue:figure} b\n:alt: Two panels of curves\n  and more words\n```\n\n"
        "```{glue:figure} c\n:alt: A grid of samples\n\nIts caption.\n```\n"
    )
    assert problems(page) == [
        "a: no :alt: text describing the picture",
        "b: option :alt: continues onto an indented line; write it on one line",
    ]  # (b's indented line would become its caption)
