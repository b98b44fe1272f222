"""`regbench export DIR --to mlflow`, read back from a local MLflow tracking store."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regbench.cli import main
from regbench.errors import RegbenchError
from regbench.results import mlflow_export
from regbench.results.store import Store

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("mlflow") is None,
        reason="MLflow is an optional extra: pip install 'regbench[mlflow]'",
    ),
    # one worker makes the session's empty store (conftest's mlflow_db), which takes seconds
    pytest.mark.xdist_group("mlflow"),
]


@pytest.fixture(scope="module")
def mlflow():
    """MLflow, imported by the tests that read it back rather than while collecting: a second
    of each pytest-xdist worker's start otherwise, even of the one that runs none of them."""
    import mlflow

    return mlflow


@pytest.fixture
def reader(mlflow):
    """`mlflow.search_runs` as a user calls it: the process's tracking URI set to the store."""

    def search(uri: str, name: str):
        mlflow.set_tracking_uri(uri)
        return mlflow.search_runs(experiment_names=[name])

    yield search
    mlflow.set_tracking_uri(None)


def row(seed: int, status: str = "ok", **overrides) -> dict:
    run_id = f"model1-dropout-s{seed}-aaaa"
    return {
        "run_id": run_id,
        "config_hash": run_id,
        "cell_hash": "cell",
        "stage": "grid",
        "arch": "model1",
        "reg": "dropout",
        "params": {"rate": 0.3},
        "seed": seed,
        "dataset": "digits",
        "dataset_options": {},
        "epochs": 3,
        "batch_size": 64,
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "optimizer_options": {"momentum": 0.9},
        "lr_schedule": "cosine",
        "status": status,
        "error": None if status == "ok" else "loss became nan at epoch 2",
        "train_accuracy": 0.9 if status == "ok" else None,
        "val_accuracy": 0.5 if status == "ok" else None,
        "kept_epoch": 2 if status == "ok" else None,
        "initial_loss": 2.3,
        "regbench_version": "0.2.0",
        "keras_version": "3.15.1",
        "tf_version": "2.21.0",
        "git_revision": "a76748e62666b7d6dd32d3db9b459c58dcde1edf+dirty",
        "started_at": "2026-01-01T00:00:00+00:00",
        "ended_at": "2026-01-01T00:01:00+00:00",
        **overrides,
    }


def epochs() -> list[dict]:
    return [
        {"epoch": e, "split": s, "metric": m, "value": v, "elapsed_s": 10.0 * e}
        for e in (1, 2, 3)
        for s, m, v in (("train", "accuracy", 0.2 * e), ("val", "accuracy", 0.2 * e + 0.1))
        + (("val", "ece", 0.1 / e),)  # a plugin's metric
    ]


def experiment(folder: Path, seeds=((0, "ok"), (1, "diverged")), model: bytes | None = None):
    store = Store(folder)
    for seed, status in seeds:
        path = folder / "models" / f"model1-dropout-s{seed}-aaaa.keras"
        if status == "ok":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(model or b"not really a model, but a file to carry")
        store.record_run(
            row(seed, status, model_path=f"models/{path.name}" if status == "ok" else None),
            epochs(),
        )
    store.close()
    return folder


