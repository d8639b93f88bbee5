"""Score generated images with a small Fashion-MNIST classifier (chapter "A GAN").

Two numbers, computed the same way for real images, generated images and noise:

- ``coverage``: entropy of the histogram of predicted classes divided by
  ``log(10)``, 1 when all ten classes are equally frequent, 0 when one class
  takes everything (the signature of mode collapse);
- ``frechet``: the Fréchet distance between Gaussians fitted to the
  classifier's penultimate-layer features of the images and of real test
  images (the idea of FID, with a Fashion-MNIST classifier instead of Inception).

One yardstick: the reference statistics are those of the whole Fashion-MNIST
test set, computed once per process by ``test_set_reference``, so a generator
gets the same score in every chapter. (A mean top-class probability,
"confidence", was dropped: noise and real images scored alike on it.)

The committed classifier and the committed GAN runs ship inside the package, in
``ARTIFACTS`` (``src/fitbook/artifacts/gan/`` in a checkout), so a pip-installed
fitbook scores images and loads the committed generator without a checkout:
``load_classifier()`` and ``load_committed_generator()``. ``python -m
fitbook.quality`` trains the classifier and writes it, with a JSON of provenance,
to ``ARTIFACTS`` (or ``--out``).
"""

import functools
import json
from pathlib import Path

import keras
import numpy as np
from keras import ops

from fitbook.batches import check_images
from fitbook.data import load_fashion_mnist
from fitbook.models import LATENT_DIM

# Package data (pyproject.toml, [tool.setuptools.package-data]): found next to
# this module in a checkout and in an installed wheel alike.
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "gan"
CLASSIFIER_PATH = ARTIFACTS / "classifier.keras"
FEATURES_LAYER = "features"  # the penultimate layer whose outputs are compared
N_CLASSES = 10


def committed_artifact(*parts):
    """Path of a file shipped in ``ARTIFACTS``, e.g. ``("long", "generator.keras")``.

    Chapter "A GAN". A missing file means an install without fitbook's package
    data; the error names the file and how to get it back.
    """
    path = ARTIFACTS.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(
            f"fitbook's committed artifact {'/'.join(parts)} is missing: expected "
            f"at {path}. This install lacks the package data of fitbook "
            "(pyproject.toml, [tool.setuptools.package-data]); reinstall fitbook "
            "from a checkout or a wheel that contains src/fitbook/artifacts/gan/."
        )
    return path


def load_classifier(path=None):
    """Load the classifier (default: the committed one shipped in the package).

    Chapter "A GAN". Says how to make one if the file is missing.
    """
    committed = path is None
    path = CLASSIFIER_PATH if committed else Path(path)
    if not path.is_file():
        train = f"train and save one with `python -m fitbook.quality --out {path}`"
        fix = (
            f"This install lacks fitbook's package data: reinstall fitbook, or {train}"
            if committed
            else train.capitalize()
        )
        raise FileNotFoundError(
            f"No classifier at {path}. {fix} (about a minute on a CPU)."
        )
    return keras.saving.load_model(path)


def load_committed_generator():
    """The committed GAN generator and its provenance (chapter "A GAN").

    Returns ``(generator, provenance)``: the Keras model saved at the end of the
    committed long run (fixed recipe) and the dict of its ``provenance.json``
    (command, steps, seed, final scores...).
    """
    generator_path = committed_artifact("long", "generator.keras")
    provenance = json.loads(committed_artifact("long", "provenance.json").read_text())
    return keras.saving.load_model(generator_path), provenance


def classifier_outputs(classifier, images, batch_size=500):
    """Return (class probabilities, penultimate features) for ``images``."""
    images = np.asarray(images, dtype="float32")
    check_images(images, model="The classifier")
    both = keras.Model(
        classifier.inputs[0],
        [classifier.outputs[0], classifier.get_layer(FEATURES_LAYER).output],
    )
    # Eager calls in batches: predict() would trace a new function per call.
    starts = range(0, len(images), batch_size)
    outputs = [both(images[i : i + batch_size]) for i in starts]
    logits, features = (np.concatenate([o[k] for o in outputs]) for k in (0, 1))
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    return probs, features.astype("float64")


