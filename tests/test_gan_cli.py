"""`python -m fitbook.gan train`: killed and resumed bit for bit; bad input rejected."""

import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from fitbook.data import image_dataset
from fitbook.runs import final_scores, read_run, score_columns, truncate_run
from fitbook.tools import train_gan

# A tiny run: 64 training images in batches of 4, logs and checkpoints every 2
# steps, scores on 16 images against 100 real ones, no XLA, no image grids; in
# mixed_bfloat16 with a moving average of the generator (the long run's settings).
TINY = [
    "--log-every", "2", "--batch-size", "4", "--train-images", "64",
    "--precision", "mixed_bfloat16", "--ema-momentum", "0.9",
    "--score-images", "16", "--reference-images", "100", "--grid-every", "1000",
    "--verbose", "0", "--no-jit", "--seed", "3",
]
STEPS = 12  # the resumed run and the uninterrupted one both end here


def command(out, steps, *extra):
    return [sys.executable, "-m", "fitbook.gan", "train", "--out", str(out),
            "--steps", str(steps), *TINY, *extra]


def start(out, steps, *extra):
    return subprocess.Popen(
        command(out, steps, *extra), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def finish(process):
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return stdout, stderr


def checkpoint_steps(out):
    return sorted(int(p.stem[5:]) for p in (out / "ckpt").glob("ckpt-*.npz"))


def kill_after_checkpoint(process, out, step):
    """SIGKILL ``process`` as soon as a checkpoint of ``step`` or later exists."""
    deadline = time.monotonic() + 300
    while not checkpoint_steps(out) or checkpoint_steps(out)[-1] < step:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def weights(path):
    return keras.saving.load_model(path, compile=False).get_weights()


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, fashion_mnist_dir):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = start(straight_dir, STEPS)  # the two runs share the 2 cores
    killed = start(killed_dir, 1000)  # far longer than it will live
    kill_after_checkpoint(killed, killed_dir, 4)
    saved = checkpoint_steps(killed_dir)
    assert len(saved) >= 2 and saved[-1] < STEPS, saved
    # The newest checkpoint is damaged too: resuming falls back to the one before.
    newest = killed_dir / "ckpt" / f"ckpt-{saved[-1]:010d}.npz"
    newest.write_bytes(newest.read_bytes()[:100])
    stdout, stderr = finish(start(killed_dir, STEPS, "--resume"))
    assert f"{newest} is damaged" in stderr
    assert f"resumed from step {saved[-2]}" in stdout
    finish(straight)

    for name in ("generator.keras", "discriminator.keras"):
        pairs = zip(weights(straight_dir / name), weights(killed_dir / name))
        assert all(np.array_equal(a, b) for a, b in pairs), name
    final = f"ckpt/ckpt-{STEPS:010d}.npz"  # optimizers and random state too
    with np.load(straight_dir / final) as a, np.load(killed_dir / final) as b:
        assert a.files == b.files
        assert all(np.array_equal(a[key], b[key]) for key in a.files)
    # The logs have each step once, as the uninterrupted run's do.
    for name in ("losses.csv", "scores.csv"):
        lines = [
            (straight_dir / name).read_text().splitlines(),
            (killed_dir / name).read_text().splitlines(),
        ]
        if name == "scores.csv":  # all but the last column, the wall time
            lines = [[line.rsplit(",", 1)[0] for line in run] for run in lines]
        assert lines[0] == lines[1], name
    run = read_run(killed_dir)
    np.testing.assert_array_equal(run["losses"]["step"], np.arange(1, STEPS + 1))
    np.testing.assert_array_equal(run["scores"]["step"], np.arange(2, STEPS + 1, 2))


def error_of(argv, capsys):
    """Run ``main(argv)``; return its stderr after checking it exited with 2."""
    with pytest.raises(SystemExit) as exit_info:
        train_gan.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--steps", "-5"], "argument --steps: expected an integer >= 1, got '-5'"),
        (["--steps", "0"], "argument --steps: expected an integer >= 1"),
        (["--steps", "7"], "--steps 7 is not a multiple of --log-every 2"),
        (["--epochs", "0"], "argument --epochs: expected an integer >= 1"),
        (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1"),
        (["--log-every", "-1"], "argument --log-every: expected an integer >= 1"),
        (["--learning-rate", "nan"], "argument --learning-rate: expected a number"),
        (["--beta-1", "1"], "argument --beta-1: expected a number in [0, 1)"),
        (["--ema-momentum", "1"], "argument --ema-momentum: expected a number in"),
        (["--precision", "float16"], "argument --precision: invalid choice"),
        (["--seed", "-1"], "argument --seed: expected an integer >= 0"),
        (["--score-images", "1"], "argument --score-images: expected an integer"),
        (["--recipe", "best"], "argument --recipe: invalid choice: 'best'"),
        (["--verbose", "3"], "argument --verbose: invalid choice: 3"),
        (["--resume", "--no-checkpoint"], "--resume needs checkpoints"),
    ],
)
def test_bad_arguments_exit_with_status_2(tmp_path, capsys, flags, message):
    argv = ["train", "--out", str(tmp_path / "run"), "--log-every", "2", *flags]
    err = error_of(argv, capsys)
    assert message in err and err.startswith("usage: python -m fitbook.gan train")
    assert not (tmp_path / "run").exists()  # nothing was started


