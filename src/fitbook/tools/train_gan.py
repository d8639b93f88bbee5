"""Tool: ``python -m fitbook.tools.train_gan train --out DIR`` trains the GAN of
chapter "Judging and fixing a GAN" with logs, scores, grids and checkpoints
(``fitbook.gan.train``); ``python -m fitbook.gan train ...`` runs the same."""

import argparse
import dataclasses
import sys
from pathlib import Path

import fitbook  # noqa: F401  (quiet TensorFlow import)
from fitbook.gan import RECIPES, GanRecipe, UsageError, train
from fitbook.models import CONVS


def checked(kind, ok, expected):
    """An argparse ``type``: ``kind(text)``, rejected unless ``ok(value)``."""

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not ok(value):  # NaN fails every comparison: rejected
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert

POSITIVE_INT = checked(int, lambda v: v >= 1, "an integer >= 1")

RECIPE_TYPES = {  # what each GanRecipe field accepts on the command line
    "learning_rate": checked(float, lambda v: 0 < v < float("inf"), "a number > 0"),
    "beta_1": checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "label_noise": checked(float, lambda v: 0 <= v < 0.5, "a number in [0, 0.5)"),
    "real_label": checked(float, lambda v: 0.5 < v <= 1, "a number in (0.5, 1]"),
    "batch_size": POSITIVE_INT,
    "ema_momentum": checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "fake_noise_sign": checked(float, lambda v: v in (1, -1), "1 or -1"),
}

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")  # auto: tuned

JIT_VALUES = {"auto": "auto", "on": True, "true": True, "off": False, "false": False}


def jit_value(text):
    """An argparse ``type`` for ``--jit``: auto, on or off."""
    try:
        return JIT_VALUES[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"expected auto, on or off, got {text!r}") from None


def parse_args(argv):
    """Parse and check ``python -m fitbook.gan train ...`` arguments (chapter "A
    GAN"); a bad one exits as argparse does: message on stderr, status 2."""
    parser = argparse.ArgumentParser(prog="python -m fitbook.gan")
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train", help="train the GAN with fit()")
    t.set_defaults(parser=t)  # main reports errors found later with t.error
    t.add_argument("--out", required=True, help="directory for logs and models")
    t.add_argument("--epochs", type=POSITIVE_INT, default=1, help="passes over the "
                   "data, rounded up to whole --log-every periods")
    t.add_argument("--steps", type=POSITIVE_INT, help="total steps (overrides "
                   "--epochs), a multiple of --log-every")
    t.add_argument("--seed", type=checked(int, lambda v: v >= 0, "an integer >= 0"),
                   default=0)
    t.add_argument("--resume", action="store_true", help="go on from a checkpoint")
    t.add_argument("--recipe", choices=sorted(RECIPES), default="fixed")
    for field in dataclasses.fields(GanRecipe):  # e.g. --beta-1 0.5
        flag = "--" + field.name.replace("_", "-")
        t.add_argument(flag, type=RECIPE_TYPES[field.name],
                       help=f"override recipe.{field.name}")
    t.add_argument("--log-every", type=POSITIVE_INT, default=100,
                   help="steps between logs and checkpoints")
    t.add_argument("--grid-every", type=POSITIVE_INT, default=10,
                   help="logs between grids")
    t.add_argument("--no-checkpoint", action="store_true", help="do not checkpoint")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="fit() verbosity")
    t.add_argument("--score-images", type=checked(int, lambda v: v >= 2,
                   "an integer >= 2"), default=1000, help="images per score")
    t.add_argument("--reference-images", type=checked(int, lambda v: v >= 2,
                   "an integer >= 2"), help="test images of the Fréchet reference "
                   "(default: all; fewer for quick tests)")
    t.add_argument("--train-images", type=POSITIVE_INT, help="train on the first N "
                   "images only (default: all; fewer for quick tests)")
    t.add_argument("--jit", type=jit_value, nargs="?", const=True, default="auto",
                   help="compile the step with XLA: auto (default: what measured "
                   "faster here, or the resumed run's), on or off")
    t.add_argument("--no-jit", dest="jit", action="store_const", const=False,
                   help="same as --jit off")
    t.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the Keras dtype policy the networks are built under; "
                   "auto (default): the fastest sound one measured here, or the "
                   "resumed run's")
    t.add_argument("--conv", choices=("auto", *CONVS), default="auto",
                   help="how the networks' convolutions compute; auto "
                   "(default): measured along with --precision/--jit auto, the "
                   "resumed run's, else keras")
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        check_args(args)
    except UsageError as err:
        t.error(str(err))
    return args


def check_args(args):
    """Checks across arguments: ``--steps`` ends on a log; ``--out`` is a directory,
    new, or holding a run only with ``--resume``."""
    if args.steps is not None and args.steps % args.log_every:
        raise UsageError(
            f"--steps {args.steps} is not a multiple of --log-every "
            f"{args.log_every}: logs and checkpoints come every --log-every steps, "
            "and a run ends on one of them."
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory.")
    if args.resume and args.no_checkpoint:
        raise UsageError("--resume needs checkpoints: drop --no-checkpoint.")
    logs = [out / name for name in ("scores.csv", "losses.csv", "run.json")]
    holds_run = any(p.is_file() for p in logs) or any(out.glob("ckpt/ckpt-*.npz"))
    if args.resume and not out.is_dir():
        raise UsageError(f"--resume: there is no run in {out} (no such directory).")
    if holds_run and not args.resume:
        raise UsageError(f"{out} already holds a run: pass --resume or a new --out.")


def main(argv=None):
    """Entry point of ``python -m fitbook.gan`` (chapter "A GAN")."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        train(args)
    except UsageError as err:  # found once the data or the checkpoint is read
        args.parser.error(str(err))


if __name__ == "__main__":
    main()
