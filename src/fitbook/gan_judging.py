"""Chapter "Judging and fixing a GAN": the study over seeds, the rule that turns
it into a conclusion, and the views of the long run's generator.

The study's runs are read with ``runs.read_runs`` (``python -m
fitbook.tools.gan_study`` writes them); the judge is :mod:`fitbook.quality`'s.
"""

import numpy as np

from fitbook.quality import N_CLASSES, classifier_outputs


def recipe_of(run_name):
    """The recipe of a study run, the first part of its name:
    ``"fixed-mixed_bfloat16-seed0"`` -> ``"fixed"``."""
    return run_name.split("-", 1)[0]


def by_recipe(runs):
    """``read_runs``' dict of runs as ``{recipe: [run, ...]}``, names sorted."""
    groups = {}
    for name in sorted(runs):
        groups.setdefault(recipe_of(name), []).append(runs[name])
    return groups


def score_band(runs, score):
    """``(steps, mean, low, high)`` of ``score`` over ``runs``, at the steps every
    run logged: the mean and the min-max range across the runs (seeds)."""
    if not runs:
        raise ValueError("score_band needs at least one run.")
    steps = sorted(set.intersection(
        *(set(run["scores"]["step"].tolist()) for run in runs)))
    if not steps:
        raise ValueError("the runs have no logged step in common.")
    values = np.array([
        [run["scores"][score][run["scores"]["step"] == step][0] for step in steps]
        for run in runs
    ])
    return np.array(steps), values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def verdict(candidate, baseline, higher_is_better):
    """Compare two sets of values of one score, one value per seed.

    ``"better"`` if *every* candidate seed beats *every* baseline seed (the
    min-max ranges do not overlap), ``"worse"`` if every one is beaten, else
    ``"not distinguishable"``. The rule of the chapter's conclusions.
    """
    candidate, baseline = np.asarray(candidate), np.asarray(baseline)
    if not higher_is_better:
        candidate, baseline = -candidate, -baseline
    if candidate.min() > baseline.max():
        return "better"
    if candidate.max() < baseline.min():
        return "worse"
    return "not distinguishable"


def step_verdicts(candidate_runs, baseline_runs, score, higher_is_better):
    """``{step: verdict}`` at every logged step of two recipes' runs (lists of
    ``read_run`` records, one per seed), by :func:`verdict`'s rule."""
    steps = score_band(baseline_runs, score)[0]
    return {
        int(step): verdict(
            *[[run["scores"][score][run["scores"]["step"] == step][0] for run in runs]
              for runs in (candidate_runs, baseline_runs)],
            higher_is_better,
        )
        for step in steps
    }


def class_rows(classifier, images, per_class=10):
    """One row per class the judge assigns: for each of the ten classes, up to
    ``per_class`` of ``images`` the classifier puts in it, most confident first.

    Returns ``(grid, counts)``: an array of ``N_CLASSES * per_class`` images,
    blank (zero) where a class got fewer, and how many images each class got.
    """
    probs, _ = classifier_outputs(classifier, images)
    predicted = probs.argmax(axis=1)
    grid = np.zeros((N_CLASSES * per_class, *np.shape(images)[1:]), "float32")
    counts = np.bincount(predicted, minlength=N_CLASSES)
    for c in range(N_CLASSES):
        members = np.flatnonzero(predicted == c)
        best = members[np.argsort(-probs[members, c])][:per_class]
        grid[c * per_class : c * per_class + len(best)] = np.asarray(images)[best]
    return grid, counts


def interpolate(z_start, z_end, steps):
    """``steps`` noise vectors on the straight line from ``z_start`` to
    ``z_end``, both ends included."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (both ends), got {steps}.")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return ((1 - t) * np.asarray(z_start) + t * np.asarray(z_end)).astype("float32")


def target_verdict(value, target, higher_is_better):
    """``"reached"`` or ``"not reached"``: whether ``value`` meets ``target``."""
    met = value >= target if higher_is_better else value <= target
    return "reached" if met else "not reached"


def pixel_summary(images):
    """What images look like, in numbers: their mean pixel value, and the
    fractions of pixels at full ink (> 0.99) and empty (< 0.01)."""
    images = np.asarray(images, dtype="float64")
    return {
        "mean": float(images.mean()),
        "full_ink": float((images > 0.99).mean()),
        "empty": float((images < 0.01).mean()),
    }
