"""The API page cannot fall behind the package: every module is listed on
book/api.md, every public function, class and method has a docstring (Keras hooks
such as ``call`` may go without), and (after a build, with FITBOOK_BUILT_HTML set)
every documented one of them is on the built page, with its [source] page."""

import ast
import os
import re
from pathlib import Path

import keras
import pytest

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "fitbook"
API_PAGE = REPO_ROOT / "book" / "api.md"
AUTOMODULE = re.compile(r"^\.\. automodule:: (\S+)\s*$", re.M)
# Methods that override Keras' own (call, train_step, on_epoch_end, get_config...)
# are documented by Keras and the class docstring says what the override is for,
# so their docstring is optional; every other public method needs one.
KERAS_BASES = (
    keras.Model,
    keras.callbacks.Callback,
    keras.metrics.Metric,
    keras.losses.Loss,
    keras.optimizers.Optimizer,
)
KERAS_HOOKS = {name for base in KERAS_BASES for name in dir(base)}


def public_modules():
    """Dotted names of the package's public modules (no leading underscore)."""
    return sorted(
        ".".join(("fitbook", *path.relative_to(PACKAGE).with_suffix("").parts))
        for path in PACKAGE.rglob("*.py")
        if not path.stem.startswith("_")
    )


def listed_modules(text):
    """Modules named by ``.. automodule::`` on the API page."""
    return AUTOMODULE.findall(text)


def public_objects(source):
    """Qualified names of the public functions, classes and methods in ``source``,
    each with its docstring (or None)."""
    found = {}
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        if node.name.startswith("_"):
            continue
        found[node.name] = ast.get_docstring(node)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                    found[f"{node.name}.{item.name}"] = ast.get_docstring(item)
    return found


def module_source(module):
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py").read_text()


def test_public_objects_sees_functions_classes_and_methods():
    source = (
        "def f():\n    'doc'\n"
        "def _hidden():\n    pass\n"
        "class C:\n    def m(self):\n        pass\n    def _p(self):\n        pass\n"
        "X = 1\n"
    )
    assert public_objects(source) == {"f": "doc", "C": None, "C.m": None}


def test_every_module_is_on_the_api_page():
    listed = listed_modules(API_PAGE.read_text())
    missing = sorted(set(public_modules()) - set(listed))
    assert not missing, (
        f"book/api.md does not list {missing}; add a section with "
        "'.. automodule:: NAME' and ':members:' for each"
    )
    stale = sorted(set(listed) - set(public_modules()))
    assert not stale, f"book/api.md lists modules that do not exist: {stale}"
    assert len(listed) == len(set(listed)), "book/api.md lists a module twice"


@pytest.mark.parametrize("module", public_modules())
def test_every_public_object_has_a_docstring(module):
    source = module_source(module)
    assert ast.get_docstring(ast.parse(source)), f"{module} has no module docstring"
    undocumented = [
        name
        for name, doc in public_objects(source).items()
        if not doc and name.split(".")[-1] not in KERAS_HOOKS
    ]
    assert not undocumented, (
        f"{module}: {undocumented} have no docstring, so the API page would skip "
        "them; add a one-line docstring to each"
    )


BUILT = os.environ.get("FITBOOK_BUILT_HTML")
NOT_BUILT = "after a build, set FITBOOK_BUILT_HTML=_build/html"


@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
@pytest.mark.parametrize("module", public_modules())
def test_built_api_page_shows_every_public_object(module):
    html_root = Path(BUILT)
    page = html_root / "book" / "api.html"
    assert page.is_file(), f"{page} was not built; is book/api in _toc.yml?"
    html = page.read_text()
    for name, doc in public_objects(module_source(module)).items():
        if not doc:
            continue  # a Keras hook without a docstring: autodoc skips it
        assert f'id="{module}.{name}"' in html, f"{module}.{name} is not on {page}"
    source_page = html_root / "_modules" / Path(*module.split(".")).with_suffix(".html")
    assert source_page.is_file(), f"no [source] page {source_page} (viewcode)"
