"""Schema versions: an older store is upgraded in place after a backup, a newer one refused,
and a read-only look at an old store writes nothing."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from regbench.api import hookimpl
from regbench.cli import main
from regbench.design.plan import Execution, RunSpec
from regbench.errors import RegbenchError
from regbench.results.migrations import SCHEMA_VERSION
from regbench.results.reader import load
from regbench.results.store import DB_NAME, Store

# the runs table as regbench wrote it before versioning: no cell_hash, no dataset on best_values
OLD_RUN_COLUMNS = [
    "run_id TEXT PRIMARY KEY",
    "config_hash TEXT NOT NULL",
    "stage TEXT",
    "arch TEXT",
    "reg TEXT",
    "params TEXT",
    "tuned TEXT",
    "seed INTEGER",
    "dataset TEXT",
    "dataset_options TEXT",
    "epochs INTEGER",
    "batch_size INTEGER",
    "optimizer TEXT",
    "learning_rate REAL",
    "status TEXT",
    "val_accuracy REAL",
    "jit_compile TEXT",
    "precision TEXT",
    "steps_per_execution INTEGER",
    "pipeline TEXT",
    "model_path TEXT",
    "started_at TEXT",
]


def old_store(folder: Path, version: int = 0) -> RunSpec:
    """A store as an earlier regbench left it: old columns, the old identity hash (which
    hashed execution options), an absolute model path."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(
        arch="model1", reg="dropout", params={"rate": 0.2}, seed=1, execution=Execution("off")
    )
    old_hash = "0123456789abcdef"
    model = folder / "models" / f"{spec.run_id}.keras"
    db = sqlite3.connect(folder / DB_NAME)
    db.execute(f"CREATE TABLE runs ({', '.join(OLD_RUN_COLUMNS)})")
    db.execute(
        "CREATE TABLE epochs (run_id TEXT NOT NULL, epoch INTEGER NOT NULL, split TEXT NOT NULL,"
        " metric TEXT NOT NULL, value REAL, elapsed_s REAL,"
        " PRIMARY KEY (run_id, epoch, split, metric))"
    )
    db.execute(
        'CREATE TABLE best_values (arch TEXT, reg TEXT, "values" TEXT, score REAL, '
        "search_hash TEXT, PRIMARY KEY (arch, reg))"
    )
    row = {**spec.row(), "config_hash": old_hash, "status": "ok", "val_accuracy": 0.5}
    row |= {"params": json.dumps(row["params"]), "tuned": "[]", "dataset_options": "{}"}
    row |= {"model_path": str(model.absolute()), "started_at": "2026-01-01T00:00:00"}
    names = [c.split()[0] for c in OLD_RUN_COLUMNS]
    db.execute(
        f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [row.get(n) for n in names],
    )
    db.execute(
        "INSERT INTO best_values VALUES ('model1', 'dropout', '{\"rate\": 0.3}', 0.6, 'abc')"
    )
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()
    return spec


