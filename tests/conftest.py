"""Shared fixtures. Importing fitbook first keeps TensorFlow's start-up quiet."""

import os
from pathlib import Path

import pytest

import fitbook  # noqa: F401  (quiet TensorFlow import before anything else)
from fitbook import data

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fashion_mnist_dir():
    """A directory with the real, verified Fashion-MNIST files."""
    try:
        return data.locate_fashion_mnist(download=False)
    except data.DataError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the data (make test installs it): {err}")
        pytest.skip(f"Fashion-MNIST is not on this machine: {err}")


def pytest_configure(config):
    """Markers that .ci/run selects for its second pass (oneDNN kernels off)."""
    config.addinivalue_line(
        "markers",
        "equivalence: custom step vs Keras' built-in one; "
        ".ci/run runs these again with TF_ENABLE_ONEDNN_OPTS=0",
    )
    config.addinivalue_line(
        "markers",
        "guard: the loop's non-finite-step guard; "
        ".ci/run runs these again with TF_ENABLE_ONEDNN_OPTS=0",
    )
