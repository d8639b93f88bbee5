"""Throughput of the custom train_step against Keras' built-in one, under fit().

Run: .venv/bin/python benchmarks/train_step_vs_fit.py [--samples N] [--batch-size B]
Prints the best training steps per second of the same classifier trained by
``keras.Model``'s own ``train_step`` and by ``CustomTrainStepModel`` (chapter
"Overriding train_step"), and their ratio. The runs alternate, so the noise of a
shared machine spreads over both; compare ratios from one run only.
"""

import keras

from _common import parser, training_data
from fitbook.fit_internals import fit_throughput
from fitbook.models import classifier, compile_classifier
from fitbook.train_step import CustomTrainStepModel


def main(argv=None):
    """Time fit() with the built-in and the custom train_step; print the ratio."""
    cli = parser(main.__doc__, samples=8192, batch_size=64, rounds=3)
    args = cli.parse_args(argv)
    x, y = training_data(args.samples)
    models = {}
    for model_class in (keras.Model, CustomTrainStepModel):
        model = classifier(model_class, hidden=128, seed=0, probabilities=True)
        compile_classifier(model)
        models[model_class.__name__] = model
    best = dict.fromkeys(models, 0.0)
    for _ in range(args.rounds):  # each round: one warm-up and 2 timed epochs each
        for name, model in models.items():
            rate = fit_throughput(model, x, y, args.batch_size, repeats=2)
            best[name] = max(best[name], rate)
    for name, rate in best.items():
        print(f"{name:>22}: {rate:8.1f} steps/s")
    ratio = best["CustomTrainStepModel"] / best["Model"]
    print(f"custom train_step vs built-in fit(): {ratio:.2f}x")


if __name__ == "__main__":
    main()
