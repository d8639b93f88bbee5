"""Tests of fitbook.runs: a run's CSV record."""

import numpy as np
import pytest

from fitbook.runs import final_scores, read_run, score_columns, write_csv


def test_write_csv_keeps_an_existing_header_and_fills_missing_columns(tmp_path):
    old = ("step", "d_loss", "g_loss", "confidence", "coverage", "frechet",
           "seconds")
    write_csv(tmp_path / "scores.csv", old, [(100, 0.6, 0.8, 0.9, 0.5, 40.0, 10.0)])
    new = score_columns({"coverage": 0.7, "frechet": 30.0})  # confidence dropped
    write_csv(tmp_path / "scores.csv", new, [(200, 0.6, 0.7, 0.7, 30.0, 20.0)])
    write_csv(tmp_path / "losses.csv", ("step", "d_loss", "g_loss"), [(1, 0.5, 0.5)])
    run = read_run(tmp_path)
    np.testing.assert_array_equal(run["scores"]["step"], [100, 200])
    assert np.isnan(run["scores"]["confidence"][1])
    assert final_scores(run)["frechet"] == 30.0
    with pytest.raises(ValueError, match="new file"):
        write_csv(tmp_path / "scores.csv", (*new, "ema_frechet"), [(300,) * 8])
