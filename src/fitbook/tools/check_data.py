"""Tool: ``python -m fitbook.tools.check_data`` prints where Fashion-MNIST is,
after checking every file (chapter "Setup"); ``python -m fitbook.data`` runs the
same."""

import argparse
import sys

from fitbook.data import (
    FASHION_MNIST_FILES,
    DataError,
    locate_fashion_mnist,
    read_idx_file,
)


def main(argv=None):
    """Command line: print where Fashion-MNIST is, after checking every file."""
    parser = argparse.ArgumentParser(
        prog="python -m fitbook.data", description=main.__doc__
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="fail instead of asking Keras to download the files",
    )
    args = parser.parse_args(argv)
    try:
        directory = locate_fashion_mnist(download=not args.no_download)
        for spec in FASHION_MNIST_FILES:
            read_idx_file(directory / spec.name, spec)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST: {directory} (all four files verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
