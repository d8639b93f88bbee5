"""Importing fitbook under another Keras backend fails with our message (chapter
"Setup"), before Keras is imported."""

import json
import os
import subprocess
import sys

import pytest

import fitbook

# Import fitbook in a fresh interpreter; print the error and whether Keras was
# imported (it must not be: with KERAS_BACKEND=jax it would fail on "import jax").
PROBE = """
import sys
try:
    import fitbook
except ImportError as err:
    print("ImportError:", err)
print("keras imported:", "keras" in sys.modules)
"""


def probe(tmp_path, **env):
    """Run ``PROBE`` with ``env`` added and a fresh, empty Keras home."""
    base = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    base["KERAS_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy", "openvino"])
def test_another_backend_in_the_environment_is_refused_before_keras(tmp_path, backend):
    out = probe(tmp_path, KERAS_BACKEND=backend)
    assert f"needs Keras' TensorFlow backend, but the backend is '{backend}'" in out
    assert "environment variable KERAS_BACKEND" in out
    assert "Unset KERAS_BACKEND, or set it to tensorflow" in out
    assert "keras imported: False" in out  # ours, before Keras tries the backend


def test_another_backend_in_keras_json_is_refused(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    out = probe(tmp_path)
    assert f"set by {tmp_path / 'keras.json'}" in out
    assert '"backend": "tensorflow"' in out
    assert "keras imported: False" in out


def test_configured_backend_reads_like_keras(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "keras")  # as if Keras were not imported yet
    read = fitbook._configured_backend
    home = {"KERAS_HOME": str(tmp_path)}
    assert read(home) == ("tensorflow", "Keras' default")  # no keras.json
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert read(home) == ("torch", str(tmp_path / "keras.json"))
    # The variable wins over the file; an empty one is ignored, as Keras does.
    assert read({**home, "KERAS_BACKEND": "tensorflow"})[0] == "tensorflow"
    assert read({**home, "KERAS_BACKEND": ""})[0] == "torch"
    (tmp_path / "keras.json").write_text("not json")
    assert read(home)[0] == "tensorflow"
    fitbook._require_tensorflow_backend({**home, "KERAS_BACKEND": "tensorflow"})
    with pytest.raises(ImportError, match="'jax'.*Unset KERAS_BACKEND"):
        fitbook._require_tensorflow_backend({**home, "KERAS_BACKEND": "jax"})


def test_an_imported_keras_is_asked_directly():
    import keras

    assert fitbook._configured_backend({"KERAS_BACKEND": "jax"}) == (
        keras.backend.backend(),
        "the Keras already imported",
    )
