"""Cost of the weighted train_step and test_step against Keras' built-in steps.

Run: .venv/bin/python benchmarks/weighted_step_overhead.py [--samples N]
Prints the best samples per second of fit() and evaluate() with sample weights for
keras.Model and for WeightedTestStepModel (chapters "Sample weights and class
weights" and "Overriding test_step"), and their ratios. Timings depend on the
machine and on what else runs on it; compare ratios from one run only.
"""

import keras

from _common import parser, training_data
from fitbook.sample_weights import make_classifier
from fitbook.test_step import WeightedTestStepModel
from fitbook.timing import time_runs


def main(argv=None):
    """Time fit() and evaluate() with sample weights for both model classes."""
    cli = parser(main.__doc__, samples=8192, batch_size=128, repeats=5)
    args = cli.parse_args(argv)
    x, y = training_data(args.samples)
    sample_weight = (y % 3 + 1).astype("float32")  # weights 1, 2 and 3
    options = dict(sample_weight=sample_weight, batch_size=args.batch_size, verbose=0)
    # A second copy of the built-in model measures the noise floor: two
    # identical models can differ by tens of percent on a shared machine.
    contenders = {
        "keras.Model": keras.Model,
        "WeightedTestStepModel": WeightedTestStepModel,
        "keras.Model, second copy": keras.Model,
    }
    runs = {}
    for name, model_class in contenders.items():
        model = make_classifier(model_class)
        runs[name, "fit"] = lambda m=model: m.fit(x, y, shuffle=False, **options)
        runs[name, "evaluate"] = lambda m=model: m.evaluate(x, y, **options)
    # time_runs traces each run first, then alternates them and keeps the best.
    measured = time_runs(runs, steps=len(x), rounds=args.repeats)
    rates = {key: m.steps_per_second for key, m in measured.items()}  # samples/s
    for (name, mode), rate in rates.items():
        print(f"{name:>25} {mode:>8}: {rate:10.0f} samples/s")
    for mode in ("fit", "evaluate"):
        builtin = rates["keras.Model", mode]
        ours = rates["WeightedTestStepModel", mode] / builtin
        noise = rates["keras.Model, second copy", mode] / builtin
        print(f"{mode}(): weighted steps vs built-in {ours:.2f}x "
              f"(built-in vs its second copy: {noise:.2f}x)")


if __name__ == "__main__":
    main()