def test_a_cell_is_a_parent_run_and_its_seeds_are_child_runs(tmp_path, mlflow_db, reader, mlflow):
    folder = experiment(tmp_path / "exp")
    uri = mlflow_db
    assert main(["export", str(folder), "--to", "mlflow", "--tracking-uri", uri]) == 0
    runs = reader(uri, "exp")
    children = runs[runs["tags.regbench.run_id"].notna()].set_index("tags.regbench.run_id")
    parents = runs[runs["tags.regbench.run_id"].isna()]
    assert len(parents) == 1 and len(children) == 2
    parent = parents.iloc[0]
    assert parent["tags.regbench.cell"] == "cell"
    assert "lr_schedule=cosine" in parent["tags.regbench.protocol"]
    assert parent["params.learning_rate"] == "0.05" and parent["params.dropout.rate"] == "0.3"
    assert set(children["tags.mlflow.parentRunId"]) == {parent["run_id"]}
    # the cell's figures on its parent, so MLflow's list sorts cells: one ok seed of two
    assert parent["metrics.val_accuracy_mean"] == pytest.approx(0.5)
    assert (parent["metrics.seeds_ok"], parent["metrics.seeds_planned"]) == (1, 2)
    assert parent["metrics.seeds_lost"] == 1 and "metrics.val_accuracy_ci95" not in parent
    ok, failed = children.loc["model1-dropout-s0-aaaa"], children.loc["model1-dropout-s1-aaaa"]
    assert ok["status"] == "FINISHED" and failed["status"] == "FAILED"
    assert failed["tags.regbench.error"] == "loss became nan at epoch 2"
    assert (ok["params.seed"], ok["params.stage"], ok["params.arch"]) == ("0", "grid", "model1")
    assert (ok["params.learning_rate"], ok["params.lr_schedule"]) == ("0.05", "cosine")
    assert ok["params.optimizer.momentum"] == "0.9"
    assert ok["tags.regbench.version"] == "0.2.0" and ok["tags.regbench.keras_version"] == "3.15.1"
    assert ok["tags.regbench.tf_version"] == "2.21.0"
    assert ok["tags.mlflow.source.git.commit"] == "a76748e62666b7d6dd32d3db9b459c58dcde1edf"
    assert ok["tags.regbench.git_revision"].endswith("+dirty")
    assert ok["metrics.kept_epoch"] == 2 and ok["metrics.initial_loss"] == pytest.approx(2.3)
    # the run's figures are the row's, its kept epoch's (2), not the last epoch trained (3)
    assert ok["metrics.val_accuracy"] == pytest.approx(0.5)
    assert ok["metrics.train_accuracy"] == pytest.approx(0.9)
    assert "metrics.test_accuracy" not in runs or runs["metrics.test_accuracy"].isna().all()
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (figure,) = client.get_metric_history(ok["run_id"], "val_accuracy")
    assert (figure.step, figure.value) == (2, pytest.approx(0.5))
    history = client.get_metric_history(ok["run_id"], "epoch/val_accuracy")
    assert [(m.step, round(m.value, 6)) for m in history] == [(1, 0.3), (2, 0.5), (3, 0.7)]
    assert [m.step for m in client.get_metric_history(ok["run_id"], "epoch/val_ece")] == [1, 2, 3]
    assert len(client.get_metric_history(ok["run_id"], "epoch/train_accuracy_running")) == 3