def columns(folder: Path, table: str) -> set[str]:
    with sqlite3.connect(folder / DB_NAME) as db:
        return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def test_an_old_store_is_upgraded_in_place_after_a_backup(tmp_path):
    spec = old_store(tmp_path)
    store = Store(tmp_path)
    try:
        # the cell that failed before: a run recorded into the upgraded table
        other = RunSpec(arch="model2", reg="none", params={}, seed=0)
        store.record_run({**other.row(), "status": "ok"}, [])
        # tuned before values remembered their dataset: the runs' one is assumed
        assert store.best_values("cifar10") == {("model1", "dropout"): {"rate": 0.3}}
        statuses = store.statuses()
    finally:
        store.close()
    assert {"cell_hash", "model_path", "summary"} <= columns(tmp_path, "runs")
    assert "dataset" in columns(tmp_path, "best_values")
    backup = tmp_path / f"{DB_NAME}.bak-v0"
    assert backup.exists() and "cell_hash" not in {
        r[1] for r in sqlite3.connect(backup).execute("PRAGMA table_info(runs)")
    }
    runs = load(tmp_path).runs.set_index("run_id")
    kept = runs.loc[spec.run_id]  # run_id is the key and names the model file: kept
    assert kept["config_hash"] == spec.config_hash == RunSpec.from_row(kept).config_hash
    assert kept["cell_hash"] == spec.cell_hash
    assert kept["model_path"] == f"models/{spec.run_id}.keras"
    assert statuses[spec.config_hash] == "ok"  # the new identity finds the finished run
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reading_an_old_store_upgrades_a_copy_in_memory_and_writes_nothing(tmp_path):
    spec = old_store(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    runs = load(tmp_path).runs
    assert runs.iloc[0]["config_hash"] == spec.config_hash
    assert runs.iloc[0]["model_path"] == f"models/{spec.run_id}.keras"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0


def test_a_moved_folder_still_finds_its_models(tmp_path):
    from regbench.results.lookup import finished_run

    spec = old_store(tmp_path / "before")
    (tmp_path / "before" / "models").mkdir()
    (tmp_path / "before" / "models" / f"{spec.run_id}.keras").write_bytes(b"model")
    (tmp_path / "before").rename(tmp_path / "after")
    row = finished_run(tmp_path / "after", run_id=spec.run_id)
    assert Path(row["model_path"]) == tmp_path / "after" / "models" / f"{spec.run_id}.keras"
    Store(tmp_path / "after").close()  # the upgrade stores it relative
    assert load(tmp_path / "after").runs.iloc[0]["model_path"] == f"models/{spec.run_id}.keras"


def test_new_runs_record_model_paths_relative_to_the_folder(tmp_path):
    spec = RunSpec(arch="model1", reg="none", params={}, seed=0)
    with Store(tmp_path) as store:
        path = tmp_path / "models" / f"{spec.run_id}.keras"
        store.record_run({**spec.row(), "status": "ok", "model_path": str(path)}, [])
    assert load(tmp_path).runs.iloc[0]["model_path"] == f"models/{spec.run_id}.keras"


def test_a_store_from_a_newer_regbench_is_refused_with_one_line(tmp_path, capsys):
    old_store(tmp_path, version=SCHEMA_VERSION + 5)
    with pytest.raises(RegbenchError, match="newer regbench"):
        Store(tmp_path)
    with pytest.raises(RegbenchError, match="newer regbench"):
        load(tmp_path)
    assert main(["leaderboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "newer regbench" in err and str(tmp_path) in err


def test_a_fresh_store_is_at_the_current_version(tmp_path):
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert not (tmp_path / f"{DB_NAME}.bak-v0").exists()


def test_plan_tuned_reads_an_old_store_without_changing_it(tmp_path, capsys):
    spec = old_store(tmp_path)
    before = (tmp_path / DB_NAME).read_bytes()
    argv = ["plan", "--arch", "model1", "--reg", "dropout", "--seeds", "1,2", "--tuned"]
    argv += ["--jit-compile", "off", "--experiment", str(tmp_path)]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "rate=0.3" in out  # the tuned value, from the old best_values
    assert "done 0" in out  # the tuned rate differs from the finished run's 0.2
    assert (tmp_path / DB_NAME).read_bytes() == before
    assert spec.run_id not in out


def test_a_run_from_before_provenance_is_pending_and_plan_says_why(tmp_path, capsys):
    """Runs now carry their plugins' versions and sources in their identity, so a run stored
    without them is trained again; plan names the reason instead of leaving it silent."""
    old_store(tmp_path)
    argv = ["plan", "--arch", "model1", "--reg", "dropout", "--seeds", "1,"]
    argv += [
        "--param",
        "dropout.rate=0.2",
        "--jit-compile",
        "off",  # as the stored run asked
        "--experiment",
        str(tmp_path),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    out = " ".join(capsys.readouterr().out.split())
    assert "done 0, pending 1" in out
    assert "before plugin provenance was recorded" in out.replace("│ ", "").replace(" │", "")


# ---------------------------------------------------------------- m008: identity version 5

NEW_IN_M008 = ("split_scheme", "passes_per_step", "final_weights")


def store_at_v7(folder: Path, rows: list[dict]) -> None:
    """A store as regbench left it at schema 7 (no columns of m008), holding `rows`."""
    from regbench.results.migrations import MIGRATIONS

    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / DB_NAME)
    for step in MIGRATIONS[:7]:
        step(db, folder)
    for column in NEW_IN_M008:
        db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    names = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
    for row in rows:
        values = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
        db.execute(
            f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [values.get(n) for n in names],
        )
    db.execute("PRAGMA user_version = 7")
    db.commit()
    db.close()


def v7_row(run_id: str, **changes) -> dict:
    """A row of schema 7 in the spellings regbench then stored: options as typed, a
    combination in the order given, the components' provenance in that order."""
    row = {
        "run_id": run_id,
        "config_hash": "old",
        "cell_hash": "old",
        "stage": "grid",
        "arch": "model1",
        "reg": "l2+dropout",
        "params": {"l2.strength": 0.01, "dropout.rate": 0.1},
        "tuned": [],
        "seed": 0,
        "dataset": "digits",
        "dataset_options": {"native": "false"},
        "epochs": 1,
        "batch_size": 64,
        "optimizer": "sgd",
        "learning_rate": 0.01,
        "optimizer_options": {"momentum": "0", "nesterov": "no"},
        "lr_schedule": "constant",
        "precision": "float32",
        "engine": "standard",
        "arch_source": "regbench 0.2.0",
        "reg_source": "regbench 0.2.0+regbench 0.2.0",
        "arch_source_hash": "a1",
        "reg_source_hash": "h_l2+h_dropout",
        "provenance_scheme": "object",
        "status": "ok",
        "backend": "tensorflow",
        "started_at": "2026-11-01T00:00:00",
    }
    return {**row, **changes}


def today(backend: str | None = None, engine: str = "standard") -> RunSpec:
    """What this regbench plans for the science of `v7_row` (split: as trained, unnamed)."""
    from regbench.design.plan import Protocol

    return RunSpec(
        arch="model1",
        reg="dropout+l2",
        params={"l2.strength": 0.01, "dropout.rate": 0.1},
        seed=0,
        protocol=Protocol(dataset="digits", epochs=1, backend=backend),
        execution=Execution(engine=engine),
        provenance={
            "arch_source": "regbench 0.2.0",
            "reg_source": "regbench 0.2.0+regbench 0.2.0",
            "arch_source_hash": "a1",
            "reg_source_hash": "h_dropout+h_l2",
        },
    )


def test_m008_respells_rehashes_and_adds_the_engines_columns(tmp_path):
    rows = [
        v7_row("tf"),
        v7_row("jax", backend="jax", seed=1),
        v7_row("never-reached", backend=None, status="failed", seed=2),
        v7_row("vmapped", backend=None, engine="vmapped", seed=3),
        v7_row("damaged", seed=None),
    ]
    store_at_v7(tmp_path, rows)
    with Store(tmp_path) as store:
        statuses = store.statuses()
    assert set(NEW_IN_M008) <= columns(tmp_path, "runs")
    stored = load(tmp_path).runs.set_index("run_id")
    assert set(stored["passes_per_step"]) == {1}  # every run trained before took one pass
    assert stored["final_weights"].isna().all() and stored["split_scheme"].isna().all()
    tf = stored.loc["tf"]
    assert (tf["reg"], tf["reg_source_hash"]) == ("dropout+l2", "h_dropout+h_l2")
    assert (tf["dataset_options"], tf["optimizer_options"]) == ("{}", "{}")
    assert dict(stored["backend"]) == {
        "tf": "tensorflow",
        "jax": "jax",
        "never-reached": "tensorflow",  # a row without one: TensorFlow, unless vmapped
        "vmapped": "jax",
        "damaged": "tensorflow",
    }
    tensorflow = today("tensorflow")
    assert statuses[tensorflow.config_hash] == "ok"  # a TensorFlow plan finds its run
    assert tf["config_hash"] == tensorflow.config_hash and tf["cell_hash"] == tensorflow.cell_hash
    jax = replace(today("jax"), seed=1)
    assert (
        stored.loc["jax", "config_hash"]
        == jax.config_hash
        != replace(tensorflow, seed=1).config_hash
    )
    assert (
        stored.loc["vmapped", "config_hash"] == replace(today(engine="vmapped"), seed=3).config_hash
    )
    assert stored.loc["damaged", "config_hash"] == "old"  # too damaged to rebuild: kept
    assert RunSpec.from_row(tf).config_hash == tensorflow.config_hash


class TinyData:
    """A dataset plugin that names no split scheme, as a third-party one from before."""

    @hookimpl
    def register_datasets(self, register):
        from regbench.builtins.datasets import Synthetic

        class Tiny(Synthetic):
            name = "tiny"
            split_scheme = "unnamed"

        register(Tiny())


def test_after_the_upgrade_a_plan_says_what_changed_since_the_runs(
    tmp_path, monkeypatch, cli, request
):
    """Rows from before hold TensorFlow runs that recorded no dataset provenance: after the
    upgrade a plan on TensorFlow finds them pending for that reason only, one on JAX for that
    and the backend. (On a dataset whose split did not change: the built-ins' did, and plan
    says so.)"""
    from doubles import install

    from regbench.design import canonical
    from regbench.design.pending import UNRECORDED_DATASET_NOTE
    from regbench.design.plan import provenance

    registry = install(request, TinyData())
    recorded = provenance(registry, "model1", "l2+dropout", "tiny")  # each component, in order
    recorded = {k: v for k, v in recorded.items() if not k.startswith("dataset_")}  # as v7 did
    rows = [
        v7_row(f"r{seed}", dataset="tiny", dataset_options={}, seed=seed, **recorded)
        for seed in (0, 1)
    ]
    store_at_v7(tmp_path / "exp", rows)
    args = ["plan", "--arch", "model1", "--reg", "dropout+l2", "--dataset", "tiny", "--seeds", "2"]
    args += ["--epochs", "1", "--experiment", str(tmp_path / "exp")]
    backend_note = "trained on tensorflow; runs here train on jax"
    monkeypatch.setattr(canonical, "keras_backend", lambda: "tensorflow")  # as trained
    tensorflow = cli(*args, env={"COLUMNS": "240"})
    assert tensorflow.returncode == 0, tensorflow.stderr
    out = " ".join(tensorflow.stdout.split())
    assert "done 0, pending 2" in out and out.count(UNRECORDED_DATASET_NOTE) == 2, out
    assert backend_note not in out
    monkeypatch.setattr(canonical, "keras_backend", lambda: "jax")  # KERAS_BACKEND=jax
    jax = cli(*args, env={"COLUMNS": "240"})
    out = " ".join(jax.stdout.split())
    assert "done 0, pending 2" in out
    assert out.count(backend_note) == 2 and out.count(UNRECORDED_DATASET_NOTE) == 2


def test_runs_of_the_earlier_split_are_pending_and_plan_says_why(tmp_path, cli):
    store_at_v7(tmp_path / "exp", [v7_row("r0")])
    args = ["plan", "--arch", "model1", "--reg", "l2+dropout", "--dataset", "digits"]
    result = cli(*args, "--epochs", "1", "--experiment", str(tmp_path / "exp"))
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "done 0, pending 1" in out and "earlier split" in out


# ---------------------------------------------------------------- m009: identity version 6


def test_m009_separates_runs_that_asked_for_xla_from_keras_choice(tmp_path):
    """Two seeds of one cell stored before XLA was identity, one trained with `--jit-compile
    on`: after the upgrade each row's hashes are those its own settings give today, so the two
    are two cells (never pooled), and a vmapped row's request is recorded as what ran."""
    rows = [
        v7_row("auto", seed=0, jit_compile="auto"),
        v7_row("on", seed=1, jit_compile="on"),
        v7_row("packed", seed=2, jit_compile="on", engine="vmapped", backend="jax"),
    ]
    store_at_v7(tmp_path, rows)
    Store(tmp_path).close()
    runs = load(tmp_path).runs.set_index("run_id")
    for run_id in ("auto", "on", "packed"):
        row = runs.loc[run_id].to_dict()
        today_spec = RunSpec.from_row(row)
        assert (row["config_hash"], row["cell_hash"]) == (
            today_spec.config_hash,
            today_spec.cell_hash,
        )
    assert runs.loc["packed", "jit_compile"] == "auto"
    auto, on = runs.loc["auto"], runs.loc["on"]
    assert auto["cell_hash"] != on["cell_hash"]
    assert RunSpec.from_row({**on.to_dict(), "seed": 0}).config_hash != auto["config_hash"]
