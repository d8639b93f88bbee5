"""fitbook: the tested library behind the book *Customizing training in Keras*.

Importing the package first checks that Keras will use its TensorFlow backend
(the custom steps use ``tf.GradientTape`` and ``tf.function``; chapter "Setup"),
then imports TensorFlow and Keras without their start-up noise on stderr (see
:mod:`fitbook.tf_noise`); every chapter starts with it.

The package holds three kinds of module (tests/test_layout.py checks the rule):

- building blocks, listed in ``BLOCKS``: shared by many chapters; they import
  other blocks only;
- chapter modules, named after their chapter (``book/<stem>.md`` ->
  ``<stem>.py`` or ``<stem>_<topic>.py``): they import blocks and the modules of
  the same or earlier chapters only;
- tools, in ``fitbook.tools``: command-line programs, never shown in a chapter.
"""

import json
import os
import sys


def _configured_backend(environ=os.environ):
    """The Keras backend and where it is set, read as Keras reads it at import.

    Returns ``(name, source)``. Does not import Keras unless it is imported.
    """
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend(), "the Keras already imported"
    if environ.get("KERAS_BACKEND"):  # Keras ignores an empty value
        return environ["KERAS_BACKEND"], "the environment variable KERAS_BACKEND"
    if "KERAS_HOME" in environ:
        keras_dir = environ["KERAS_HOME"]
    else:
        home = os.path.expanduser("~")
        keras_dir = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    path = os.path.expanduser(os.path.join(keras_dir, "keras.json"))
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError):  # no file, or not JSON: Keras' default
        return "tensorflow", "Keras' default"
    backend = config.get("backend", "tensorflow") if isinstance(config, dict) else None
    return backend or "tensorflow", path


def _require_tensorflow_backend(environ=os.environ):
    """Raise ``ImportError`` unless Keras uses TensorFlow (chapter "Setup")."""
    name, source = _configured_backend(environ)
    if name == "tensorflow":
        return
    if source.startswith("the environment"):
        fix = "Unset KERAS_BACKEND, or set it to tensorflow"
    elif source.startswith("the Keras"):
        fix = "Start a new Python process with KERAS_BACKEND=tensorflow"
    else:
        fix = f'Set "backend": "tensorflow" in {source}, or KERAS_BACKEND=tensorflow'
    raise ImportError(
        f"fitbook needs Keras' TensorFlow backend, but the backend is {name!r} "
        f"(set by {source}): its custom training steps use tf.GradientTape and "
        f"tf.function. {fix}, before importing fitbook or keras."
    )


_require_tensorflow_backend()

from fitbook.tf_noise import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

__version__ = "0.1.0"

# The building blocks, in the order the API page lists them.
BLOCKS = (
    "data",
    "models",
    "batches",
    "checks",
    "timing",
    "tuning",
    "checkpoints",
    "callbacks",
    "runs",
    "plots",
    "quality",
    "reproducibility",
    "tf_noise",
)
