"""Tests for fitbook.data: search order, checks and clear errors."""

import gzip
import shutil

import numpy as np
import pytest
import tensorflow as tf

from fitbook import data
from fitbook.tools import check_data


@pytest.fixture
def no_default_locations(tmp_path, monkeypatch):
    """Point every search location at empty temporary directories."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(data, "download_fashion_mnist", offline)
    return tmp_path


def link_files(source, target):
    """Symlink the four data files from ``source`` into a new dir ``target``."""
    target.mkdir(parents=True)
    for spec in data.FASHION_MNIST_FILES:
        (target / spec.name).symlink_to(source / spec.name)
    return target


def idx_bytes(array):
    """Encode a uint8 array as IDX bytes (the format's own header layout)."""
    header = bytes([0, 0, 8, array.ndim])
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + dims + array.astype(np.uint8).tobytes()


def test_env_dir_comes_first(fashion_mnist_dir, no_default_locations, monkeypatch):
    chosen = link_files(fashion_mnist_dir, no_default_locations / "chosen")
    link_files(fashion_mnist_dir, no_default_locations / "debian")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(chosen))
    assert data.locate_fashion_mnist() == chosen


def test_env_dir_missing_files_is_a_clear_error(no_default_locations, monkeypatch):
    empty = no_default_locations / "empty"
    empty.mkdir()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(empty))
    with pytest.raises(data.DataError, match="lacks train-images-idx3-ubyte.gz"):
        data.locate_fashion_mnist()


def test_debian_dir_before_keras_cache(fashion_mnist_dir, no_default_locations):
    debian = link_files(fashion_mnist_dir, no_default_locations / "debian")
    link_files(fashion_mnist_dir, data.keras_cache_dir())
    assert data.locate_fashion_mnist() == debian


def test_keras_cache_used_when_no_debian_package(
    fashion_mnist_dir, no_default_locations
):
    cache = link_files(fashion_mnist_dir, data.keras_cache_dir())
    assert cache == no_default_locations / "keras" / "datasets" / "fashion-mnist"
    assert data.locate_fashion_mnist() == cache


def test_download_is_the_last_resort(
    fashion_mnist_dir, no_default_locations, monkeypatch
):
    def fake_download():
        return link_files(fashion_mnist_dir, data.keras_cache_dir())

    monkeypatch.setattr(data, "download_fashion_mnist", fake_download)
    assert data.locate_fashion_mnist() == data.keras_cache_dir()


def test_missing_offline_names_places_and_remedy(no_default_locations):
    with pytest.raises(data.DataError) as info:
        data.locate_fashion_mnist()
    message = str(info.value)
    assert "debian" in message and "fashion-mnist" in message
    assert "OSError: no network" in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_no_download_flag_does_not_download(no_default_locations, monkeypatch):
    monkeypatch.setattr(data, "download_fashion_mnist", pytest.fail)
    with pytest.raises(data.DataError, match="was not found"):
        data.locate_fashion_mnist(download=False)


def test_truncated_file_is_named(fashion_mnist_dir, tmp_path):
    spec = data.FASHION_MNIST_FILES[1]  # train labels: small
    broken = tmp_path / spec.name
    broken.write_bytes((fashion_mnist_dir / spec.name).read_bytes()[:-100])
    with pytest.raises(data.DataError, match=f"{spec.name}.*truncated or corrupted"):
        data.read_idx_file(broken, spec)


def test_corrupted_contents_fail_the_checksum(fashion_mnist_dir, tmp_path):
    spec = data.FASHION_MNIST_FILES[1]
    with gzip.open(fashion_mnist_dir / spec.name) as stream:
        raw = bytearray(stream.read())
    raw[100] ^= 0xFF  # flip one label byte
    broken = tmp_path / spec.name
    broken.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.DataError, match=f"expected {spec.sha256}"):
        data.read_idx_file(broken, spec)


def test_not_gzip_at_all(tmp_path):
    spec = data.FASHION_MNIST_FILES[0]
    bogus = tmp_path / spec.name
    bogus.write_text("<html>404 Not Found</html>")
    with pytest.raises(data.DataError, match="cannot be decompressed"):
        data.read_idx_file(bogus, spec)


def test_parse_idx_round_trip():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = data.parse_idx(idx_bytes(array), (2, 3, 4), "x")
    np.testing.assert_array_equal(parsed, array)


def test_parse_idx_wrong_shape():
    raw = idx_bytes(np.zeros((5, 28, 27), dtype=np.uint8))
    expected = r"shape \(5, 28, 27\), expected \(5, 28, 28\)"
    with pytest.raises(data.DataError, match=expected):
        data.parse_idx(raw, (5, 28, 28), "images.gz")


def test_parse_idx_wrong_rank_and_size():
    labels = idx_bytes(np.zeros(5, dtype=np.uint8))
    with pytest.raises(data.DataError, match="with 3 dimension"):
        data.parse_idx(labels, (5, 28, 28), "images.gz")  # labels where images belong
    with pytest.raises(data.DataError, match="truncated or padded"):
        data.parse_idx(labels[:-1], (5,), "labels.gz")


def test_load_shapes_dtypes_and_range(fashion_mnist_dir):
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(fashion_mnist_dir)
    assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert 0.0 == x_train.min() and x_train.max() == 1.0
    assert set(np.unique(y_test)) == set(range(len(data.CLASS_NAMES)))


def test_load_from_a_copied_directory(fashion_mnist_dir, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(fashion_mnist_dir, copy)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(copy))
    (_, y_train), _ = data.load_fashion_mnist()
    assert np.bincount(y_train).tolist() == [6000] * 10


def test_command_line_reports_location_and_errors(
    fashion_mnist_dir, no_default_locations, monkeypatch, capsys
):
    assert check_data.main(["--no-download"]) == 1
    assert "apt-get install" in capsys.readouterr().err
    monkeypatch.setenv(data.DATA_DIR_ENV, str(fashion_mnist_dir))
    assert check_data.main(["--no-download"]) == 0
    assert "all four files verified" in capsys.readouterr().out


def test_image_dataset_switches_autotuning_off_unless_asked():
    x = np.arange(10, dtype="float32").reshape(10, 1, 1, 1)
    assert data.image_dataset(x, 3).options().autotune.enabled is False
    enabled = data.image_dataset(x, 3, autotune=True).options().autotune.enabled
    assert enabled is not False  # None: not set, so tf.data's default, on
    tuned = data.image_dataset(x, 3, seed=1, autotune=True)
    same = [np.array_equal(a.numpy(), b.numpy())
            for a, b in zip(data.image_dataset(x, 3, seed=1), tuned)]
    assert same == [True] * 3  # the same batches either way


def test_without_autotuning_keeps_the_elements_and_other_options():
    options = tf.data.Options()
    options.deterministic = False
    dataset = tf.data.Dataset.range(5).with_options(options)
    untuned = data.without_autotuning(dataset)
    assert untuned.options().autotune.enabled is False
    assert dataset.options().autotune.enabled is not False  # as it was: default
    assert untuned.options().deterministic is False
    assert [int(v) for v in untuned] == [0, 1, 2, 3, 4]
