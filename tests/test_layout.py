"""The package's layout has a rule, checked here on the source, never by importing it.

Every module of src/fitbook is one of three kinds:

- a building block: a top-level module named in ``fitbook.BLOCKS``;
- a chapter module: ``<stem>.py`` or ``<stem>_<topic>.py`` where ``book/<stem>.md``
  is a chapter in _toc.yml (the longest matching stem wins: ``gan_loop`` belongs
  to ``gan``, ``wgan_gp`` to ``wgan_gp``);
- a tool: ``fitbook/tools/<name>.py``.

A chapter module, and a chapter's code cells, import blocks and same-or-earlier
chapters (in _toc.yml order) only; a block imports blocks only; a tool may import
anything. Imports inside functions count. A module-level ``if __name__ ==
"__main__":`` block is tool code and is skipped. Chapters never include a tool
(tests/test_book.py). Modules import fitbook at the top, not inside functions.
"""

import ast
import re
import sys

import pytest

import fitbook
from conftest import REPO_ROOT, toc_files

PACKAGE = REPO_ROOT / "src" / "fitbook"
BOOK = REPO_ROOT / "book"
CHAPTERS = [f.split("/", 1)[1] for f in toc_files() if f.startswith("book/")]
CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.M | re.S)
# Imports inside functions that have a reason (the only ones allowed):
LOCAL_IMPORTS_ALLOWED = {
    # TensorFlow is imported inside the filter that silences its start-up noise.
    ("fitbook.tf_noise", "import_tensorflow_quietly"),
    # A private TensorFlow module, needed by this one profiler function only.
    ("fitbook.performance_flops", "profiler_forward_flops"),
}


def module_name(path, package=None):
    """``src/fitbook/tools/x.py`` -> ``fitbook.tools.x``."""
    parts = path.relative_to((package or PACKAGE).parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def classify(module, blocks=fitbook.BLOCKS, chapters=CHAPTERS):
    """("block" | "chapter" | "tool" | "unknown", chapter index or None)."""
    parts = module.split(".")[1:]
    if not parts:
        return ("block", None)  # `import fitbook`: the package's quiet start
    if parts[0] == "tools":
        return ("tool", None)
    if len(parts) == 1 and parts[0] in blocks:
        return ("block", None)
    for stem in sorted(chapters, key=len, reverse=True):
        if parts[0] == stem or parts[0].startswith(stem + "_"):
            return ("chapter", chapters.index(stem))
    return ("unknown", None)


def allowed(source_kind, target, blocks=fitbook.BLOCKS, chapters=CHAPTERS):
    """Whether code of ``source_kind`` (a classify() pair) may import ``target``."""
    kind, index = source_kind
    target_kind, target_index = classify(target, blocks, chapters)
    if kind == "tool":
        return True
    if target_kind == "block":
        return kind in ("block", "chapter")
    if target_kind == "chapter":
        return kind == "chapter" and target_index <= index
    return False


def is_main_guard(node):
    """A module-level ``if __name__ == "__main__":``."""
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(getattr(c, "value", None) == "__main__" for c in test.comparators)
    )


def resolve(name, package_dir=None):
    """The module ``name`` denotes: ``fitbook.a.b`` if that is a module, else its
    longest prefix that is one (``from fitbook.gan import GAN`` -> fitbook.gan)."""
    parts = name.split(".")
    while len(parts) > 1:
        path = (package_dir or PACKAGE).parent.joinpath(*parts)
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return "fitbook"


