"""Tool: ``python -m fitbook.tools.gan_study --out DIR`` trains the GAN of chapter
"A GAN" once per recipe x precision x generator's last convolution x seed, each
run a ``fitbook.tools.train_gan`` run in its own process (a dtype policy is
global to a process).

The runs are the evidence of the GAN chapters (does changing beta_1 fix the seed
recipe, over several seeds?) and of the Performance chapter (does
``mixed_bfloat16`` train as well as ``float32``?). Stopped at any point, the same
command goes on: finished runs are skipped, unfinished ones resume exactly from
their newest checkpoint. Several processes may run the same study at once (one
per core, say): each run is locked while it trains, and the others skip it.
``read_runs`` (in :mod:`fitbook.runs`) reads them back.
"""

import argparse
import fcntl
import itertools
import subprocess
import sys
from pathlib import Path

from fitbook.tools.train_gan import CONVS, POSITIVE_INT, PRECISIONS


def run_name(recipe, precision, seed, conv="keras"):
    """The directory name of one run of the study, e.g. ``fixed-float32-seed0``;
    with the shift-add convolution ``fixed-mixed_bfloat16+shift_add-seed0``."""
    group = precision if conv == "keras" else f"{precision}+{conv}"
    return f"{recipe}-{group}-seed{seed}"


def train_command(out, recipe, precision, seed, args, conv="keras"):
    """The ``train_gan`` command line of one run (``--resume`` if it started)."""
    command = [
        sys.executable, "-m", "fitbook.tools.train_gan", "train",
        "--out", str(out), "--recipe", recipe, "--precision", precision,
        "--conv", conv, "--seed", str(seed), "--steps", str(args.steps),
        "--log-every", str(args.log_every), "--score-images", str(args.score_images),
        "--grid-every", "1000000", "--verbose", "0",
        "--jit" if args.jit else "--no-jit",
    ]
    return command + (["--resume"] if out.is_dir() else [])


def main(argv=None):
    """Run every missing run of the study, one after the other."""
    parser = argparse.ArgumentParser(prog="python -m fitbook.tools.gan_study")
    parser.add_argument("--out", required=True, help="directory of the runs")
    parser.add_argument("--recipes", nargs="+", default=["seed", "fixed"])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS,
                        default=["mixed_bfloat16"])
    parser.add_argument("--convs", nargs="+", choices=CONVS, default=["keras"],
                        help="how the networks' convolutions compute")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=POSITIVE_INT, default=1200)
    parser.add_argument("--log-every", type=POSITIVE_INT, default=200)
    parser.add_argument("--score-images", type=POSITIVE_INT, default=1000)
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args(argv)
    runs = itertools.product(args.recipes, args.precisions, args.convs, args.seeds)
    for recipe, precision, conv, seed in runs:
        out = Path(args.out) / run_name(recipe, precision, seed, conv)
        if (out / "provenance.json").is_file():
            print(f"{out.name}: done", flush=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f".{out.name}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"{out.name}: another process trains it", flush=True)
                continue
            if (out / "provenance.json").is_file():  # finished while we waited
                continue
            print(f"{out.name}: training", flush=True)
            command = train_command(out, recipe, precision, seed, args, conv)
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
