"""Tests for fitbook.tf_noise: TensorFlow's start-up lines go, real ones stay."""

import subprocess
import sys

import pytest

from fitbook.tf_noise import is_startup_noise

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written"
    " to STDERR",
    "I0000 00:00:1795326793.408708    2225 cudart_stub.cc:31] Could not find cuda"
    " drivers on your machine, GPU will not be used.",
    "I0000 00:00:1795326793.528748    2225 cpu_feature_guard.cc:227] This TensorFlow"
    " binary is optimized to use available CPU instructions.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild"
    " TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1795326796.865583    2225 cuda_platform.cc:52] failed call to"
    " cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]
KEPT = [
    "<string>:4: UserWarning: our own warning shows",
    "E0000 00:00:1795326796.865583    2225 op_kernel.cc:12] real failure in an op",
    "Traceback (most recent call last):",
]


@pytest.mark.parametrize("line", NOISE)
def test_startup_lines_are_noise(line):
    assert is_startup_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_other_lines_are_kept(line):
    assert not is_startup_noise(line)


def test_import_is_quiet_but_warnings_still_show():
    code = (
        "import fitbook, tensorflow as tf, warnings\n"
        "print(float(tf.reduce_sum(tf.ones((2, 2)))))\n"
        "warnings.warn('ours')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "4.0"
    assert result.stderr.strip().endswith("UserWarning: ours")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_float16_notice_is_dropped_and_other_lines_replayed(capfd):
    import os

    from fitbook.tf_noise import without_float16_notice

    notice = (
        "E0000 00:00:1796090203.944230   18423 util.cc:131] oneDNN supports DT_HALF "
        "only on platforms with AVX-512. Falling back to the default Eigen-based "
        "implementation if present.\n"
    )
    with pytest.raises(RuntimeError):
        with without_float16_notice():
            os.write(2, notice.encode())
            os.write(2, b"a real error\n")
            raise RuntimeError("the block failed")
    err = capfd.readouterr().err
    assert "a real error" in err and "DT_HALF" not in err
