"""fitbook.distribute_multiworker: two workers on localhost, and their plumbing."""

import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fitbook import distribute_multiworker as multiworker

ATOL = 1e-5  # workers sum gradients in another order: float rounding only


def test_two_workers_on_localhost_agree_with_one_process():
    summary = multiworker.launch("loop", timeout=120)
    assert [w["index"] for w in summary["workers"]] == [0, 1]
    assert all(w["replicas"] == 2 for w in summary["workers"])
    assert summary["between_workers"] <= ATOL
    assert summary["vs_single_process"] <= ATOL
    np.testing.assert_allclose(
        summary["workers"][1]["losses"], summary["single_process_losses"], rtol=1e-5
    )
    assert summary["chief_saved"]
    lines = multiworker.report(summary)
    assert lines[0].startswith("worker 0 (chief, 2 replicas in sync): epoch losses")


def test_pick_free_ports_gives_distinct_bindable_ports():
    ports = multiworker.pick_free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("localhost", port))


@pytest.mark.parametrize("n", [0, 1.5, True])
def test_pick_free_ports_rejects_bad_counts(n):
    with pytest.raises(ValueError, match="positive int"):
        multiworker.pick_free_ports(n)


def test_tf_config_lists_every_worker_and_this_task():
    config = multiworker.tf_config([1234, 5678], 1)
    assert config == {
        "cluster": {"worker": ["localhost:1234", "localhost:5678"]},
        "task": {"type": "worker", "index": 1},
    }
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(config["cluster"]), task_type="worker", task_id=1
    )
    assert resolver.cluster_spec().num_tasks("worker") == 2  # TensorFlow accepts it


@pytest.mark.parametrize(
    "ports,index", [([1234], 1), ([1234], -1), ([], 0), ([1234], "0")]
)
def test_tf_config_rejects_bad_arguments(ports, index):
    with pytest.raises(ValueError):
        multiworker.tf_config(ports, index)


def test_make_images_is_the_same_in_every_process():
    (x1, y1), (x2, y2) = multiworker.make_images(64), multiworker.make_images(64)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (64, 28, 28, 1) and x1.dtype == np.float32
    assert 0.0 <= x1.min() and x1.max() <= 1.0


def test_short_error_drops_tensor_values():
    err = ValueError(
        "Attempt to convert a value (PerReplica:{\n  0: <tf.Tensor ...>\n}) with an "
        "unsupported type."
    )
    assert multiworker.short_error(err) == (
        "ValueError: Attempt to convert a value (PerReplica:{...}) with an "
        "unsupported type."
    )


def sleepers(tmp_path, *codes):
    processes = []
    for index, code in enumerate(codes):
        with open(tmp_path / f"worker-{index}.log", "w") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT
            ))
    return processes


def test_wait_for_workers_stops_a_hanging_cluster(tmp_path):
    processes = sleepers(tmp_path, "import time; time.sleep(60)", "pass")
    with pytest.raises(RuntimeError, match=r"worker 0 did not finish within 0.5 s"):
        multiworker.wait_for_workers(processes, tmp_path, timeout=0.5)
    assert all(p.returncode is not None for p in processes)


def test_wait_for_workers_reports_a_crash_and_stops_the_others(tmp_path):
    crash = "import sys; print('worker failed: no route'); sys.exit(3)"
    processes = sleepers(tmp_path, "import time; time.sleep(60)", crash)
    with pytest.raises(RuntimeError, match=r"(?s)worker 1 crashed.*no route"):
        multiworker.wait_for_workers(processes, tmp_path, timeout=30)
    assert processes[0].returncode is not None  # killed, not left behind


def test_launch_rejects_unknown_trainers():
    with pytest.raises(ValueError, match="trainer must be one of"):
        multiworker.launch("keras")
