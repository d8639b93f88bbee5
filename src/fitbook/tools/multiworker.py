"""Tool: ``python -m fitbook.tools.multiworker`` launches two worker processes on
this machine, trains under ``MultiWorkerMirroredStrategy`` and reports whether
they agree with one process (chapter "Scaling out"); ``--worker`` is the entry
point of each worker it starts."""

import argparse
import json
import sys

import numpy as np

import fitbook  # noqa: F401  (quiet TensorFlow import)
from fitbook.distribute_multiworker import (
    TOLERANCE,
    TRAINERS,
    launch,
    report,
    run_worker,
)


def main(argv=None):
    """Command line: launch the workers, print the report (chapter "Scaling out")."""
    parser = argparse.ArgumentParser(prog="python -m fitbook.tools.multiworker")
    parser.add_argument("--trainer", choices=TRAINERS, default="loop")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--global-batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=120, help="seconds")
    parser.add_argument("--json", action="store_true", help="print JSON instead")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # started by launch(), with TF_CONFIG in the environment
        run_worker(
            args.trainer, args.result_dir, args.global_batch_size, args.epochs,
            args.examples,
        )
        return 0
    summary = launch(
        args.trainer, args.workers, args.global_batch_size, args.epochs,
        args.examples, args.timeout,
    )
    print(json.dumps(summary) if args.json else "\n".join(report(summary)))
    failed = any("error" in result for result in summary["workers"])
    agree = summary.get("vs_single_process", np.inf) <= TOLERANCE
    return 0 if not failed and agree and summary["between_workers"] <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
