"""Building block: a training run's record on disk, as CSV files.

``scores.csv`` (one row per logged epoch) and ``losses.csv`` (one row per step)
of a GAN run (chapters "A GAN, two ways" and "WGAN-GP"; written by
``callbacks.RunLogger``, read back by ``read_run``).
"""

from pathlib import Path

import numpy as np

from fitbook.checkpoints import atomic_write

SCORE_COLUMNS = (
    "step", "d_loss", "g_loss", "confidence", "coverage", "frechet", "seconds"
)

LOSS_COLUMNS = ("step", "d_loss", "g_loss")


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


def write_csv(path, columns, rows, mode="a"):
    """Append ``rows`` to a CSV file, writing the header if the file is new."""
    new = mode == "w" or not Path(path).is_file()
    with open(path, mode) as f:
        if new:
            f.write(",".join(columns) + "\n")
        for row in rows:
            f.write(",".join(f"{float(v):.6g}" for v in row) + "\n")


def truncate_run(directory, step):
    """Keep only the complete CSV rows of steps <= ``step`` (before resuming there).

    A run killed while appending may have left a partial last line; it goes too.
    Each file is rewritten atomically, and removed if no row is left.
    """
    for name, columns in (("scores", SCORE_COLUMNS), ("losses", LOSS_COLUMNS)):
        path = Path(directory) / f"{name}.csv"
        if not path.is_file():
            continue
        kept = [line for line in path.read_text().splitlines()[1:]
                if complete_row(line, len(columns), step)]
        if not kept:
            path.unlink()
            continue
        text = "\n".join([",".join(columns), *kept]) + "\n"
        atomic_write(path, text.encode())


def complete_row(line, width, last_step):
    """Whether CSV ``line`` has ``width`` numbers and a step <= ``last_step``."""
    try:
        values = [float(v) for v in line.split(",")]
    except ValueError:
        return False
    return len(values) == width and values[0] <= last_step
