"""Two workers on localhost with MultiWorkerMirroredStrategy (chapter "Scaling out
with tf.distribute").

``python -m fitbook.tools.multiworker`` picks free ports, starts two worker
processes, each with its own ``TF_CONFIG``, lets them train the chapter's
classifier together with the from-scratch loop of :mod:`fitbook.distribute`, and
checks that both end with the same weights as one process training on the same
global batches.
``--trainer fit`` tries ``fit()`` with the custom ``train_step`` instead.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from fitbook.checks import non_negative_int, positive_int
from fitbook.distribute import (
    DistributedTrainer,
    MirroredTrainStepModel,
    fit_under,
    loop_under,
)
from fitbook.sample_weights import largest_difference

TRAINERS = ("loop", "fit")
TOLERANCE = 1e-5  # largest weight difference counted as "the same"


def pick_free_ports(n, host="localhost"):
    """``n`` distinct TCP ports free on ``host`` right now (chapter "Scaling out")."""
    n = positive_int("n", n)
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for sock in sockets:  # all bound at once, so the ports are distinct
            sock.bind((host, 0))  # port 0: the system picks a free one
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports, index, host="localhost"):
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of one worker per port
    (chapter "Scaling out with tf.distribute")."""
    if not ports:
        raise ValueError("ports must list one port per worker, got none.")
    index = non_negative_int("index", index)
    if index >= len(ports):
        raise ValueError(
            f"index must be in [0, {len(ports)}) for {len(ports)} workers, got {index}."
        )
    return {
        "cluster": {"worker": [f"{host}:{port}" for port in ports]},  # every worker
        "task": {"type": "worker", "index": index},  # which one this process is
    }


def make_images(n=512, seed=0):
    """``n`` synthetic 28x28 images of 10 learnable classes ("Scaling out").

    Every process builds the same arrays from ``seed``; no files are needed.
    """
    rng = np.random.default_rng(seed)
    templates = rng.random((10, 28, 28, 1), dtype="float32")
    y = rng.integers(0, 10, size=n).astype("int64")
    noise = rng.random((n, 28, 28, 1), dtype="float32")
    return 0.5 * templates[y] + 0.5 * noise, y


def short_error(err):
    """``Type: message`` on one line, without tensor values ("Scaling out")."""
    pattern = re.compile(r"\(PerReplica:\{.*?\}\)", re.S)
    message = pattern.sub("(PerReplica:{...})", str(err))
    return f"{type(err).__name__}: {' '.join(message.split())}"


def train(strategy, trainer, x, y, global_batch_size, epochs):
    """Train the chapter's classifier under ``strategy``; return model and losses."""
    if trainer == "loop":
        return loop_under(strategy, DistributedTrainer, x, y, global_batch_size, epochs)
    model, history = fit_under(
        strategy, MirroredTrainStepModel, x, y, global_batch_size, epochs
    )
    return model, history["loss"]


def run_worker(trainer, result_dir, global_batch_size, epochs, examples):
    """The body of one worker process; ``TF_CONFIG`` says which (chapter
    "Scaling out with tf.distribute")."""
    # First thing: the strategy reads TF_CONFIG and connects to the other workers.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = strategy.cluster_resolver.task_id
    result = {"index": index, "replicas": strategy.num_replicas_in_sync}
    x, y = make_images(examples)  # every worker: the same data, same order
    try:
        model, losses = train(strategy, trainer, x, y, global_batch_size, epochs)
    except Exception as err:  # reported, so the chapter can show it
        result["error"] = short_error(err)
    else:
        result["losses"] = losses
        np.savez(Path(result_dir) / f"weights-{index}.npz", *model.get_weights())
        if index == 0:  # worker 0 is the chief: only it saves the model
            model.save(Path(result_dir) / "model.keras")
    (Path(result_dir) / f"result-{index}.json").write_text(json.dumps(result))