def test_bad_out_directories_exit_with_status_2(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    assert "is a file, not a directory" in error_of(
        ["train", "--out", str(a_file)], capsys
    )
    missing = tmp_path / "missing"
    assert "there is no run in" in error_of(
        ["train", "--out", str(missing), "--resume"], capsys
    )
    assert not missing.exists()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "losses.csv").write_text("step,d_loss,g_loss\n1,1,1\n")
    assert "already holds a run: pass --resume" in error_of(
        ["train", "--out", str(tmp_path / "run")], capsys
    )


def test_resume_with_other_settings_exits_with_status_2(
    tmp_path, capsys, fashion_mnist_dir
):
    argv = ["train", "--out", str(tmp_path), *TINY, "--steps", "2", "--resume"]
    (tmp_path / "run.json").write_text('{"seed": 0}')  # a run with another seed
    err = error_of(argv, capsys)
    assert "--resume with other settings" in err and "seed: 0 then, 3 now" in err


def test_too_few_images_exit_with_status_2(tmp_path, capsys, fashion_mnist_dir):
    argv = ["train", "--out", str(tmp_path / "run"), *TINY, "--steps", "2"]
    err = error_of([*argv, "--train-images", "3"], capsys)  # fewer than a batch
    assert "--train-images 3 must be between 4 and the 60000 images" in err


def test_truncate_run_drops_later_and_partial_rows(tmp_path):
    (tmp_path / "losses.csv").write_text(
        "step,d_loss,g_loss\n1,0.5,0.7\n2,0.4,0.8\n3,0.3,0"  # killed mid-row
    )
    header = ",".join(score_columns({"coverage": 0.5, "frechet": 30.0}))
    (tmp_path / "scores.csv").write_text(header + "\n3,0.1,0.2,0.5,30")  # step 3
    truncate_run(tmp_path, 2)
    assert (tmp_path / "losses.csv").read_text() == (
        "step,d_loss,g_loss\n1,0.5,0.7\n2,0.4,0.8\n"
    )
    assert not (tmp_path / "scores.csv").exists()  # no row left
    truncate_run(tmp_path, 0)
    assert not (tmp_path / "losses.csv").exists()


def test_score_columns_and_final_scores_follow_the_scorer(tmp_path):
    scores = {"coverage": 0.9, "frechet": 20.0, "ema_frechet": 15.0}
    assert score_columns(scores) == (
        "step", "d_loss", "g_loss", "coverage", "frechet", "ema_frechet", "seconds"
    )
    (tmp_path / "losses.csv").write_text("step,d_loss,g_loss\n1,0.5,0.7\n")
    (tmp_path / "scores.csv").write_text(
        ",".join(score_columns(scores)) + "\n1,0.5,0.7,0.8,30,25,1.5\n"
        "2,0.4,0.6,0.9,20,15,3.0\n"
    )
    assert final_scores(read_run(tmp_path)) == scores


def test_image_dataset_is_a_pure_function_of_seed_and_position():
    x = np.arange(10, dtype="float32").reshape(10, 1, 1, 1)
    whole = [b.numpy().ravel() for b in image_dataset(x, 3, seed=1, repeat=True)
             .take(9)]
    later = [b.numpy().ravel() for b in image_dataset(x, 3, seed=1, repeat=True,
                                                        start=4).take(5)]
    assert all(np.array_equal(a, b) for a, b in zip(whole[4:], later))
    for epoch in range(3):  # 3 batches of 3 per epoch, without repeats
        images = np.concatenate(whole[3 * epoch : 3 * epoch + 3])
        assert len(set(images)) == 9
    assert not np.array_equal(np.concatenate(whole[:3]), np.concatenate(whole[3:6]))
    other_seed = image_dataset(x, 3, seed=2).take(3)
    assert not np.array_equal(
        np.concatenate([b.numpy().ravel() for b in other_seed]),
        np.concatenate(whole[:3]),
    )
    assert len(list(image_dataset(x, 3))) == 3  # one epoch without repeat
