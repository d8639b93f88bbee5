"""`python -m fitbook.tools.gan_study`: one train_gan run per recipe x precision x
conv x seed, finished runs skipped, started ones resumed; read back by
runs.read_runs."""

import json
import sys

import pytest

from fitbook.runs import read_runs
from fitbook.tools import gan_study


def test_run_name():
    assert gan_study.run_name("fixed", "float32", 2) == "fixed-float32-seed2"
    assert gan_study.run_name("fixed", "mixed_bfloat16", 0, "shift_add") == (
        "fixed-mixed_bfloat16+shift_add-seed0")


def test_convs_name_the_runs_and_reach_train_gan(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(gan_study.subprocess, "run",
                        lambda command, check: commands.append(command))
    gan_study.main(["--out", str(tmp_path), "--recipes", "fixed", "--seeds", "0",
                    "--convs", "keras", "shift_add"])
    names = [c[c.index("--out") + 1].rsplit("/", 1)[1] for c in commands]
    assert names == ["fixed-mixed_bfloat16-seed0",
                     "fixed-mixed_bfloat16+shift_add-seed0"]
    assert [c[c.index("--conv") + 1] for c in commands] == ["keras", "shift_add"]
    with pytest.raises(SystemExit):
        gan_study.main(["--out", str(tmp_path), "--convs", "fft"])


def test_main_skips_finished_runs_and_resumes_started_ones(tmp_path, monkeypatch):
    done = tmp_path / "seed-float32-seed0"
    done.mkdir()
    (done / "provenance.json").write_text("{}")
    (tmp_path / "fixed-float32-seed0").mkdir()  # started, not finished
    commands = []
    monkeypatch.setattr(gan_study.subprocess, "run",
                        lambda command, check: commands.append(command))
    gan_study.main(["--out", str(tmp_path), "--precisions", "float32",
                    "--seeds", "0", "1", "--steps", "400"])
    names = [c[c.index("--out") + 1].rsplit("/", 1)[1] for c in commands]
    assert names == ["seed-float32-seed1", "fixed-float32-seed0",
                     "fixed-float32-seed1"]
    assert commands[0][0] == sys.executable and "--no-jit" in commands[0]
    assert "--resume" in commands[1] and "--resume" not in commands[2]
    assert commands[2][commands[2].index("--steps") + 1] == "400"


def test_a_run_another_process_trains_is_skipped(tmp_path, monkeypatch):
    import fcntl

    commands = []
    monkeypatch.setattr(gan_study.subprocess, "run",
                        lambda command, check: commands.append(command))
    with open(tmp_path / ".seed-float32-seed0.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a second study process would
        gan_study.main(["--out", str(tmp_path), "--precisions", "float32",
                        "--recipes", "seed", "--seeds", "0", "1"])
    assert [c[c.index("--seed") + 1] for c in commands] == ["1"]


def test_bad_precision_exits_with_status_2(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        gan_study.main(["--out", str(tmp_path), "--precisions", "float64"])
    assert exit_info.value.code == 2


def test_read_runs_reads_finished_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run"):
        read_runs(tmp_path)
    run = tmp_path / "fixed-float32-seed0"
    run.mkdir()
    (run / "losses.csv").write_text("step,d_loss,g_loss\n1,0.5,0.7\n2,0.4,0.6\n")
    (run / "scores.csv").write_text(
        "step,d_loss,g_loss,coverage,frechet,seconds\n2,0.4,0.6,0.9,20,3.0\n"
    )
    (run / "provenance.json").write_text(json.dumps({"seed": 0}))
    (tmp_path / "unfinished").mkdir()
    runs = read_runs(tmp_path)
    assert list(runs) == ["fixed-float32-seed0"]
    assert runs["fixed-float32-seed0"]["provenance"] == {"seed": 0}
    assert list(runs["fixed-float32-seed0"]["scores"]["frechet"]) == [20.0]
