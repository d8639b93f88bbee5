"""Fashion-MNIST, offline first, checked byte for byte (chapter "The data").

``load_fashion_mnist()`` looks for the four original ``.gz`` files in this order:

1. the directory named by the environment variable ``FITBOOK_DATA_DIR``;
2. ``/usr/share/datasets/fashion-mnist/`` (Debian's ``dataset-fashion-mnist``);
3. the Keras cache, ``$KERAS_HOME/datasets/fashion-mnist/`` (``~/.keras`` by default);
4. a download by ``keras.datasets.fashion_mnist.load_data()`` into that cache.

Mirrors recompress the files (Debian's ``.gz`` bytes differ from the upstream
ones), so the SHA-256 we check is that of the *decompressed* IDX contents, which
is the same wherever the files came from.

Run ``python -m fitbook.data`` to see where the data is found (or why not).
"""

import dataclasses
import gzip
import hashlib
import os
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

DATA_DIR_ENV = "FITBOOK_DATA_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_SUBDIR = Path("datasets") / "fashion-mnist"  # where Keras caches the files

IMAGE_SHAPE = (28, 28, 1)  # one Fashion-MNIST image: 28x28 pixels, one channel

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

HOW_TO_GET = (
    "To get it: install Debian's package (sudo apt-get install "
    f"dataset-fashion-mnist), or set {DATA_DIR_ENV} to a directory holding the "
    "four original Fashion-MNIST .gz files, or run once with internet access so "
    "Keras downloads them into its cache."
)


class DataError(RuntimeError):
    """The data set is missing or damaged; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class IdxFile:
    """One file of the data set and what its contents must be."""

    name: str  # file name, identical in every location
    sha256: str  # SHA-256 of the decompressed IDX bytes
    shape: tuple  # array shape stored in the IDX header


FASHION_MNIST_FILES = (
    IdxFile(
        "train-images-idx3-ubyte.gz",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        (60000, 28, 28),
    ),
    IdxFile(
        "train-labels-idx1-ubyte.gz",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        (60000,),
    ),
    IdxFile(
        "t10k-images-idx3-ubyte.gz",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        (10000, 28, 28),
    ),
    IdxFile(
        "t10k-labels-idx1-ubyte.gz",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        (10000,),
    ),
)


def keras_cache_dir():
    """Return the directory where Keras caches Fashion-MNIST."""
    keras_home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(keras_home) / KERAS_SUBDIR


def missing_files(directory):
    """Return the names of the data set's files that ``directory`` lacks."""
    directory = Path(directory)
    return [f.name for f in FASHION_MNIST_FILES if not (directory / f.name).is_file()]


def download_fashion_mnist():
    """Let Keras download the files into its cache; return that directory."""
    keras.datasets.fashion_mnist.load_data()
    return keras_cache_dir()


def locate_fashion_mnist(download=True):
    """Return the first directory holding all four files, in the documented order."""
    chosen = os.environ.get(DATA_DIR_ENV)
    if chosen:
        lacking = missing_files(chosen)
        if lacking:
            raise DataError(
                f"{DATA_DIR_ENV}={chosen} but that directory lacks "
                f"{', '.join(lacking)}. Expected the four Fashion-MNIST files "
                f"there; copy them in or unset {DATA_DIR_ENV} to use the default "
                "locations."
            )
        return Path(chosen)
    searched = [DEBIAN_DIR, keras_cache_dir()]
    for directory in searched:
        if not missing_files(directory):
            return directory
    where = " and ".join(str(d) for d in searched)
    if not download:
        raise DataError(f"Fashion-MNIST was not found in {where}. {HOW_TO_GET}")
    try:
        return download_fashion_mnist()
    except Exception as err:  # any download failure gets the same advice
        raise DataError(
            f"Fashion-MNIST was not found in {where}, and the Keras download "
            f"failed ({type(err).__name__}: {err}). {HOW_TO_GET}"
        ) from err


