"""The run engine end to end: the quick start grid, resume, failures, bad input, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import TESTS, pids_gone
from doubles import FAKE_TRAINER, TINY_DATA

from regbench.results.reader import load

REQUIRED = [
    "run_id",
    "config_hash",
    "arch",
    "reg",
    "params",
    "seed",
    "dataset",
    "n_train",
    "n_val",
    "n_test",
    "epochs",
    "batch_size",
    "optimizer",
    "status",
    "error",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
    "train_loss",
    "val_loss",
    "test_accuracy",
    "total_params",
    "trainable_params",
    "non_trainable_params",
    "train_time_s",
    "eval_time_s",
    "total_time_s",
    "images_per_s",
    "epochs_to_target",
    "seconds_to_target",
    "python_version",
    "tf_version",
    "keras_version",
    "backend",
    "device",
    "host",
    "git_revision",
    "started_at",
    "ended_at",
]
LAB = ["--arch", "model1,model2,model3", "--reg", "none,l2,dropout,batchnorm"]
FAKE = [*FAKE_TRAINER, *TINY_DATA]


@pytest.mark.slow  # real training, over 5 s of the fast tier
def test_a_real_grid_records_every_column_then_resume_skips_it(cli, tmp_path):
    """The fast tier's real training: two model1 cells on digits, one epoch, in this process."""
    out = tmp_path / "small"
    command = ["--arch", "model1", "--reg", "none,batchnorm", "--dataset", "digits"]
    command += ["--epochs", "1", "--experiment", str(out), "--executor", "inprocess"]
    command += ["--target", "val_accuracy=0.0"]
    result = cli("run", *command)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "regbench leaderboard" in result.stdout
    runs = pd.read_csv(out / "runs.csv")
    assert set(REQUIRED) <= set(runs.columns)
    assert len(runs) == 2 and (runs["status"] == "ok").all()
    assert (runs["n_train"] == 1283).all() and (runs["n_val"] == 257).all()
    assert (runs["epochs_to_target"] == 1).all()
    assert (runs["seconds_to_target"] <= runs["train_time_s"]).all()
    bn = runs[runs["reg"] == "batchnorm"].iloc[0]
    assert (bn["total_params"], bn["non_trainable_params"]) == (53_322, 2_176)
    epochs = pd.read_csv(out / "epochs.csv")
    assert list(epochs.columns) == ["run_id", "epoch", "split", "metric", "value", "elapsed_s"]
    assert len(epochs) == 2 * 2 * 3  # runs x splits x (loss, accuracy, crossentropy)
    assert all((out / "models" / f"{r}.keras").exists() for r in runs["run_id"])
    assert (runs["pipeline"] == "arrays").all()  # the default (benchmarks/RESULTS.md 1e)

    again = cli("run", *command)
    assert again.returncode == 0
    assert "2 run(s) already done" in again.stdout
    assert len(load(out).runs) == 2


@pytest.mark.slow
def test_quickstart_grid_then_resume_skips_everything(cli, tmp_path):
    out = tmp_path / "quick"
    command = [*LAB, "--dataset", "digits", "--epochs", "1", "--experiment", str(out)]
    command += ["--target", "val_accuracy=0.0"]
    result = cli("run", *command)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "regbench leaderboard" in result.stdout
    runs = pd.read_csv(out / "runs.csv")
    assert set(REQUIRED) <= set(runs.columns)
    assert len(runs) == 12 and (runs["status"] == "ok").all()
    assert set(zip(runs["arch"], runs["reg"], strict=True)) == {
        (a, r)
        for a in ("model1", "model2", "model3")
        for r in ("none", "l2", "dropout", "batchnorm")
    }
    assert (runs["n_train"] == 1283).all() and (runs["n_val"] == 257).all()
    assert (runs["n_test"] == 257).all()
    assert runs["keras_version"].notna().all() and (runs["backend"] == "tensorflow").all()
    assert (runs["epochs_to_target"] == 1).all()
    assert (runs["seconds_to_target"] <= runs["train_time_s"]).all()
    bn = runs[(runs["arch"] == "model3") & (runs["reg"] == "batchnorm")].iloc[0]
    assert (bn["total_params"], bn["non_trainable_params"]) == (1_122_086, 328)
    assert json.loads(runs[runs["reg"] == "dropout"]["params"].iloc[0]) == {"rate": 0.1}
    epochs = pd.read_csv(out / "epochs.csv")
    assert list(epochs.columns) == ["run_id", "epoch", "split", "metric", "value", "elapsed_s"]
    assert len(epochs) == 12 * 2 * 3
    assert all((out / "models" / f"{r}.keras").exists() for r in runs["run_id"])

    again = cli("run", *command)
    assert again.returncode == 0
    assert "12 run(s) already done" in again.stdout
    assert len(load(out).runs) == 12


