"""A reader can copy a chapter's visible code, in order, and run it.

A visible code cell may only use names that visible code defined before it: an
earlier visible cell (its assignments, imports, ``def``, ``class``, loop targets)
or a ``{literalinclude}`` shown before it (its ``:pyobject:``). A name defined
only in a hidden cell (``remove-input`` or ``remove-cell``; ``hide-input`` and
``remove-output`` keep the code on the page) is invisible to the reader, so a
visible cell that uses it cannot be copied. Names are found with :mod:`ast`.
"""

import ast
import builtins
import re
import textwrap

import pytest
import yaml

from conftest import REPO_ROOT, toc_files

BOOK = REPO_ROOT / "book"
HIDING_TAGS = {"remove-input", "remove-cell"}
# Names an IPython kernel provides without an import.
KERNEL_NAMES = {"display", "get_ipython", "In", "Out"}
# Offenders in chapters other helpers are rewriting (issue 16); the lead empties
# this set when their branches are merged. (chapter stem, name)
KNOWN_UNTIL_MERGE = set()

FENCE = re.compile(r"^(`{3,}|:{3,})\{(code-cell|literalinclude)\}[ \t]*(.*)$")


def blocks(text):
    """Yield ("cell", options, code, line) and ("include", options, path, line)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, kind, argument = match.groups()
        start = i + 1
        i += 1
        options = {}
        if i < len(lines) and lines[i].strip() == "---":
            end = lines.index("---", i + 1)
            options = yaml.safe_load("\n".join(lines[i + 1 : end])) or {}
            i = end + 1
        else:
            while i < len(lines) and re.match(r"^:[\w-]+:", lines[i]):
                key, _, value = lines[i][1:].partition(":")
                options[key] = yaml.safe_load(value.strip()) if value.strip() else ""
                i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != fence:
            body.append(lines[i])
            i += 1
        i += 1
        if kind == "code-cell":
            yield "cell", options, "\n".join(body), start
        else:
            yield "include", options, argument.strip(), start


def is_hidden(options):
    """Whether a cell's source is left off the page."""
    tags = options.get("tags") or []
    if isinstance(tags, str):
        tags = [tags]
    return bool(HIDING_TAGS & set(tags))


def parse_cell(code):
    """An ast.Module for a cell, with IPython magics and shell lines blanked."""
    kept = [
        "" if line.lstrip().startswith(("%", "!")) else line
        for line in code.splitlines()
    ]
    return ast.parse(textwrap.dedent("\n".join(kept)))


def defined_names(tree):
    """Every name a cell binds, at any depth (assignments, imports, defs, args)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
    return names


def used_names(tree):
    """Names a cell reads and does not bind itself."""
    loaded = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    return loaded - defined_names(tree) - set(dir(builtins)) - KERNEL_NAMES


def hidden_only_uses(text):
    """(line, name) for each visible cell's use of a name defined only in hiding."""
    visible, hidden, problems = set(), set(), []
    for kind, options, body, line in blocks(text):
        if kind == "include":
            obj = str(options.get("pyobject", ""))
            if obj and "." not in obj:
                visible.add(obj)
            continue
        tree = parse_cell(body)
        if is_hidden(options):
            hidden |= defined_names(tree)
            continue
        for name in sorted(used_names(tree)):
            if name in hidden and name not in visible:
                problems.append((line, name))
        visible |= defined_names(tree)
    return problems


CHAPTERS = [f.split("/", 1)[1] for f in toc_files() if f.startswith("book/")]


@pytest.mark.parametrize("stem", CHAPTERS)
def test_visible_code_uses_only_visible_names(stem):
    problems = hidden_only_uses((BOOK / f"{stem}.md").read_text())
    known = {name for chapter, name in KNOWN_UNTIL_MERGE if chapter == stem}
    new = [f"book/{stem}.md:{line}: {name}" for line, name in problems
           if name not in known]
    assert not new, (
        "visible cells use names defined only in hidden (remove-input/remove-cell) "
        "cells; show the definition or move it into a visible cell:\n"
        + "\n".join(new)
    )


@pytest.mark.parametrize("stem, name", sorted(KNOWN_UNTIL_MERGE))
def test_known_offenders_still_offend(stem, name):
    problems = hidden_only_uses((BOOK / f"{stem}.md").read_text())
    assert name in {found for _, found in problems}, (
        f"{stem}.md no longer uses {name!r} from a hidden cell: remove "
        f"({stem!r}, {name!r}) from KNOWN_UNTIL_MERGE"
    )


CHAPTER = """\
```{code-cell} ipython3
:tags: [remove-cell]
import secret
hidden = 1
```

```{literalinclude} ../src/x.py
:pyobject: shown
```

```{code-cell} ipython3
---
tags: [hide-input]
---
from lib import imported
seen = hidden + 1
```

```{code-cell} ipython3
def f(arg):
    local = arg + seen
    return local, imported, shown, len

print(f(2), hidden, secret)
```
"""


def test_parser_reads_both_option_styles():
    found = [(kind, options) for kind, options, _, _ in blocks(CHAPTER)]
    assert found == [
        ("cell", {"tags": ["remove-cell"]}),
        ("include", {"pyobject": "shown"}),
        ("cell", {"tags": ["hide-input"]}),
        ("cell", {}),
    ]


def test_hidden_only_names_are_found_and_visible_ones_are_not():
    # `hidden` is used in the hide-input cell (visible) and in the last cell;
    # `secret` is imported in the hidden cell only. Arguments, locals, builtins,
    # visible imports and included objects are fine.
    assert hidden_only_uses(CHAPTER) == [(11, "hidden"), (19, "hidden"),
                                         (19, "secret")]
