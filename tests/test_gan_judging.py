"""Tests of fitbook.gan_judging: the study's bands, the verdict rule, the views."""

import keras
import numpy as np
import pytest

from fitbook import gan_judging as J
from fitbook.models import classifier as build_classifier
from fitbook.quality import FEATURES_LAYER, N_CLASSES


def run(steps, values):
    """A ``read_run``-like record with one score, ``s``."""
    return {"scores": {"step": np.array(steps, float), "s": np.array(values, float)}}


def test_by_recipe_groups_runs_by_the_first_part_of_their_names():
    runs = {"seed-float32-seed1": 1, "fixed-float32-seed0": 2, "seed-float32-seed0": 3}
    assert J.by_recipe(runs) == {"fixed": [2], "seed": [3, 1]}


def test_score_band_is_mean_and_range_at_common_steps():
    steps, mean, low, high = J.score_band(
        [run([1, 2, 3], [1.0, 2.0, 3.0]), run([2, 3], [4.0, 9.0])], "s")
    np.testing.assert_array_equal(steps, [2, 3])
    np.testing.assert_allclose(mean, [3.0, 6.0])
    np.testing.assert_allclose(low, [2.0, 3.0])
    np.testing.assert_allclose(high, [4.0, 9.0])
    with pytest.raises(ValueError, match="at least one run"):
        J.score_band([], "s")
    with pytest.raises(ValueError, match="no logged step in common"):
        J.score_band([run([1], [1.0]), run([2], [1.0])], "s")


def test_verdict_needs_every_seed_to_beat_every_other():
    assert J.verdict([0.9, 0.8], [0.7, 0.6], higher_is_better=True) == "better"
    assert J.verdict([0.9, 0.5], [0.7, 0.6], higher_is_better=True) == (
        "not distinguishable")
    assert J.verdict([10, 12], [20, 30], higher_is_better=False) == "better"
    assert J.verdict([40, 50], [20, 30], higher_is_better=False) == "worse"


def test_target_verdict():
    assert J.target_verdict(9.5, 10, higher_is_better=False) == "reached"
    assert J.target_verdict(0.9, 0.95, higher_is_better=True) == "not reached"


def test_interpolate_includes_both_ends():
    z = J.interpolate(np.zeros(4), np.ones(4), 5)
    assert z.shape == (5, 4)
    np.testing.assert_allclose(z[:, 0], [0, 0.25, 0.5, 0.75, 1])
    with pytest.raises(ValueError, match="at least 2"):
        J.interpolate(np.zeros(4), np.ones(4), 1)


def test_pixel_summary():
    images = np.array([0.0, 1.0, 1.0, 0.5]).reshape(1, 2, 2, 1)
    assert J.pixel_summary(images) == {"mean": 0.625, "full_ink": 0.5, "empty": 0.25}


def test_class_rows_puts_each_image_in_its_predicted_class_row():
    keras.utils.set_random_seed(0)
    classifier = build_classifier(conv=(8, 8), hidden=16, features=FEATURES_LAYER)
    images = np.random.default_rng(0).random((30, 28, 28, 1)).astype("float32")
    grid, counts = J.class_rows(classifier, images, per_class=3)
    assert grid.shape == (N_CLASSES * 3, 28, 28, 1) and counts.sum() == 30
    for c in range(N_CLASSES):
        filled = [np.any(grid[c * 3 + i]) for i in range(3)]
        assert sum(filled) == min(3, counts[c])


def test_step_verdicts_compare_two_recipes_at_every_logged_step():
    def run(frechet):
        return {"scores": {"step": np.array([200.0, 400.0]),
                           "frechet": np.array(frechet)}}

    good = [run([50.0, 30.0]), run([60.0, 35.0]), run([55.0, 80.0])]
    bad = [run([90.0, 40.0]), run([100.0, 45.0]), run([95.0, 50.0])]
    assert J.step_verdicts(good, bad, "frechet", higher_is_better=False) == {
        200: "better", 400: "not distinguishable"}
    assert J.step_verdicts(bad, good, "frechet", False)[200] == "worse"