def parse_idx(raw, expected_shape, source):
    """Decode IDX bytes of unsigned bytes into an array of ``expected_shape``."""
    ndim = len(expected_shape)
    header_size = 4 + 4 * ndim
    if len(raw) < header_size or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DataError(
            f"{source}: not an IDX file of unsigned bytes with {ndim} dimension(s)"
            f" (header {raw[:4].hex() or 'empty'}, expected 000008{ndim:02x})."
        )
    dims = raw[4:header_size]
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    if shape != tuple(expected_shape):
        raise DataError(f"{source}: shape {shape}, expected {tuple(expected_shape)}.")
    expected_size = header_size + int(np.prod(shape))
    if len(raw) != expected_size:
        raise DataError(
            f"{source}: {len(raw)} bytes after decompression, expected "
            f"{expected_size} for shape {shape}; the file is truncated or padded."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def read_idx_file(path, spec):
    """Read one ``.gz`` file, check its SHA-256 and shape, return the array."""
    advice = f"Delete or replace {path}. {HOW_TO_GET}"
    try:
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"{path}: cannot be decompressed ({err}); expected the gzip file "
            f"{spec.name}. It is truncated or corrupted. {advice}"
        ) from err
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec.sha256:
        raise DataError(
            f"{path}: contents have SHA-256 {digest}, expected {spec.sha256}. "
            f"The file is damaged or is not Fashion-MNIST's {spec.name}. {advice}"
        )
    return parse_idx(raw, spec.shape, path)


def to_images(pixels):
    """Turn uint8 arrays of shape (n, 28, 28) into float32 (n, 28, 28, 1) in [0, 1]."""
    return (pixels[..., np.newaxis] / np.float32(255)).astype("float32")


def load_fashion_mnist(directory=None):
    """Return ``(x_train, y_train), (x_test, y_test)`` of Fashion-MNIST.

    Images are float32 in [0, 1] shaped ``(n, 28, 28, 1)``; labels are int64
    class indices into :data:`CLASS_NAMES`. ``directory`` overrides the search.
    """
    directory = Path(directory) if directory else locate_fashion_mnist()
    x_train, y_train, x_test, y_test = (
        read_idx_file(directory / spec.name, spec) for spec in FASHION_MNIST_FILES
    )
    return (
        (to_images(x_train), y_train.astype("int64")),
        (to_images(x_test), y_test.astype("int64")),
    )


def load_mnist():
    """Return MNIST digits in the same format, through Keras (needs a download)."""
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return (
        (to_images(x_train), y_train.astype("int64")),
        (to_images(x_test), y_test.astype("int64")),
    )


def image_dataset(x, batch_size, seed=0, repeat=False, start=0, autotune=False):
    """Shuffled batches of images (no labels), from batch ``start`` on.

    Batch ``b`` is a pure function of ``(seed, b)``: it belongs to epoch ``b //
    (len(x) // batch_size)``, a permutation of ``x`` drawn from ``(seed, epoch)``
    alone (without the last partial batch), so a run resumed at step ``start``
    sees exactly the batches an uninterrupted run would (chapters "A GAN",
    "WGAN-GP"). tf.data's autotuning is off unless ``autotune``
    (:func:`without_autotuning` says why).
    """
    n = len(x)
    per_epoch = n // batch_size
    if per_epoch < 1 or start < 0:
        raise ValueError(
            f"need 0 <= start and batch_size <= len(x), got start={start}, "
            f"batch_size={batch_size} for {n} images."
        )
    images = tf.convert_to_tensor(x)

    def batch(b):  # b: the batch's index counted from the first epoch's first
        epoch, first = b // per_epoch, (b % per_epoch) * batch_size
        positions = first + tf.range(batch_size, dtype="int64")
        key = tf.stack([tf.constant(seed, "int64"), epoch])  # one permutation each
        order = tf.random.experimental.index_shuffle(positions, key, n - 1)
        return tf.gather(images, order)

    stop = np.iinfo("int64").max if repeat else per_epoch
    dataset = tf.data.Dataset.range(start, stop).map(batch).prefetch(tf.data.AUTOTUNE)
    return dataset if autotune else without_autotuning(dataset)


def without_autotuning(dataset):
    """``dataset`` with tf.data's autotuning switched off (chapter "Performance").

    ``fit()`` makes a new iterator of its dataset every epoch. While autotuning
    is on, an iterator can, on some machines, leave TensorFlow's worker threads
    idle part of every training step for as long as it lives: the chapter
    measures fresh iterators both ways on yours.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


if __name__ == "__main__":  # `python -m fitbook.data` (chapter "Setup")
    from fitbook.tools.check_data import main

    sys.exit(main())
