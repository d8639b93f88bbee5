"""Tool: ``python -m fitbook.tools.train_classifier`` trains the classifier that
scores generated images (``fitbook.quality``), reports its test accuracy and
saves it with its provenance; ``python -m fitbook.quality`` runs the same."""

import argparse
import json
import sys
import time
from pathlib import Path

import fitbook  # noqa: F401  (quiet TensorFlow import)
from fitbook.data import FASHION_MNIST_FILES, load_fashion_mnist
from fitbook.models import classifier, compile_classifier
from fitbook.quality import CLASSIFIER_PATH, FEATURES_LAYER
from fitbook.reproducibility import set_seed


def train_classifier(x, y, epochs=2, batch_size=128, verbose=2):
    """Train the scoring classifier on images ``x`` and integer labels ``y``."""
    model = classifier(conv=(32, 64), hidden=64, features=FEATURES_LAYER)
    compile_classifier(model, logits=True)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return model


def main(argv=None):
    """Train the classifier, report its test accuracy, save it with provenance."""
    parser = argparse.ArgumentParser(prog="python -m fitbook.quality")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CLASSIFIER_PATH)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    set_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    start = time.perf_counter()
    model = train_classifier(x_train, y_train, epochs=args.epochs)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    provenance = {
        "command": "python -m fitbook.quality " + " ".join(argv),
        "epochs": args.epochs,
        "seed": args.seed,
        "train_images_sha256": FASHION_MNIST_FILES[0].sha256,
        "test_accuracy": float(accuracy),
        "training_seconds": round(seconds, 1),
    }
    args.out.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))


if __name__ == "__main__":
    main()
