"""Copy an experiment folder's runs into MLflow: a parent run per cell, a child run per seed.

MLflow is an optional extra (`pip install 'regbench[mlflow]'`). Each cell (its values and its
whole protocol) becomes a parent run tagged `regbench.cell` and `regbench.protocol`, so grouping
never pools two protocols; each regbench run becomes a child run of it (`mlflow.parentRunId`)
tagged with its regbench run id, so exporting again adds only the runs that are new. A run an
export left unfinished (the exporter killed: MLflow still says RUNNING) is deleted and exported
again, unless the exporter that tagged it is alive on this host. A trained model is logged with
MLflow's Keras flavour, loadable with `mlflow.keras.load_model`.

A run's metrics under the runs table's names (`val_accuracy`, `train_accuracy`, ...) are its
figures as the table has them, the kept epoch's for an early-stopped run, which is what
MLflow shows as the run's value; its per-epoch curves are histories of their own under
`epoch/` (`epoch/val_accuracy`, step = epoch), so the last epoch trained never reads as the
run's figure.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import posixpath
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from regbench.design.plan import PROTOCOL_COLUMNS
from regbench.errors import RegbenchError
from regbench.results import protocols
from regbench.results.leaderboard import ci95
from regbench.results.lookup import model_file, open_model
from regbench.results.reader import load

RUN_TAG = "regbench.run_id"
CELL_TAG = "regbench.cell"
PROTOCOL_TAG = "regbench.protocol"
EXPORTER_TAG = "regbench.exporter"  # host:pid of the export that created the run
UNFINISHED = ("RUNNING", "SCHEDULED")  # what MLflow says of a run no one terminated
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
ARTIFACTS = "mlartifacts"  # beside a local SQLite store, as `mlflow server` names it
CELL_PARAMS = ("arch", "reg", *(c for c in PROTOCOL_COLUMNS if c != "optimizer_options"))
RUN_METRICS = (  # runs-table columns logged under their own names: the run's figures
    "val_accuracy",  # at the kept epoch, as the table has it
    "val_loss",
    "train_accuracy",
    "train_loss",
    "train_accuracy_running",
    "test_accuracy",
    "test_loss",
    "kept_epoch",
    "initial_loss",
    "epochs_run",
    "train_time_s",
    "images_per_s",
    "total_params",
    "epochs_to_target",
    "seconds_to_target",
)
EPOCH_PREFIX = "epoch/"  # the per-epoch histories: `epoch/val_accuracy`, step = epoch
VERSION_TAGS = {
    "regbench_version": "regbench.version",
    "keras_version": "regbench.keras_version",
    "tf_version": "regbench.tf_version",
    "git_revision": "regbench.git_revision",
}


@dataclass(frozen=True)
class Exported:
    experiment_id: str
    tracking_uri: str
    added: int
    already_there: int
    redone: int = 0  # runs a cut-short export left unfinished, deleted and exported again


def export(
    folder: str | Path, tracking_uri: str | None = None, name: str | None = None
) -> Exported:
    """Log every run of `folder` not yet in the MLflow experiment `name` (default: the
    folder's name) at `tracking_uri` (default: MLflow's own default; a folder or `file:` URI
    means a SQLite store `mlflow.db` in that folder)."""
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise RegbenchError(
            "exporting to MLflow needs MLflow: pip install 'regbench[mlflow]'"
        ) from None
    folder = Path(folder)
    runs, epochs = load(folder)
    name = name or folder.resolve().name
    uri, artifacts = tracking_store(tracking_uri or mlflow.get_tracking_uri())
    try:
        with _tracking_uri(uri):
            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(name)
            experiment_id = (
                experiment.experiment_id
                if experiment
                else client.create_experiment(
                    name, artifact_location=(artifacts / name).as_uri() if artifacts else None
                )
            )
            done, parents, unfinished = _existing(client, experiment_id)
            for run_id in unfinished:
                client.delete_run(run_id)
            rows = [{**r, "cell": _cell(r)} for r in runs.to_dict(orient="records")]
            new = [r for r in rows if r["run_id"] not in done]
            for row in new:
                if row["cell"] not in parents:
                    parents[row["cell"]] = _parent(client, experiment_id, row)
                mine = epochs[epochs["run_id"] == row["run_id"]]
                _export_run(client, experiment_id, parents[row["cell"]], row, mine, folder)
            for cell in {r["cell"] for r in new}:
                mine = [r for r in rows if r["cell"] == cell]
                ended = [_millis(r.get("ended_at")) for r in mine]
                end = max((e for e in ended if e is not None), default=None)
                _log_cell(client, parents[cell], mine, end)
                client.set_terminated(parents[cell], "FINISHED", end_time=end)
    except OSError as exc:  # the store's folder or its artifacts cannot be written
        raise RegbenchError(
            f"cannot write the MLflow export to {uri}: {exc.strerror or exc} "
            f"({exc.filename or 'its files'}); choose a writable store with --tracking-uri"
        ) from None
    except MlflowException as exc:
        message = " ".join(str(exc.message).split())[:300]
        raise RegbenchError(
            f"MLflow refused the export to {uri}: {message}; choose a store with "
            "--tracking-uri (e.g. sqlite:///mlflow.db, a folder, or http://HOST:5000)"
        ) from None
    return Exported(experiment_id, uri, len(new), len(runs) - len(new), len(unfinished))


def tracking_store(uri: str) -> tuple[str, Path | None]:
    """The tracking URI to write to and, for a local SQLite store, the folder beside it that
    holds the artifacts of the experiments regbench creates there. MLflow 3 reads a file store
    only with MLFLOW_ALLOW_FILE_STORE=true, so a folder means a SQLite store inside it, unless
    the user set that variable (then it is MLflow's file store, as named)."""
    scheme = urlparse(uri).scheme if "://" in uri or uri.startswith("file:") else ""
    if scheme in ("", "file"):
        if os.environ.get(ALLOW_FILE_STORE, "").lower() in ("true", "1"):
            return uri, None
        path = Path(unquote(urlparse(uri).path) if scheme else uri).absolute()
        if any(path.glob("*/meta.yaml")):
            raise RegbenchError(
                f"{path} holds an MLflow file store, which MLflow 3 opens only with "
                f"{ALLOW_FILE_STORE}=true: set it to export there, convert the folder with "
                f"`mlflow migrate-filestore`, or pass another folder"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegbenchError(
                f"cannot create the MLflow store folder {path}: {exc.strerror}; choose a "
                "writable one with --tracking-uri"
            ) from None
        uri = f"sqlite:///{path / 'mlflow.db'}"
        scheme = "sqlite"
    if scheme.split("+")[0] in DATABASE_SCHEMES and not (
        importlib.util.find_spec("sqlalchemy") and importlib.util.find_spec("alembic")
    ):
        raise RegbenchError(
            f"MLflow's database store {uri} needs SQLAlchemy and Alembic: "
            "pip install 'regbench[mlflow]'"
        )
    if scheme == "sqlite" and uri.startswith("sqlite:///") and ":memory:" not in uri:
        return uri, Path(uri.removeprefix("sqlite:///")).absolute().parent / ARTIFACTS
    return uri, None


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's `log_model` writes to the process's tracking URI: point it at `uri` while
    exporting and give the caller's setting back afterwards."""
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None: MLflow's default


def _existing(client: Any, experiment_id: str) -> tuple[set[str], dict[str, str], list[str]]:
    """The regbench run ids already exported, the parent run of each cell seen, and the
    MLflow ids of the child runs a cut-short export left unfinished (to be redone)."""
    ids: set[str] = set()
    parents: dict[str, str] = {}
    unfinished: list[str] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            tags = run.data.tags
            if RUN_TAG not in tags:
                if CELL_TAG in tags:
                    parents.setdefault(tags[CELL_TAG], run.info.run_id)
            elif run.info.status in UNFINISHED and not _exporter_alive(tags.get(EXPORTER_TAG)):
                unfinished.append(run.info.run_id)
            else:
                ids.add(tags[RUN_TAG])
        token = page.token
        if not token:
            return ids, parents, unfinished


def _exporter() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _exporter_alive(tag: str | None) -> bool:
    """Whether the export that tagged a run is still at work: a live process on this host.
    Another host's export cannot be asked, so its unfinished run counts as cut short."""
    host, _, pid = (tag or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _parent(client: Any, experiment_id: str, row: dict[str, Any]) -> str:
    """The run that groups a cell's seeds: the cell's values and protocol, no metrics."""
    from mlflow.entities import Param

    run = client.create_run(
        experiment_id,
        start_time=_millis(row.get("started_at")),
        tags={
            "mlflow.runName": f"{row['arch']}-{row['reg']}-{row['cell']}",
            CELL_TAG: row["cell"],
            PROTOCOL_TAG: _protocol_label(row),
        },
    )
    params = _cell_params(row)
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return run.info.run_id


def _log_cell(client: Any, parent: str, rows: list[dict[str, Any]], at: int | None) -> None:
    """The cell's figures on its parent run, so MLflow's run list sorts and shows cells: the
    mean validation accuracy over its ok seeds, its 95% t interval's half-width (none from
    one seed), and its seeds ok / planned / lost; logged again (step = seeds planned) each
    time an export adds runs to the cell."""
    from mlflow.entities import Metric

    ok = [
        float(r["val_accuracy"])
        for r in rows
        if r.get("status") == "ok" and _present(r.get("val_accuracy"))
    ]
    planned = sum(r.get("status") != "skipped" for r in rows)
    figures: dict[str, float | None] = {
        "seeds_ok": len(ok),
        "seeds_planned": planned,
        "seeds_lost": sum(r.get("status") in ("failed", "diverged") for r in rows),
        "val_accuracy_mean": sum(ok) / len(ok) if ok else None,
        "val_accuracy_ci95": ci95(pd.Series(ok)) if len(ok) > 1 else None,
    }
    metrics = [
        Metric(key, float(value), at or 0, planned)
        for key, value in figures.items()
        if value is not None and math.isfinite(value)
    ]
    client.log_batch(parent, metrics=metrics)


def _export_run(
    client: Any,
    experiment_id: str,
    parent: str,
    row: dict[str, Any],
    epochs: pd.DataFrame,
    folder: Path,
) -> None:
    """One run, complete or not at all: a run that fails half-way is deleted again."""
    from mlflow.entities import Metric, Param

    start = _millis(row.get("started_at"))
    run = client.create_run(experiment_id, start_time=start, tags=_run_tags(row, parent))
    run_id = run.info.run_id
    try:
        params = _cell_params(row) | {
            k: _text(row[k]) for k in ("seed", "stage") if _present(row.get(k))
        }
        at_kept = int(row["kept_epoch"]) if _present(row.get("kept_epoch")) else 0
        metrics = [
            Metric(column, float(row[column]), start or 0, at_kept)
            for column in RUN_METRICS
            if _present(row.get(column))
        ]
        for e in epochs.itertuples():
            if _present(e.value):
                elapsed = e.elapsed_s if _present(e.elapsed_s) else 0
                at = (start or 0) + int(elapsed * 1000)
                metrics.append(Metric(_epoch_key(e.split, e.metric), float(e.value), at, e.epoch))
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()], metrics=metrics)
        path = model_file(folder, row.get("model_path"))
        if path is not None and path.is_file():
            _log_model(client, run_id, path, row)
        status = "FINISHED" if row.get("status") == "ok" else "FAILED"
        client.set_terminated(run_id, status=status, end_time=_millis(row.get("ended_at")))
    except BaseException:
        client.delete_run(run_id)
        raise


def _log_model(client: Any, run_id: str, path: Path, row: dict[str, Any]) -> None:
    """The model as an MLflow Keras model named `model`; a file Keras cannot open is kept
    as a plain artifact under `model/`, and the reason as the tag `regbench.model_error`."""
    import mlflow

    try:
        model = open_model(pd.Series({**row, "model_path": str(path)}))
    except RegbenchError as exc:
        client.log_artifact(run_id, str(path), artifact_path="model")
        client.set_tag(run_id, "regbench.model_error", str(exc)[:5000])
        return
    pins = {"keras": row.get("keras_version"), "tensorflow": row.get("tf_version")}
    with mlflow.start_run(run_id=run_id):  # ends the run; the caller sets its real status
        mlflow.keras.log_model(
            model,
            name="model",
            signature=_signature(model),
            pip_requirements=[f"{p}=={v}" if _present(v) else p for p, v in pins.items()],
        )


def _signature(model: Any) -> Any:
    """A tensor signature from the model's input shape (float32 images), so pyfunc users know
    what to feed it; None for a model with several inputs."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    shape = model.input_shape
    if not isinstance(shape, tuple):
        return None
    shape = tuple(-1 if size is None else size for size in shape)
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype("float32"), shape)]))


def _run_tags(row: dict[str, Any], parent: str) -> dict[str, str]:
    tags = {
        RUN_TAG: row["run_id"],
        "mlflow.runName": row["run_id"],
        "mlflow.parentRunId": parent,
        CELL_TAG: row["cell"],
        PROTOCOL_TAG: _protocol_label(row),
        "regbench.status": str(row.get("status")),
        EXPORTER_TAG: _exporter(),
    }
    tags |= {tag: str(row[c]) for c, tag in VERSION_TAGS.items() if _present(row.get(c))}
    if _present(row.get("git_revision")):
        tags["mlflow.source.git.commit"] = str(row["git_revision"]).removesuffix("+dirty")
    if _present(row.get("error")):
        tags["regbench.error"] = str(row["error"])[:5000]
    return tags


def _cell_params(row: dict[str, Any]) -> dict[str, str]:
    """What a cell's seeds share: architecture, regularizer and its hyperparameters
    (`reg.name`), the protocol, and each optimizer option as `optimizer.name`."""
    params = {c: _text(row[c]) for c in CELL_PARAMS if _present(row.get(c))}
    params |= {f"{row['reg']}.{k}": _text(v) for k, v in (row.get("params") or {}).items()}
    options = _decoded(row.get("optimizer_options"))
    params |= {f"optimizer.{k}": _text(v) for k, v in options.items()}
    return params


def _protocol(row: dict[str, Any]) -> dict[str, str]:
    return {c: protocols.text(c, row.get(c)) for c in PROTOCOL_COLUMNS}


def _protocol_label(row: dict[str, Any]) -> str:
    return protocols.label(_protocol(row), PROTOCOL_COLUMNS, always=())


def _cell(row: dict[str, Any]) -> str:
    """The row's cell hash, or for a row without one an id from its values and protocol."""
    if _present(row.get("cell_hash")):
        return str(row["cell_hash"])
    payload = [row["arch"], row["reg"], row.get("params") or {}, _protocol(row)]
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _epoch_key(split: str, metric: str) -> str:
    """`epoch/val_accuracy`, `epoch/val_<plugin metric>`; the train split is Keras's running
    figure (`epoch/train_accuracy_running`), the clean one being the per-run `train_accuracy`."""
    key = f"{split}_{metric}_running" if split == "train" else f"{split}_{metric}"
    key = re.sub(r"[^\w\-. /]", "_", key)
    # MLflow refuses a name that reads as another path (`val_/`, `val_a//b`, `val_./b`)
    return EPOCH_PREFIX + (key.replace("/", "_") if posixpath.normpath(key) != key else key)


def _decoded(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


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
    return f"{value:g}" if isinstance(value, float) else str(value)
