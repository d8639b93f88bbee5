"""Building block: a training run's record on disk, as CSV files.

``scores.csv`` (one row per logged epoch) and ``losses.csv`` (one row per step)
of a GAN run (chapters "A GAN on train_step", "Judging and fixing a GAN" and
"WGAN-GP"; written by ``callbacks.RunLogger``, read back by ``read_run``).
"""

import json
from pathlib import Path

import numpy as np

from fitbook.checkpoints import atomic_write

LOSS_COLUMNS = ("step", "d_loss", "g_loss")


def score_columns(scores):
    """The header of ``scores.csv`` for a scorer's dict of ``scores``: the step,
    both losses, each score by name, then the wall time."""
    return (*LOSS_COLUMNS, *scores, "seconds")


def final_scores(run):
    """The last row's scores of ``read_run``'s record, by name (no step, losses
    or seconds)."""
    scores = run["scores"]
    names = [c for c in scores if c not in (*LOSS_COLUMNS, "seconds")]
    return {name: float(scores[name][-1]) for name in names}


def read_run(directory):
    """A run's ``scores.csv`` and ``losses.csv`` as dicts of NumPy columns."""
    directory = Path(directory)
    run = {}
    for name in ("scores", "losses"):
        path = directory / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: is {directory} the --out directory of "
                "`python -m fitbook.gan train`?"
            )
        table = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
        run[name] = {column: table[column] for column in table.dtype.names}
    return run


def read_runs(directory):
    """Every run under ``directory`` (e.g. a ``gan_study`` output), by name: its
    ``read_run`` record plus its ``provenance.json`` as a dict (finished runs only)."""
    runs = {}
    for provenance in sorted(Path(directory).glob("*/provenance.json")):
        run = read_run(provenance.parent)
        run["provenance"] = json.loads(provenance.read_text())
        runs[provenance.parent.name] = run
    if not runs:
        raise FileNotFoundError(
            f"no finished run in {directory}: expected subdirectories holding "
            "provenance.json, as `python -m fitbook.tools.gan_study` writes them."
        )
    return runs


def write_csv(path, columns, rows, mode="a"):
    """Append ``rows`` to a CSV file, writing the header if the file is new.

    Appending to a file whose header names other columns (a run resumed after
    a score was added or dropped) writes each row in the file's column order,
    ``nan`` where the file has a column the rows lack; a column the file lacks
    is an error.
    """
    path = Path(path)
    new = mode == "w" or not path.is_file()
    header = list(columns)
    if not new:
        with open(path) as f:
            header = f.readline().strip().split(",")
        extra = [c for c in columns if c not in header]
        if extra:
            raise ValueError(
                f"{path} has columns {header}, not {extra}: write these rows to a "
                "new file (a new --out directory), or drop those columns."
            )
    with open(path, mode) as f:
        if new:
            f.write(",".join(header) + "\n")
        for row in rows:
            values = dict(zip(columns, row))
            f.write(",".join(f"{float(values.get(c, 'nan')):.6g}" for c in header)
                    + "\n")


def truncate_run(directory, step):
    """Keep only the complete CSV rows of steps <= ``step`` (before resuming there).

    A run killed while appending may have left a partial last line; it goes too.
    Each file is rewritten atomically, and removed if no row is left. A row's
    width is its file's header's.
    """
    for name in ("scores", "losses"):
        path = Path(directory) / f"{name}.csv"
        if not path.is_file():
            continue
        header, *lines = path.read_text().splitlines() or [""]
        width = len(header.split(","))
        kept = [line for line in lines if complete_row(line, width, step)]
        if not kept:
            path.unlink()
            continue
        text = "\n".join([header, *kept]) + "\n"
        atomic_write(path, text.encode())


def complete_row(line, width, last_step):
    """Whether CSV ``line`` has ``width`` numbers and a step <= ``last_step``."""
    try:
        values = [float(v) for v in line.split(",")]
    except ValueError:
        return False
    return len(values) == width and values[0] <= last_step
