"""The committed classifier and GAN runs are package data: found through the
package (so an installed wheel has them), declared in pyproject.toml, and a missing
one is a clear error. .ci/check_wheel.sh checks the built wheel itself."""

import fnmatch
import shutil
import subprocess
import tomllib

import numpy as np
import pytest

import fitbook
from conftest import REPO_ROOT
from fitbook import quality as Q

PACKAGE = REPO_ROOT / "src" / "fitbook"


def committed_artifacts():
    """Paths, relative to the package, of the artifact files git tracks."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs the git checkout to list the committed files")
    listed = subprocess.run(
        ["git", "ls-files", "src/fitbook/artifacts"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    return [name.removeprefix("src/fitbook/") for name in listed]


def test_artifacts_resolve_inside_the_package_not_the_repository():
    package = fitbook.__path__[0]
    assert Q.ARTIFACTS.is_relative_to(package)
    assert Q.CLASSIFIER_PATH.is_relative_to(package)
    for parts in [("classifier.keras",), ("long", "generator.keras")]:
        path = Q.committed_artifact(*parts)
        assert path.is_file() and path.is_relative_to(package)


def test_package_data_declares_every_committed_artifact():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["fitbook"]
    committed = committed_artifacts()
    assert "artifacts/gan/classifier.keras" in committed
    assert "artifacts/gan/long/generator.keras" in committed
    unshipped = [
        name for name in committed
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns)
    ]
    assert not unshipped, f"add these to [tool.setuptools.package-data]: {unshipped}"


def test_committed_generator_loads_with_its_provenance():
    generator, provenance = Q.load_committed_generator()
    assert provenance["steps"] > 0 and provenance["recipe"]["beta_1"] == 0.5
    images = np.asarray(generator(np.zeros((2, 128), "float32")))
    assert images.shape == (2, 28, 28, 1)


def test_missing_artifacts_say_what_was_expected_and_how_to_fix(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(Q, "ARTIFACTS", tmp_path)
    monkeypatch.setattr(Q, "CLASSIFIER_PATH", tmp_path / "classifier.keras")
    with pytest.raises(FileNotFoundError, match="long/generator.keras") as err:
        Q.load_committed_generator()
    assert str(tmp_path) in str(err.value) and "package data" in str(err.value)
    assert "reinstall fitbook" in str(err.value)
    with pytest.raises(FileNotFoundError, match="python -m fitbook.quality --out"):
        Q.load_classifier()
