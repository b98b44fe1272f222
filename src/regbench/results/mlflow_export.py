"""Copy an experiment folder's runs into MLflow: params, per-epoch metrics, the model file.

MLflow is an optional extra (`pip install 'regbench[mlflow]'`, mlflow or mlflow-skinny). Each
regbench run becomes one MLflow run tagged with its regbench run id, so exporting again adds
only the runs that are new since the last export. Each run is also tagged with its cell and
its whole protocol (`regbench.cell`, `regbench.protocol`): grouping by either never pools runs
of different protocols.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from regbench.engine.plan import PROTOCOL_COLUMNS
from regbench.errors import RegbenchError
from regbench.results import protocols
from regbench.results.lookup import model_file
from regbench.results.reader import load

RUN_TAG = "regbench.run_id"
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
PARAM_COLUMNS = ("arch", "reg", "seed", "stage", *PROTOCOL_COLUMNS)
FINAL_METRICS = (  # per-run figures; validation is the last point of its per-epoch series
    "train_accuracy",
    "train_loss",
    "test_accuracy",
    "test_loss",
    "epochs_run",
    "train_time_s",
    "images_per_s",
    "total_params",
    "epochs_to_target",
    "seconds_to_target",
)
EPOCH_KEYS = {  # (split, metric) of the epochs table -> MLflow metric key
    ("train", "accuracy"): "train_accuracy_running",
    ("train", "loss"): "train_loss_running",
    ("val", "accuracy"): "val_accuracy",
    ("val", "loss"): "val_loss",
}


@dataclass(frozen=True)
class Exported:
    experiment_id: str
    tracking_uri: str
    added: int
    already_there: int


def export(
    folder: str | Path, tracking_uri: str | None = None, name: str | None = None
) -> Exported:
    """Log every run of `folder` not yet in the MLflow experiment `name` (default: the
    folder's name) at `tracking_uri` (default: MLflow's own default)."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise RegbenchError(
            "exporting to MLflow needs MLflow: pip install 'regbench[mlflow]' (or mlflow-skinny)"
        ) from None
    folder = Path(folder)
    runs, epochs = load(folder)
    name = name or folder.resolve().name
    try:
        with _file_store_allowed(tracking_uri):
            client = MlflowClient(tracking_uri=tracking_uri)
            experiment = client.get_experiment_by_name(name)
            experiment_id = (
                experiment.experiment_id if experiment else client.create_experiment(name)
            )
            done = _exported_ids(client, experiment_id)
            added = 0
            for row in runs.to_dict(orient="records"):
                if row["run_id"] in done:
                    continue
                mine = epochs[epochs["run_id"] == row["run_id"]]
                _export_run(client, experiment_id, row, mine, folder)
                added += 1
    except ImportError as exc:  # a database store without SQLAlchemy (mlflow-skinny)
        raise RegbenchError(
            f"MLflow's tracking store {tracking_uri or 'default'} needs {exc.name or 'a module'} "
            "that is not installed; install the full `mlflow`, or pass "
            "--tracking-uri file:./mlruns for a local file store"
        ) from None
    except MlflowException as exc:
        message = " ".join(str(exc.message).split())[:200]
        raise RegbenchError(
            f"MLflow refused the export to {tracking_uri or 'its default store'}: {message}; "
            "choose a store with --tracking-uri (e.g. file:./mlruns or http://HOST:5000)"
        ) from None
    return Exported(experiment_id, client.tracking_uri, added, len(runs) - added)


@contextmanager
def _file_store_allowed(uri: str | None) -> Iterator[None]:
    """MLflow 3 keeps its file store behind MLFLOW_ALLOW_FILE_STORE; a user who names a local
    folder (a file: URI or a plain path) asks for exactly that store."""
    local = uri is not None and (uri.startswith("file:") or "://" not in uri)
    saved = os.environ.get(ALLOW_FILE_STORE)
    if local:
        os.environ[ALLOW_FILE_STORE] = "true"
    try:
        yield
    finally:
        if local and saved is None:
            del os.environ[ALLOW_FILE_STORE]
        elif local and saved is not None:
            os.environ[ALLOW_FILE_STORE] = saved


def _exported_ids(client: Any, experiment_id: str) -> set[str]:
    ids, token = set(), None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        ids |= {r.data.tags.get(RUN_TAG) for r in page}
        token = page.token
        if not token:
            return ids


def _export_run(
    client: Any, experiment_id: str, row: dict[str, Any], epochs: pd.DataFrame, folder: Path
) -> None:
    """One run, complete or not at all: a run that fails half-way is deleted again."""
    from mlflow.entities import Metric, Param

    start = _millis(row.get("started_at"))
    protocol = {c: protocols.text(c, row.get(c)) for c in PROTOCOL_COLUMNS}
    run = client.create_run(
        experiment_id,
        start_time=start,
        tags={
            RUN_TAG: row["run_id"],
            "mlflow.runName": row["run_id"],
            "regbench.cell": str(row.get("cell_hash") or _cell(row, protocol)),
            "regbench.protocol": protocols.label(protocol, PROTOCOL_COLUMNS, always=()),
            "regbench.status": str(row.get("status")),
            **({"regbench.error": str(row["error"])[:5000]} if _present(row.get("error")) else {}),
        },
    )
    run_id = run.info.run_id
    try:
        params = {c: row.get(c) for c in PARAM_COLUMNS if _present(row.get(c))}
        params |= {f"{row['reg']}.{k}": v for k, v in (row.get("params") or {}).items()}
        metrics = [
            Metric(key, float(row[key]), start or 0, 0)
            for key in FINAL_METRICS
            if _present(row.get(key))
        ]
        for e in epochs.itertuples():
            key = EPOCH_KEYS.get((e.split, e.metric))
            if key and _present(e.value):
                elapsed = 0 if not _present(e.elapsed_s) else e.elapsed_s
                metrics.append(
                    Metric(key, float(e.value), (start or 0) + int(elapsed * 1000), e.epoch)
                )
        client.log_batch(
            run_id,
            params=[Param(k, _text(v)) for k, v in params.items()],
            metrics=metrics,
        )
        path = model_file(folder, row.get("model_path"))
        if path is not None and path.is_file():
            client.log_artifact(run_id, str(path), artifact_path="model")
        status = "FINISHED" if row.get("status") == "ok" else "FAILED"
        client.set_terminated(run_id, status=status, end_time=_millis(row.get("ended_at")))
    except BaseException:
        client.delete_run(run_id)
        raise


def _cell(row: dict[str, Any], protocol: dict[str, str]) -> str:
    """A cell id for a row without a cell hash: its values and its whole protocol."""
    payload = [row["arch"], row["reg"], row.get("params") or {}, protocol]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def _millis(stamp: Any) -> int | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000)
    except ValueError:
        return None


def _present(value: Any) -> bool:
    return (
        value is not None and value != "" and not (isinstance(value, float) and math.isnan(value))
    )


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value.startswith("{"):
        return value  # already JSON (dataset options as stored)
    return f"{value:g}" if isinstance(value, float) else str(value)
