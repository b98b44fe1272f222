"""`regbench export DIR --to mlflow`, read back from a local MLflow tracking store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from regbench.cli import main
from regbench.errors import RegbenchError
from regbench.results import mlflow_export
from regbench.results.store import Store

mlflow = pytest.importorskip(
    "mlflow", reason="MLflow is an optional extra: pip install 'regbench[mlflow]'"
)


def experiment(folder: Path) -> Path:
    store = Store(folder)
    model = folder / "models" / "model1-dropout-s0-aaaa.keras"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"not really a model, but a file to carry")
    for seed, status in ((0, "ok"), (1, "diverged")):
        run_id = f"model1-dropout-s{seed}-aaaa"
        store.record_run(
            {
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
                "status": status,
                "error": None if status == "ok" else "loss became nan at epoch 2",
                "train_accuracy": 0.9 if status == "ok" else None,
                "val_accuracy": 0.7 if status == "ok" else None,
                "test_accuracy": 0.68 if status == "ok" else None,
                "model_path": str(model) if status == "ok" else None,
                "started_at": "2026-01-01T00:00:00+00:00",
                "ended_at": "2026-01-01T00:01:00+00:00",
            },
            [
                {"epoch": e, "split": s, "metric": "accuracy", "value": v, "elapsed_s": 10.0 * e}
                for e in (1, 2, 3)
                for s, v in (("train", 0.2 * e), ("val", 0.2 * e + 0.1))
            ],
        )
    store.close()
    return folder


def test_runs_params_epoch_metrics_and_the_model_file(tmp_path):
    folder = experiment(tmp_path / "exp")
    uri = (tmp_path / "mlruns").as_uri()
    assert main(["export", str(folder), "--to", "mlflow", "--tracking-uri", uri]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exp")
    runs = {r.data.tags["regbench.run_id"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"model1-dropout-s0-aaaa", "model1-dropout-s1-aaaa"}
    ok = runs["model1-dropout-s0-aaaa"]
    assert ok.info.status == "FINISHED" and runs["model1-dropout-s1-aaaa"].info.status == "FAILED"
    assert ok.data.params["arch"] == "model1" and ok.data.params["dropout.rate"] == "0.3"
    assert ok.data.params["seed"] == "0" and ok.data.params["dataset"] == "digits"
    assert ok.data.metrics["test_accuracy"] == pytest.approx(0.68)
    history = client.get_metric_history(ok.info.run_id, "val_accuracy")
    assert [(m.step, round(m.value, 6)) for m in history] == [(1, 0.3), (2, 0.5), (3, 0.7)]
    assert [m.step for m in client.get_metric_history(ok.info.run_id, "train_accuracy_running")]
    artifacts = [a.path for a in client.list_artifacts(ok.info.run_id, "model")]
    assert artifacts == ["model/model1-dropout-s0-aaaa.keras"]
    failed = runs["model1-dropout-s1-aaaa"]
    assert failed.data.tags["regbench.error"] == "loss became nan at epoch 2"


def test_exporting_again_adds_only_new_runs(tmp_path):
    folder = experiment(tmp_path / "exp")
    uri = (tmp_path / "mlruns").as_uri()
    first = mlflow_export.export(folder, uri)
    again = mlflow_export.export(folder, uri)
    assert (first.added, first.already_there) == (2, 0)
    assert (again.added, again.already_there) == (0, 2)


def test_without_mlflow_the_export_is_one_clear_line(tmp_path, monkeypatch):
    folder = experiment(tmp_path / "exp")
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(RegbenchError, match=r"pip install 'regbench\[mlflow\]'"):
        mlflow_export.export(folder, (tmp_path / "mlruns").as_uri())


def test_a_plain_folder_is_a_file_store_and_a_refusal_is_one_line(tmp_path, capsys):
    folder = experiment(tmp_path / "exp")
    assert mlflow_export.export(folder, str(tmp_path / "mlruns")).added == 2
    assert (tmp_path / "mlruns").is_dir()
    bad = main(["export", str(folder), "--tracking-uri", "nosuchscheme://x"])
    err = capsys.readouterr().err
    assert bad == 2 and len(err.strip().splitlines()) == 1 and "--tracking-uri" in err


def test_runs_are_tagged_with_their_cell_and_whole_protocol(tmp_path):
    """Grouping by `regbench.protocol` or `regbench.cell` never pools two protocols, even for
    rows without a cell hash."""
    store = Store(tmp_path / "exp")
    for schedule in ("constant", "cosine"):
        for seed in (0, 1):
            run_id = f"model1-dropout-s{seed}-{schedule}"
            store.record_run(
                {
                    "run_id": run_id,
                    "config_hash": run_id,
                    "arch": "model1",
                    "reg": "dropout",
                    "params": {"rate": 0.3},
                    "seed": seed,
                    "dataset": "digits",
                    "epochs": 3,
                    "batch_size": 64,
                    "lr_schedule": schedule,
                    "status": "ok",
                },
                [],
            )
    store.close()
    uri = (tmp_path / "mlruns").as_uri()
    mlflow_export.export(tmp_path / "exp", uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exp")
    tags = {
        r.data.tags["regbench.run_id"]: r.data.tags for r in client.search_runs([exp.experiment_id])
    }
    cells = {t["regbench.cell"] for t in tags.values()}
    labels = {t["regbench.protocol"] for t in tags.values()}
    assert len(cells) == 2 and len(labels) == 2
    constant = tags["model1-dropout-s0-constant"]
    assert constant["regbench.cell"] == tags["model1-dropout-s1-constant"]["regbench.cell"]
    assert "epochs=3" in constant["regbench.protocol"]
    assert "lr_schedule=constant" in constant["regbench.protocol"]
    assert tags["model1-dropout-s0-cosine"]["regbench.protocol"].count("lr_schedule=cosine") == 1
