"""Throughput of the from-scratch loop: eager, tf.function, XLA, and Keras' fit().

Run: .venv/bin/python benchmarks/loop_speed.py [--samples N] [--batch-size B]
Prints steps per second for each mode and the three ratios the chapter
"Training loops from scratch" discusses. Timings depend on the machine and on
what else runs on it; compare ratios from one run only.
"""

import argparse
import functools

import fitbook  # noqa: F401  (quiet TensorFlow import first)
from fitbook.data import load_fashion_mnist
from fitbook.loops import measure_throughput
from fitbook.models import classifier
from fitbook.reproducibility import set_seed


def main(argv=None):
    """Measure every mode once on a Fashion-MNIST subset and print the ratios."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--samples", type=int, default=8192, help="training images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per mode")
    args = parser.parse_args(argv)
    set_seed(0)
    (x, y), _ = load_fashion_mnist()
    x, y = x[: args.samples], y[: args.samples]
    build = functools.partial(classifier, hidden=256, dropout=0.2, seed=0)
    rates = {}
    for mode in ("eager", "function", "jit", "fit"):
        rates[mode] = measure_throughput(
            build, x, y, args.batch_size, mode, repeats=args.repeats
        )
        print(f"{mode:>8}: {rates[mode]:8.1f} steps/s")
    print(f"tf.function vs eager:     {rates['function'] / rates['eager']:.2f}x")
    print(f"jit vs tf.function:       {rates['jit'] / rates['function']:.2f}x")
    print(f"custom loop vs fit():     {rates['function'] / rates['fit']:.2f}x")


if __name__ == "__main__":
    main()
