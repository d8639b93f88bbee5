"""Import TensorFlow without its start-up noise on stderr (used via ``import fitbook``).

TensorFlow's C++ runtime prints absl, CUDA and CPU-feature lines to file
descriptor 2 while it is being imported, before any logging setting applies.
We import it with that descriptor pointed at a temporary file and then replay
every captured line that is *not* such start-up noise, so real warnings and
errors still reach the reader.
"""

import atexit
import contextlib
import os
import re
import sys
import tempfile
import threading

# Lines TensorFlow prints on every start on a machine without a GPU.
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r" are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\] .*"  # absl INFO / WARNING lines
    r"|E\d{4} [\d:.]+ +\d+ cuda\w*\.cc:\d+\] .*"  # CUDA probe without a GPU
    r"|To enable the following instructions: .*)$"  # CPU-feature notice, line 2
)


# oneDNN's notice, once per process, when a float16 kernel first runs on a CPU
# without AVX-512 FP16 (AMD Zen 4 has AVX-512 but not FP16): it falls back to
# Eigen's kernel and nothing else changes. Logged at ERROR level, so
# TF_CPP_MIN_LOG_LEVEL=2 lets it through.
FLOAT16_NOTICE = re.compile(
    r"^E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_HALF only on "
    r"platforms with AVX-512\..*$"
)


# Grappler's remapper, on a graph it cannot fuse (seen with the GAN's
# LeakyReLU gradient after a BiasAdd under oneDNN, without XLA), gives up on that
# fusion and goes on unfused; the step's results are unchanged. Logged at ERROR
# level once per traced function.
REMAPPER_NOTICE = re.compile(
    r"^E\d{4} [\d:.]+ +\d+ meta_optimizer\.cc:\d+\] remapper failed: "
    r"INVALID_ARGUMENT: Mutation::Apply error: .*$"
)

KNOWN_NOTICES = (FLOAT16_NOTICE, REMAPPER_NOTICE)


def is_known_notice(line):
    """Return True if ``line`` is one of ``KNOWN_NOTICES``: ERROR-level lines
    that TensorFlow logs although nothing went wrong."""
    return any(notice.match(line.rstrip("\r\n")) for notice in KNOWN_NOTICES)


_notice_filter = []  # the forwarding thread, once installed


def filter_known_notices():
    """From now on, drop ``KNOWN_NOTICES`` lines written to file descriptor 2.

    Process-wide: descriptor 2 becomes a pipe, and a thread forwards every
    other line, unchanged, to where descriptor 2 pointed before. Python's own
    ``sys.stderr`` is untouched where it is not descriptor 2 (in Jupyter).
    ``import fitbook`` installs it in a Jupyter kernel (the book's chapters);
    calling it again does nothing. At exit, lines still in the pipe are
    forwarded before the process ends.
    """
    if _notice_filter:
        return _notice_filter[0]
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    target = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for raw in pipe:  # a line at a time; ends when descriptor 2 closes
                if not is_known_notice(raw.decode("utf-8", "replace")):
                    os.write(target, raw)

    thread = threading.Thread(target=forward, name="fitbook-notices", daemon=True)
    thread.start()

    def restore():  # closes the pipe's last write end: the thread sees its end
        sys.stderr.flush()
        os.dup2(target, 2)
        thread.join(timeout=5)

    atexit.register(restore)
    _notice_filter.append(thread)
    return thread


@contextlib.contextmanager
def without_float16_notice():
    """Run a block with file descriptor 2 captured, then replay every line except
    oneDNN's float16 notice (``FLOAT16_NOTICE``), even when the block raises."""
    lines = []
    try:
        with captured_stderr_fd() as captured:
            try:
                yield
            finally:
                lines = captured  # filled when the capture ends
    finally:
        replay(lines, FLOAT16_NOTICE.match)


def replay(lines, drop=is_known_notice):
    """Print captured ``lines`` to ``sys.stderr``, except blank ones and those
    ``drop(line)`` is true for (default: ``KNOWN_NOTICES``)."""
    for line in lines:
        if line.strip() and not drop(line.rstrip("\r\n")):
            print(line, file=sys.stderr)


def is_startup_noise(line):
    """Return True if ``line`` is one of TensorFlow's known start-up lines."""
    return bool(STARTUP_NOISE.match(line.rstrip("\r\n")))


@contextlib.contextmanager
def captured_stderr_fd():
    """Point file descriptor 2 at a temporary file; yield a list filled on exit."""
    lines = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


def import_tensorflow_quietly():
    """Import TensorFlow and Keras, replaying only stderr lines that matter."""
    if "tensorflow" in sys.modules:
        return  # already imported: its start-up lines are already printed
    # C++ INFO and WARNING logs after start-up (e.g. tf.data's end-of-sequence
    # notice) are noise for this book; a value set by the user wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with captured_stderr_fd() as lines:
        import keras  # noqa: F401  (imports TensorFlow as its backend)
        import tensorflow as tf

        tf.config.list_physical_devices()  # probe devices now, inside the capture
    for line in lines:
        if line.strip() and not is_startup_noise(line):
            print(line, file=sys.stderr)
    if "ipykernel" in sys.modules:  # a notebook: the book's chapters, executed
        filter_known_notices()
