"""Throughput of the from-scratch loop: eager, tf.function, XLA, and Keras' fit().

Run: .venv/bin/python benchmarks/loop_speed.py [--samples N] [--batch-size B]
Prints steps per second for each mode and the three ratios the chapter
"Training loops from scratch" discusses. Timings depend on the machine and on
what else runs on it; compare ratios from one run only.
"""

import functools

from _common import parser, training_data
from fitbook.loops import measure_throughput
from fitbook.models import classifier


def main(argv=None):
    """Measure every mode once on a Fashion-MNIST subset and print the ratios."""
    cli = parser(main.__doc__, samples=8192, batch_size=128, repeats=5)
    args = cli.parse_args(argv)
    x, y = training_data(args.samples)
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