def test_a_model_keras_cannot_open_is_kept_as_a_file_with_the_reason(tmp_path, mlflow_db, mlflow):
    folder = experiment(tmp_path / "exp")
    uri = mlflow_db
    mlflow_export.export(folder, uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (ok,) = client.search_runs(
        [client.get_experiment_by_name("exp").experiment_id],
        "tags.`regbench.run_id` = 'model1-dropout-s0-aaaa'",
    )
    artifacts = [a.path for a in client.list_artifacts(ok.info.run_id, "model")]
    assert artifacts == ["model/model1-dropout-s0-aaaa.keras"]
    assert "cannot be loaded" in ok.data.tags["regbench.model_error"]
    assert (tmp_path / "mlartifacts" / "exp").is_dir()  # beside the database, not in the cwd


def test_exporting_again_adds_only_new_runs_under_the_same_parent(tmp_path, mlflow_db, reader):
    folder = experiment(tmp_path / "exp")
    uri = mlflow_db
    first = mlflow_export.export(folder, uri)
    again = mlflow_export.export(folder, uri)
    assert (first.added, first.already_there) == (2, 0)
    assert (again.added, again.already_there) == (0, 2)
    later = experiment(tmp_path / "later" / "exp", seeds=((0, "ok"), (1, "diverged"), (2, "ok")))
    third = mlflow_export.export(later, uri)  # the same folder, a seed later
    assert (third.added, third.already_there) == (1, 2)
    runs = reader(uri, "exp")
    assert len(runs) == 4 and runs["tags.mlflow.parentRunId"].dropna().nunique() == 1
    parent = runs[runs["tags.regbench.run_id"].isna()].iloc[0]  # its figures: the later ones
    assert (parent["metrics.seeds_ok"], parent["metrics.seeds_planned"]) == (2, 3)
    assert parent["metrics.val_accuracy_ci95"] == 0.0  # two ok seeds, both 0.5


@pytest.mark.slow
def test_a_folder_means_a_sqlite_store_in_it_read_back_as_is(tmp_path, reader, capsys):
    """MLflow 3 opens file stores only with MLFLOW_ALLOW_FILE_STORE=true; a folder gets a
    SQLite store that any reader opens without it. Its file URI names the same store (checked
    without making a second one: MLflow takes seconds to create a database)."""
    folder = experiment(tmp_path / "exp")
    target = tmp_path / "mlruns"
    store = f"sqlite:///{target / 'mlflow.db'}"
    assert mlflow_export.tracking_store(target.as_uri()) == (store, target / "mlartifacts")
    assert main(["export", str(folder), "--to", "mlflow", "--tracking-uri", str(target)]) == 0
    said = " ".join(capsys.readouterr().out.split())  # never silently: the line says where
    assert f"{target} is written as the SQLite store {store}" in said
    done = mlflow_export.export(folder, str(target))
    assert done.already_there == 2 and "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    assert done.tracking_uri == store
    assert len(reader(done.tracking_uri, "exp")) == 3
    assert not any(target.glob("*/meta.yaml"))


def test_an_old_file_store_is_one_clear_line(tmp_path, monkeypatch):
    folder = experiment(tmp_path / "exp")
    old = tmp_path / "mlruns"
    (old / "0").mkdir(parents=True)
    (old / "0" / "meta.yaml").write_text("name: Default\n")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(RegbenchError, match="MLFLOW_ALLOW_FILE_STORE=true.*migrate-filestore"):
        mlflow_export.export(folder, str(old))


def test_without_mlflow_the_export_is_one_clear_line(tmp_path, monkeypatch):
    folder = experiment(tmp_path / "exp")
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(RegbenchError, match=r"pip install 'regbench\[mlflow\]'"):
        mlflow_export.export(folder, f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_refusal_is_one_line_and_the_callers_tracking_uri_is_kept(tmp_path, capsys, mlflow):
    folder = experiment(tmp_path / "exp")
    bad = main(["export", str(folder), "--tracking-uri", "nosuchscheme://x"])
    err = capsys.readouterr().err
    assert bad == 2 and len(err.strip().splitlines()) == 1 and "--tracking-uri" in err
    assert not mlflow.is_tracking_uri_set()


def test_runs_are_tagged_with_their_cell_and_whole_protocol(tmp_path, mlflow_db, mlflow):
    """Grouping by `regbench.protocol` or `regbench.cell` never pools two protocols, even for
    rows without a cell hash."""
    store = Store(tmp_path / "exp")
    for schedule in ("constant", "cosine"):
        for seed in (0, 1):
            store.record_run(
                row(seed, run_id=f"s{seed}-{schedule}", cell_hash=None, lr_schedule=schedule),
                [],
            )
    store.close()
    uri = mlflow_db
    mlflow_export.export(tmp_path / "exp", uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exp")
    runs = client.search_runs([exp.experiment_id])
    tags = {r.data.tags.get("regbench.run_id", r.info.run_id): r.data.tags for r in runs}
    parents = [t for t in tags.values() if "regbench.run_id" not in t]
    assert len(parents) == 2 and len({t["regbench.protocol"] for t in parents}) == 2
    constant = tags["s0-constant"]
    assert constant["regbench.cell"] == tags["s1-constant"]["regbench.cell"]
    assert constant["regbench.cell"] != tags["s0-cosine"]["regbench.cell"]
    assert "epochs=3" in constant["regbench.protocol"]
    assert "lr_schedule=constant" in constant["regbench.protocol"]
    assert tags["s0-cosine"]["regbench.protocol"].count("lr_schedule=cosine") == 1


@given(split=st.sampled_from(["train", "val", "test"]), metric=st.text(min_size=1))
def test_any_epoch_metric_name_is_a_valid_mlflow_key(split, metric):
    from mlflow.utils.validation import _validate_metric_name

    key = mlflow_export._epoch_key(split, metric)
    _validate_metric_name(key)
    assert key.startswith(f"epoch/{split}_") and key.endswith("_running") == (split == "train")
    assert key not in mlflow_export.RUN_METRICS  # a curve never reads as a run's figure


@pytest.mark.slow
def test_a_model_is_logged_with_the_keras_flavour(tmp_path, mlflow_db, mlflow):
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    saved = tmp_path / "m.keras"
    model.save(saved)
    folder = experiment(tmp_path / "exp", seeds=((0, "ok"),), model=saved.read_bytes())
    uri = mlflow_db
    mlflow_export.export(folder, uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("exp").experiment_id], "tags.`regbench.run_id` != ''"
    )
    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.keras.load_model(f"runs:/{run.info.run_id}/model")
        pyfunc = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    import numpy as np

    images = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    assert pyfunc.predict(images).shape == (2, 3)
    assert pyfunc.metadata.get_input_schema().inputs[0].shape == (-1, 8, 8, 1)
    assert "regbench.model_error" not in run.data.tags


def test_a_user_who_allows_file_stores_gets_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    folder = experiment(tmp_path / "exp")
    target = (tmp_path / "mlruns").as_uri()
    assert mlflow_export.export(folder, target).tracking_uri == target
    assert any((tmp_path / "mlruns").glob("*/meta.yaml"))
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


KILLED_MID_EXPORT = """
import os, signal, sys
from regbench.results import mlflow_export

def killed(*args, **kwargs):  # the export dies as kill -9 makes it: between two runs' writes
    os.kill(os.getpid(), signal.SIGKILL)

mlflow_export._log_model = killed
mlflow_export.export(sys.argv[1], sys.argv[2])
"""


@pytest.mark.slow
def test_a_run_left_running_by_a_killed_export_is_redone(tmp_path, mlflow_db, reader):
    """Probe 7: kill -9 mid-export left a RUNNING run without its model, which the next
    export counted as already there."""
    import subprocess

    folder = experiment(tmp_path / "exp")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_EXPORT, str(folder), mlflow_db], timeout=300
    )
    assert killed.returncode == -9
    cut = reader(mlflow_db, "exp")
    assert "RUNNING" in set(cut.loc[cut["tags.regbench.run_id"].notna(), "status"])
    done = mlflow_export.export(folder, mlflow_db)
    assert done.redone == 1 and (done.added, done.already_there) == (2, 0)
    runs = reader(mlflow_db, "exp")
    children = runs[runs["tags.regbench.run_id"].notna()]
    assert sorted(children["status"]) == ["FAILED", "FINISHED"]
    assert len(children) == 2 and children["tags.regbench.run_id"].is_unique
    ok = children[children["status"] == "FINISHED"].iloc[0]
    assert ok["metrics.val_accuracy"] == pytest.approx(0.5)
    assert runs["tags.mlflow.parentRunId"].dropna().nunique() == 1


def test_a_run_a_live_export_is_writing_is_left_to_it(tmp_path, mlflow_db, mlflow):
    """Only an exporter that is gone leaves a run to redo: one still at work (here a live
    process on this host) keeps it, and the run counts as there."""
    import subprocess

    folder = experiment(tmp_path / "exp", seeds=((1, "diverged"),))
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_db)
    experiment_id = client.create_experiment("exp")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            tags = {
                mlflow_export.RUN_TAG: "model1-dropout-s1-aaaa",
                mlflow_export.EXPORTER_TAG: f"{os.uname().nodename}:{other.pid}",
            }
            client.create_run(experiment_id, tags=tags)
            done = mlflow_export.export(folder, mlflow_db)
        finally:
            other.kill()
    assert (done.added, done.already_there, done.redone) == (0, 1, 0)