def fitbook_imports(source, module, package_dir=None):
    """(line, imported module, enclosing function or None) for every fitbook import
    in ``source``, at any depth, with relative imports resolved against
    ``module``; ``importlib.import_module("fitbook...")`` calls count too. Code
    under a module-level ``__main__`` guard is skipped."""
    found = []
    stack = [(node, None) for node in ast.parse(source).body if not is_main_guard(node)]
    while stack:
        node, function = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: against the importing module's package
                package = module.split(".")[: -node.level] or ["fitbook"]
                base = ".".join(package + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [str(node.args[0].value)]
        for name in names:
            if name == "fitbook" or name.startswith("fitbook."):
                found.append((node.lineno, resolve(name, package_dir), function))
        stack.extend((child, function) for child in ast.iter_child_nodes(node))
    return sorted(set(found))


def src_modules():
    return sorted(PACKAGE.rglob("*.py"))


def chapter_cells(page):
    """(first line, code) of a MyST page's code cells; cell options (``:tags:``
    lines, a ``---`` block) and IPython-only lines are blanked, keeping lines."""
    text = page.read_text()
    for match in CODE_CELL.finditer(text):
        first = text[: match.start(1)].count("\n") + 1
        lines = match.group(1).splitlines()
        if lines and lines[0].strip() == "---":
            end = lines.index("---", 1) if "---" in lines[1:] else 0
            lines[: end + 1] = [""] * (end + 1)
        lines = [
            "" if line.startswith((":", "%", "!")) else line for line in lines
        ]
        yield first, "\n".join(lines)


def forbidden_edges(path):
    """The imports of module file ``path`` that break the rule, as messages."""
    module = module_name(path)
    kind = classify(module)
    package = PACKAGE
    return [
        f"{module} ({describe(module)}) imports {target} ({describe(target)}) "
        f"at {path.relative_to(REPO_ROOT)}:{line}"
        for line, target, _ in fitbook_imports(path.read_text(), module, package)
        if target != module and not allowed(kind, target)
    ]


def describe(module):
    kind, index = classify(module)
    if kind == "chapter":
        return f"chapter {CHAPTERS[index]!r}, #{index + 1}"
    return kind


def test_every_module_has_a_kind():
    unknown = [
        str(p.relative_to(REPO_ROOT))
        for p in src_modules()
        if p.name != "__init__.py" and classify(module_name(p))[0] == "unknown"
    ]
    assert not unknown, (
        "modules that are neither a block (fitbook.BLOCKS), a chapter's (named "
        f"after a chapter in _toc.yml) nor a tool (fitbook/tools/): {unknown}"
    )
    missing = [b for b in fitbook.BLOCKS if not (PACKAGE / f"{b}.py").is_file()]
    assert not missing, f"fitbook.BLOCKS names modules that do not exist: {missing}"


def test_module_imports_follow_the_rule():
    edges = [edge for path in src_modules() for edge in forbidden_edges(path)]
    assert not edges, "forbidden imports:\n" + "\n".join(edges)


def test_chapter_pages_import_the_same_way():
    edges = []
    for index, stem in enumerate(CHAPTERS):
        page = BOOK / f"{stem}.md"
        for first, code in chapter_cells(page):
            for line, target, _ in fitbook_imports(code, f"fitbook.{stem}"):
                if not allowed(("chapter", index), target):
                    edges.append(
                        f"book/{stem}.md (chapter #{index + 1}) imports {target} "
                        f"({describe(target)}) at book/{stem}.md:{first + line - 1}"
                    )
    assert not edges, "forbidden imports in chapters:\n" + "\n".join(edges)


def test_no_import_inside_functions():
    hidden = []
    for path in src_modules():
        module = module_name(path)
        if classify(module)[0] == "tool":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)) and (
                    (module, node.name) not in LOCAL_IMPORTS_ALLOWED
                ):
                    hidden.append(f"{path.relative_to(REPO_ROOT)}:{inner.lineno} "
                                  f"(in {node.name})")
    assert not hidden, "imports belong at the top of the module:\n" + "\n".join(
        sorted(set(hidden))
    )


# The checker itself must be able to fail: a synthetic package and page.

SYNTHETIC = '''
import fitbook
from fitbook import data
from . import vae
import os


def later():
    from fitbook.input_gradients import saliency_map
    import importlib
    return importlib.import_module("fitbook.tools.train_gan")


if __name__ == "__main__":
    from fitbook.tools.train_gan import main
'''


def test_import_finder_sees_nested_relative_and_guarded_imports():
    found = fitbook_imports(SYNTHETIC, "fitbook.vae_losses")
    assert [(line, target) for line, target, _ in found] == [
        (2, "fitbook"),
        (3, "fitbook.data"),
        (4, "fitbook.vae"),
        (9, "fitbook.input_gradients"),
        (11, "fitbook.tools.train_gan"),
    ]
    assert [function for *_, function in found] == [None, None, None, "later", "later"]


@pytest.mark.parametrize(
    "source, target, ok",
    [
        ("fitbook.vae", "fitbook.gan", True),  # an earlier chapter
        ("fitbook.vae_losses", "fitbook.vae", True),  # the same chapter
        ("fitbook.vae", "fitbook.input_gradients", False),  # a later chapter
        ("fitbook.gan_loop", "fitbook.wgan_gp", False),  # gan_loop is chapter gan
        ("fitbook.models", "fitbook.data", True),  # block -> block
        ("fitbook.models", "fitbook.loops", False),  # block -> chapter
        ("fitbook.vae", "fitbook.tools.train_gan", False),  # chapter -> tool
        ("fitbook.tools.train_gan", "fitbook.wgan_gp", True),  # tools: anything
        ("fitbook.nowhere", "fitbook.data", False),  # unclassified
    ],
)
def test_rule_on_synthetic_edges(source, target, ok):
    assert allowed(classify(source), target) is ok


def test_forbidden_edge_is_named_with_file_and_line(tmp_path, monkeypatch):
    package = tmp_path / "src" / "fitbook"
    package.mkdir(parents=True)
    (package / "vae.py").write_text("import os\n\nfrom fitbook import input_gradients")
    (package / "input_gradients.py").write_text("")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "PACKAGE", package)
    monkeypatch.setattr(this, "REPO_ROOT", tmp_path)
    vae, later = CHAPTERS.index("vae") + 1, CHAPTERS.index("input_gradients") + 1
    assert forbidden_edges(package / "vae.py") == [
        f"fitbook.vae (chapter 'vae', #{vae}) imports fitbook.input_gradients "
        f"(chapter 'input_gradients', #{later}) at src/fitbook/vae.py:3"
    ]


def test_classifier_handles_new_chapters_by_name():
    chapters = [*CHAPTERS, "accumulation", "tensorboard"]
    assert classify("fitbook.accumulation", chapters=chapters)[0] == "chapter"
    assert classify("fitbook.tensorboard_logging", chapters=chapters) == (
        "chapter", chapters.index("tensorboard"))
    assert classify("fitbook.distribute_gan") == (
        "chapter", CHAPTERS.index("distribute"))
    assert classify("fitbook.data") == ("block", None)  # blocks win over chapters
