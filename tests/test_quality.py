"""Tests of fitbook.quality: Fréchet distance, coverage, the committed classifier."""

import json

import numpy as np
import pytest

from fitbook import quality as Q
from fitbook.models import classifier as build_classifier


def test_frechet_distance_of_1d_gaussians_matches_closed_form():
    # N(0, 1) vs N(1, 4): (0 - 1)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 2
    assert Q.frechet_distance(0.0, 1.0, 1.0, 4.0) == pytest.approx(2.0)


def test_frechet_distance_of_2d_gaussians_matches_hand_computation():
    # Diagonal covariances commute: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    # = (1 + 4) + (1 - 3)^2 + (2 - 1)^2 = 10
    d = Q.frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([9.0, 1.0]))
    assert d == pytest.approx(10.0)


def test_frechet_distance_with_rotated_covariance():
    # cov2 = R diag(4, 1) R^T with R a 90-degree rotation is diag(1, 4): same as
    # cov1, so the distance is zero whatever the rotation does to the eigenbasis.
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    cov2 = rotation @ np.diag([4.0, 1.0]) @ rotation.T
    assert Q.frechet_distance([0, 0], np.diag([1.0, 4.0]), [0, 0], cov2) == (
        pytest.approx(0.0, abs=1e-12)
    )
    # A full (non-diagonal) pair against the 1-D formula applied along the axis
    # both share: cov = s * [[1, .5], [.5, 1]] with s = 1 and s = 4.
    base = np.array([[1.0, 0.5], [0.5, 1.0]])
    d = Q.frechet_distance([0, 0], base, [0, 0], 4 * base)
    assert d == pytest.approx(np.trace(base) * (1 - 2) ** 2)  # (sqrt(1)-sqrt(4))^2


def test_frechet_distance_from_samples_approaches_the_truth():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 1))
    b = rng.normal(1.0, 2.0, size=(20000, 1))
    d = Q.frechet_distance(*Q.gaussian_stats(a), *Q.gaussian_stats(b))
    assert d == pytest.approx(2.0, abs=0.1)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected \(d,\) and \(d, d\)"):
        Q.frechet_distance([0, 0], np.eye(2), [0], np.eye(1))
    with pytest.raises(ValueError, match="at least 2 rows"):
        Q.gaussian_stats(np.zeros((1, 3)))


def test_class_coverage_is_one_for_uniform_and_zero_for_one_class():
    assert Q.class_coverage(np.arange(100) % 10) == pytest.approx(1.0)
    assert Q.class_coverage([3] * 50) == 0.0
    assert 0.0 < Q.class_coverage([0, 0, 1]) < 1.0
    with pytest.raises(ValueError, match="class indices"):
        Q.class_coverage([])


def test_quality_scores_ranges_on_an_untrained_classifier():
    classifier = build_classifier(conv=(32, 64), hidden=64, features=Q.FEATURES_LAYER)
    rng = np.random.default_rng(0)
    x = rng.random((40, 28, 28, 1)).astype("float32")
    reference = Q.reference_stats(classifier, x)
    scores = Q.quality_scores(classifier, x, reference)
    assert set(scores) == {"coverage", "frechet"}
    assert 0.0 <= scores["coverage"] <= 1.0
    assert scores["frechet"] == pytest.approx(0.0, abs=1e-6)  # same images
    with pytest.raises(ValueError, match=r"\(batch, 28, 28, 1\)"):
        Q.quality_scores(classifier, x[..., 0], reference)


def test_missing_classifier_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m fitbook.quality"):
        Q.load_classifier(tmp_path / "none.keras")


def test_committed_classifier_is_accurate_and_separates_real_from_noise(
    fashion_mnist_dir,
):
    from fitbook.data import FASHION_MNIST_FILES, load_fashion_mnist

    provenance = json.loads(Q.CLASSIFIER_PATH.with_suffix(".json").read_text())
    assert provenance["train_images_sha256"] == FASHION_MNIST_FILES[0].sha256
    classifier = Q.load_classifier()
    _, (x_test, y_test) = load_fashion_mnist()
    probs, _ = Q.classifier_outputs(classifier, x_test[:2000])
    assert (probs.argmax(axis=1) == y_test[:2000]).mean() > 0.8
    reference = Q.reference_stats(classifier, x_test[:2000])
    real = Q.quality_scores(classifier, x_test[2000:3000], reference)
    noise = np.random.default_rng(0).random((1000, 28, 28, 1)).astype("float32")
    fake = Q.quality_scores(classifier, noise, reference)
    assert real["frechet"] < 0.1 * fake["frechet"]
    assert real["coverage"] > 0.95 > fake["coverage"]


def test_test_set_reference_is_computed_once(fashion_mnist_dir):
    first, second = Q.test_set_reference(), Q.test_set_reference()
    assert first is second  # cached: one yardstick per process
    mu, cov = first[1]
    assert mu.shape == (cov.shape[0],) and np.all(np.isfinite(cov))