def _wait_for_rows(path, count, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(pd.read_csv(path)) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the grid made no progress")


def _start(args, env, tmp_path):
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    full_env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "regbench", "run", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_interrupted_grid_loses_nothing_and_resumes(cli, tmp_path, how):
    out, log = tmp_path / "grid", tmp_path / "ran.log"
    args = [*LAB, *FAKE, "--seeds", "2", "--experiment", str(out), "--workers", "2"]
    env = {"FAKE_SLEEP": "0.3", "FAKE_LOG": str(log)}
    proc = _start(args, env, tmp_path)
    _wait_for_rows(out / "runs.csv", 4, proc)
    if how == "kill -9":
        proc.kill()
    else:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out_err = proc.communicate(timeout=60)
    if how == "ctrl-c":
        assert proc.returncode == 130, out_err
    workers = {int(line.split()[1]) for line in log.read_text().splitlines()}
    assert pids_gone(workers), "a worker outlived the scheduler"

    kept = load(out).runs
    assert kept["run_id"].is_unique and len(kept) >= 4 and (kept["status"] == "ok").all()
    finished_before = set(kept["run_id"])

    resumed = cli("run", *args, env=env)
    assert resumed.returncode == 0, resumed.stderr
    runs = load(out).runs
    assert len(runs) == 24 and runs["run_id"].is_unique
    reran = [line.split()[0] for line in log.read_text().splitlines()]
    assert not finished_before & set(reran[len(reran) - (24 - len(finished_before)) :])


def test_a_dead_worker_is_replaced_and_its_run_recorded_failed(cli, tmp_path):
    out = tmp_path / "dies"
    result = cli("run", *LAB, *FAKE, "--experiment", str(out), env={"FAKE_DIE_ON": "model2/l2"})
    assert result.returncode == 1
    runs = load(out).runs
    assert len(runs) == 12
    dead = runs[(runs["arch"] == "model2") & (runs["reg"] == "l2")].iloc[0]
    assert dead["status"] == "failed" and "SIGKILL" in dead["error"]
    assert (runs.drop(dead.name)["status"] == "ok").all()
    assert "model2-l2" in result.stdout and "failed" in result.stdout


def test_a_worker_killed_mid_message_costs_only_its_run(cli, tmp_path):
    out = tmp_path / "cut"
    env = {"FAKE_DIE_MID_MESSAGE_ON": "model2/l2"}
    result = cli("run", *LAB, *FAKE, "--experiment", str(out), env=env)
    assert result.returncode == 1, result.stderr
    runs = load(out).runs.set_index("run_id")
    dead = runs[(runs["arch"] == "model2") & (runs["reg"] == "l2")].iloc[0]
    assert dead["status"] == "failed" and "SIGKILL" in dead["error"]
    assert len(runs) == 12 and (runs.drop(dead.name)["status"] == "ok").all()


@pytest.mark.slow
def test_workers_are_pinned_one_device_each(cli, tmp_path):
    out = tmp_path / "pinned"
    result = cli(
        "run",
        *LAB,
        *FAKE,
        "--experiment",
        str(out),
        "--devices",
        "0,1",
        "--per-device",
        "2",
        env={"FAKE_SLEEP": "0.2", "CUDA_VISIBLE_DEVICES": "0,1"},  # two GPUs, as far as it knows
    )
    assert result.returncode == 0, result.stderr
    runs = load(out).runs
    assert set(runs["worker"]) <= {"gpu0.0", "gpu0.1", "gpu1.0", "gpu1.1"}
    assert len(set(runs["worker"])) >= 3
    for worker, device in zip(runs["worker"], runs["device"], strict=True):
        assert device == f"CUDA_VISIBLE_DEVICES={worker[3]}"


def test_most_expensive_cells_start_first(cli, tmp_path):
    log = tmp_path / "order.log"
    result = cli(
        "run",
        *LAB,
        *FAKE,
        "--experiment",
        str(tmp_path / "o"),
        "--executor",
        "inprocess",
        env={"FAKE_LOG": str(log)},
    )
    assert result.returncode == 0, result.stderr
    order = [line.split()[0].split("-")[0] for line in log.read_text().splitlines()]
    # multiply-accumulates per image: model3 8.9M, model1 4.1M, model2 3.0M
    assert order == ["model3"] * 4 + ["model1"] * 4 + ["model2"] * 4


def test_measured_epoch_times_rank_the_cells_once_every_cell_has_one(registry):
    from regbench.design.plan import Protocol, RunSpec, order_by_cost

    specs = [
        RunSpec(arch=a, reg="none", params={}, seed=0, protocol=Protocol(epochs=e))
        for a, e in (("model1", 10), ("model2", 10), ("model3", 2))
    ]
    measured = {("model1", "none"): 1.0, ("model2", "none"): 3.0, ("model3", "none"): 4.0}
    assert [s.arch for s in order_by_cost(specs, registry, measured)] == [
        "model2",
        "model1",
        "model3",
    ]
    partial = {("model1", "none"): 1.0}
    assert [s.arch for s in order_by_cost(specs, registry, partial)] == [
        "model1",
        "model2",
        "model3",
    ]  # MACs x epochs: 41M, 30M, 18M


@pytest.mark.slow  # real training, over 5 s of the fast tier
def test_divergence_is_recorded_and_the_grid_goes_on(cli, tmp_path):
    out = tmp_path / "nan"
    result = cli(
        "run",
        "--arch",
        "model1",
        "--reg",
        "none,batchnorm",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--learning-rate",
        "1e6",
        "--experiment",
        str(out),
        "--executor",
        "inprocess",
    )
    assert result.returncode == 1
    runs = load(out).runs.set_index("reg")
    assert runs.loc["none", "status"] == "diverged"
    assert "at epoch 1" in runs.loc["none", "error"]  # crossentropy over 1.5 ln 10, or NaN
    assert runs.loc["none", "epochs_run"] == 1
    assert runs.loc["batchnorm", "status"] in ("ok", "diverged")


@pytest.mark.slow  # real training, over 5 s of the fast tier
def test_same_seed_gives_identical_metrics(cli, tmp_path):
    rows = []
    for name in ("a", "b"):
        result = cli(
            "run",
            "--arch",
            "model1",
            "--reg",
            "dropout",
            "--dataset",
            "digits",
            "--dataset-option",
            "native=true",  # 8x8 images: fast
            "--epochs",
            "1",
            "--experiment",
            str(tmp_path / name),
            "--executor",
            "inprocess",
        )
        assert result.returncode == 0, result.stderr
        rows.append(load(tmp_path / name).runs.iloc[0])
    for column in ("train_loss", "val_loss", "val_accuracy", "train_accuracy"):
        assert rows[0][column] == rows[1][column]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "model7"], "unknown architecture 'model7'; choose from: model1"),
        (["--reg", "dropuot"], "unknown regularizer 'dropuot'"),
        (["--dataset", "mnist"], "unknown dataset 'mnist'; choose from: cifar10"),
        (["--param", "dropout.rate"], "params expects key=value"),
        (["--param", "rate=0.2"], "params expects reg.name=value"),
        (["--param", "dropout.rate=2"], "dropout.rate=2 is outside its bounds [0, 0.9]"),
        (["--param", "dropout.size=2"], "has no hyperparameter 'size'"),
        (["--epochs", "0"], "epochs must be between 1 and 100,000; got 0"),
        (["--config", "/nonexistent/exp.toml"], "cannot read config /nonexistent/exp.toml"),
        (["--seeds", "two"], "seeds must be a whole number"),
        (["--optimizer", "sgdd"], "optimizer must be one of sgd, adam"),
        (["--seeds=-1,2"], "each seed must be between 0 and"),
        (["--seeds", ","], "seeds chose no seed"),
        (["--target", "val_acc=0.5"], "target: metric 'val_acc' is not recorded"),
        (["--workers", "0"], "workers must be between 1 and"),
        (["--max-runs-per-worker", "-2"], "max_runs_per_worker must be between 1 and"),
        (["--dataset", "synthetic", "--dataset-option", "noise=abc"], "noise='abc' must be in"),
        (
            [
                "--dataset",
                "synthetic",
                "--dataset-option",
                "height=4",
                "--dataset-option",
                "width=4",
                "--arch",
                "model1",
            ],
            "model1 needs a larger input than 4x4x3",
        ),
        (["--dataset-option", "colour=1"], "dataset 'digits' has no option 'colour'"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(cli, tmp_path, args, message):
    out = tmp_path / "never"
    base = ["--dataset", "digits", "--epochs", "1", "--experiment", str(out)]
    result = cli("run", *base, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()


def test_bad_config_and_unwritable_folder(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [unclosed\n")
    result = cli("run", "--config", str(bad), "--experiment", str(tmp_path / "x"))
    assert result.returncode == 2 and "is not valid TOML" in result.stderr
    typed = tmp_path / "typed.toml"
    typed.write_text('epochs = "ten"\n')
    result = cli("run", "--config", str(typed), "--experiment", str(tmp_path / "x"))
    assert result.returncode == 2 and "epochs must be a whole number; got 'ten'" in result.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("epoch = 3\n")
    result = cli("run", "--config", str(unknown), "--experiment", str(tmp_path / "x"))
    assert result.returncode == 2 and "unknown key 'epoch'" in result.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli(
        "run",
        "--arch",
        "model1",
        "--reg",
        "none",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--experiment",
        str(blocker / "sub"),
    )
    assert result.returncode == 2 and "cannot write to the experiment folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_file_with_flags_on_top_and_plan_counts(cli, tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text(
        'name = "mine"\narch = ["model1", "model2"]\nreg = "dropout"\n'
        'dataset = "synthetic"\nseeds = [3, 4]\nepochs = 4\n'
        "[params.dropout]\nrate = 0.3\n[dataset_options]\nsize = 70\n"
    )
    out = tmp_path / "exp"
    result = cli(
        "run",
        "--config",
        str(config),
        "--epochs",
        "2",
        "--experiment",
        str(out),
        "--trainer",
        "fake_trainer:train",
        "--param",
        "dropout.rate=0.25",
    )
    assert result.returncode == 0, result.stderr
    runs = load(out).runs
    assert sorted(runs["seed"]) == [3, 3, 4, 4] and (runs["epochs"] == 2).all()
    assert all(p == {"rate": 0.25} for p in runs["params"])
    plan = cli(
        "plan",
        "--config",
        str(config),
        "--epochs",
        "2",
        "--experiment",
        str(out),
        "--param",
        "dropout.rate=0.25",
        "--seeds",
        "3,4,5",
    )
    assert plan.returncode == 0, plan.stderr
    assert "done 4, pending 2, failed 0" in plan.stdout


def test_offline_cifar_without_data_is_one_clear_line(cli, tmp_path):
    empty = tmp_path / "home"
    empty.mkdir()
    result = cli(
        "run",
        "--arch",
        "model1",
        "--reg",
        "none",
        "--epochs",
        "1",
        "--experiment",
        str(tmp_path / "c"),
        "--cache-dir",
        str(tmp_path / "cache"),
        env={"HOME": str(empty), "KERAS_HOME": str(empty / ".keras")},
    )
    assert result.returncode == 2
    assert "--data-dir" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_speed_options_are_used_and_recorded(cli, tmp_path):
    out = tmp_path / "fast"
    result = cli(
        "run",
        "--arch",
        "model1",
        "--reg",
        "batchnorm",
        "--dataset",
        "synthetic",
        "--dataset-option",
        "size=70",  # two steps of 64: the options act on any data
        "--epochs",
        "1",
        "--experiment",
        str(out),
        "--executor",
        "inprocess",
        "--precision",
        "mixed_bfloat16",
        "--jit-compile",
        "off",
        "--steps-per-execution",
        "4",
        "--pipeline",
        "tf.data",
    )
    assert result.returncode == 0, result.stderr
    row = load(out).runs.iloc[0]
    assert (row["precision"], row["jit_compile"], row["steps_per_execution"], row["pipeline"]) == (
        "mixed_bfloat16",
        "off",
        4,
        "tf.data",
    )
    assert row["status"] == "ok" and row["total_params"] == 53_322


@pytest.mark.slow
def test_workers_are_recycled_after_max_runs(cli, tmp_path):
    log = tmp_path / "pids.log"
    result = cli(
        "run",
        *LAB,
        *FAKE,
        "--experiment",
        str(tmp_path / "r"),
        "--workers",
        "1",
        "--max-runs-per-worker",
        "3",
        env={"FAKE_LOG": str(log)},
    )
    assert result.returncode == 0, result.stderr
    pids = [line.split()[1] for line in log.read_text().splitlines()]
    assert len(pids) == 12 and len(set(pids)) == 4  # a fresh process every 3 runs
    assert all(pids[i] == pids[i - i % 3] for i in range(12))
    assert len(load(tmp_path / "r").runs) == 12