def start_workers(trainer, result_dir, workers, global_batch_size, epochs, examples):
    """Start one worker process per worker, each with its ``TF_CONFIG`` (chapter
    "Scaling out with tf.distribute")."""
    ports = pick_free_ports(workers)
    processes = []
    for index in range(workers):
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config(ports, index)))
        command = [
            sys.executable, "-m", "fitbook.tools.multiworker", "--worker",
            "--trainer", trainer, "--result-dir", str(result_dir),
            "--global-batch-size", str(global_batch_size),
            "--epochs", str(epochs), "--examples", str(examples),
        ]
        log = Path(result_dir) / f"worker-{index}.log"  # its stdout and stderr
        with open(log, "w") as stream:
            processes.append(subprocess.Popen(
                command, env=env, stdout=stream, stderr=subprocess.STDOUT
            ))
    return processes


def wait_for_workers(processes, result_dir, timeout):
    """Wait until every worker exits (chapter "Scaling out with tf.distribute").

    On a crash, or after ``timeout`` seconds, stop them all and raise RuntimeError
    with the worker's last log lines.
    """
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in processes):
        failed = [i for i, p in enumerate(processes) if p.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            for process in processes:
                process.kill()
                process.wait()
            index = failed[0] if failed else next(
                i for i, p in enumerate(processes) if p.returncode < 0
            )
            log = (Path(result_dir) / f"worker-{index}.log").read_text()
            what = "crashed" if failed else f"did not finish within {timeout} s"
            raise RuntimeError(
                f"worker {index} {what}; its last output:\n"
                + "\n".join(log.splitlines()[-15:])
            )
        time.sleep(0.1)
    for index, process in enumerate(processes):
        if process.returncode != 0:
            log = (Path(result_dir) / f"worker-{index}.log").read_text()
            raise RuntimeError(
                f"worker {index} exited with status {process.returncode}:\n"
                + "\n".join(log.splitlines()[-15:])
            )


def launch(
    trainer="loop", workers=2, global_batch_size=64, epochs=2, examples=512, timeout=120
):
    """Run ``workers`` workers on localhost and compare their weights with each
    other and with one process; return a summary (chapter "Scaling out")."""
    if trainer not in TRAINERS:
        raise ValueError(f"trainer must be one of {TRAINERS}, got {trainer!r}.")
    with tempfile.TemporaryDirectory(prefix="fitbook-workers-") as result_dir:
        start = time.perf_counter()
        processes = start_workers(
            trainer, result_dir, workers, global_batch_size, epochs, examples
        )
        wait_for_workers(processes, result_dir, timeout)
        seconds = time.perf_counter() - start
        results = [
            json.loads((Path(result_dir) / f"result-{i}.json").read_text())
            for i in range(workers)
        ]
        summary = {"trainer": trainer, "workers": results, "seconds": seconds}
        if any("error" in result for result in results):
            return summary
        summary["chief_saved"] = (Path(result_dir) / "model.keras").is_file()
        weights = [
            load_weights(Path(result_dir) / f"weights-{i}.npz") for i in range(workers)
        ]
    x, y = make_images(examples)  # one process, the same global batches
    reference, losses = train(
        tf.distribute.get_strategy(), trainer, x, y, global_batch_size, epochs
    )
    summary["single_process_losses"] = losses
    summary["between_workers"] = max(largest_difference(weights[0], w) for w in weights)
    summary["vs_single_process"] = largest_difference(
        weights[0], reference.get_weights()
    )
    return summary


def load_weights(path):
    """The arrays a worker saved with ``np.savez``, in order ("Scaling out")."""
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def report(summary):
    """The lines ``python -m fitbook.tools.multiworker`` prints ("Scaling out")."""
    lines = []
    for result in summary["workers"]:
        role = "chief" if result["index"] == 0 else "worker"
        replicas = result["replicas"]
        head = f"worker {result['index']} ({role}, {replicas} replicas in sync)"
        if "error" in result:
            lines.append(f"{head}: {summary['trainer']} failed: {result['error']}")
        else:
            losses = ", ".join(f"{loss:.4f}" for loss in result["losses"])
            lines.append(f"{head}: epoch losses {losses}")
    if "vs_single_process" in summary:
        losses = ", ".join(f"{loss:.4f}" for loss in summary["single_process_losses"])
        lines.append(f"one process, same global batches: epoch losses {losses}")
        between, single = summary["between_workers"], summary["vs_single_process"]
        lines.append(f"max |weight difference| between workers: {between:.2e}")
        lines.append(f"max |weight difference| vs one process: {single:.2e}")
        lines.append(f"model saved by the chief only: {summary['chief_saved']}")
    return lines