def gaussian_stats(features):
    """Mean vector and covariance matrix of feature rows (chapter "A GAN")."""
    features = np.asarray(features, dtype="float64")
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(
            f"features must be a 2-D array with at least 2 rows, got shape "
            f"{features.shape}."
        )
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2):
    """Squared Fréchet (2-Wasserstein) distance between two Gaussians.

    ``|mu1 - mu2|^2 + Tr(cov1 + cov2 - 2 (cov1^1/2 cov2 cov1^1/2)^1/2)``; the
    symmetric form lets NumPy's ``eigh`` take every square root.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    cov1, cov2 = np.atleast_2d(cov1), np.atleast_2d(cov2)
    square = (len(mu1), len(mu1))
    if mu1.shape != mu2.shape or cov1.shape != square or cov2.shape != square:
        raise ValueError(
            f"Shapes do not match: means {mu1.shape} and {mu2.shape}, "
            f"covariances {cov1.shape} and {cov2.shape}; expected (d,) and (d, d)."
        )
    root1 = psd_sqrt(cov1)
    cross = np.trace(psd_sqrt(root1 @ cov2 @ root1))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def psd_sqrt(matrix):
    """Square root of a symmetric positive semi-definite matrix (chapter "A GAN")."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def class_coverage(predicted):
    """Entropy of the histogram of predicted classes over log(10), in [0, 1]."""
    counts = np.bincount(np.asarray(predicted, dtype="int64"), minlength=N_CLASSES)
    if counts.sum() == 0 or len(counts) > N_CLASSES:
        raise ValueError(
            f"predicted must be a non-empty list of class indices 0..{N_CLASSES - 1}."
        )
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(N_CLASSES)) + 0.0  # never -0.0


def quality_scores(classifier, images, reference_stats):
    """Class coverage and Fréchet distance of ``images`` (a dict)."""
    probs, features = classifier_outputs(classifier, images)
    return {
        "coverage": class_coverage(probs.argmax(axis=1)),
        "frechet": frechet_distance(*gaussian_stats(features), *reference_stats),
    }


def reference_stats(classifier, real_images):
    """Feature mean and covariance of real images, the Fréchet reference."""
    return gaussian_stats(classifier_outputs(classifier, real_images)[1])


@functools.cache
def test_set_reference():
    """The committed classifier and the Fréchet reference of the whole
    Fashion-MNIST test set: the one yardstick of every chapter, computed once
    per process."""
    classifier = load_classifier()
    _, (x_test, _) = load_fashion_mnist()
    return classifier, reference_stats(classifier, x_test)


def generate(generator, z, batch_size=250):
    """Images from noise ``z`` as a NumPy array, a batch at a time (chapter "A GAN")."""
    starts = range(0, len(z), batch_size)
    return np.concatenate(
        [ops.convert_to_numpy(generator(z[i : i + batch_size])) for i in starts]
    )


def make_scorer(n=1000, seed=0, real_images=None):
    """Return generator -> quality scores of ``n`` images from fixed noise.

    ``real_images`` are the Fréchet reference; default: Fashion-MNIST's whole
    test set, the reference of ``test_set_reference``.
    """
    if real_images is None:
        classifier, reference = test_set_reference()
    else:
        classifier = load_classifier()
        reference = reference_stats(classifier, real_images)
    z = keras.random.normal((n, LATENT_DIM), seed=seed)

    def score(generator):
        return quality_scores(classifier, generate(generator, z), reference)

    return score


# Keeps `python -m fitbook.quality` (as classifier.json records it) working:
if __name__ == "__main__":
    from fitbook.tools.train_classifier import main

    main()
