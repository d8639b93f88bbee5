"""Shared prologue of the benchmark scripts (run them as python benchmarks/NAME.py).

Each script builds its command line with ``parser`` and takes its data from
``training_data``: the same seed and the same first Fashion-MNIST images.
"""

import argparse

import fitbook  # noqa: F401  (quiet TensorFlow import first)
from fitbook.data import load_fashion_mnist
from fitbook.reproducibility import set_seed

FLAGS = {  # flag -> (type, help)
    "samples": (int, "training images"),
    "batch_size": (int, "examples per step"),
    "rounds": (int, "alternating timed rounds"),
    "repeats": (int, "timed epochs per contender"),
    "steps": (int, "timed steps per round"),
}


def parser(doc, **defaults):
    """An ArgumentParser described by ``doc`` with the flags named in ``defaults``
    (samples, batch_size, rounds, repeats, steps), each with its default."""
    built = argparse.ArgumentParser(description=doc)
    for name, default in defaults.items():
        kind, text = FLAGS[name]
        built.add_argument("--" + name.replace("_", "-"), type=kind, default=default,
                           help=text)
    return built


def training_data(samples, seed=0):
    """``set_seed(seed)``, then the first ``samples`` Fashion-MNIST training
    images and labels."""
    set_seed(seed)
    (x, y), _ = load_fashion_mnist()
    return x[:samples], y[:samples]
