"""Migrations are frozen in time: m002 re-hashes old rows with the identity of version 3 as it
shipped, m008 with that of version 5, whatever the engine's identity becomes later."""

from __future__ import annotations

import ast
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import regbench.results.frozen as frozen
from regbench.results import migrations
from regbench.results.frozen import identity_v3, identity_v4, identity_v5

# stored rows and the hashes identity v3 gave them (computed by engine.plan.RunSpec when m002
# shipped); a change here means the frozen code changed, which it never may
GOLDEN = [
    (
        {
            "arch": "model1",
            "reg": "dropout",
            "params": '{"rate": 0.2}',
            "seed": 1,
            "dataset": "cifar10",
            "dataset_options": "{}",
            "epochs": 10,
            "batch_size": 64,
            "optimizer": "sgd",
            "learning_rate": None,
            "precision": "float32",
            "jit_compile": "off",
        },
        "e31a8d26e1aeacc7",
        "f28e3464dbc212ed",
    ),
    (
        {
            "arch": "resnet20",
            "reg": "dropout+l2",
            "params": '{"l2.strength": 0.0001, "dropout.rate": 0.3}',
            "seed": 2,
            "stage": "final",
            "tuned": '["dropout.rate"]',
            "dataset": "digits",
            "dataset_options": '{"n_train": 500, "cache_dir": null}',
            "epochs": 3,
            "batch_size": 32,
            "optimizer": "adamw",
            "learning_rate": 0.001,
            "target": "val_accuracy>=0.9",
            "precision": "mixed_bfloat16",
            "optimizer_options": '{"weight_decay": 0.01, "beta_1": 0.8}',
            "lr_schedule": "cosine",
            "arch_source": "regbench 0.2.0",
            "reg_source": "regbench 0.2.0",
            "arch_source_hash": "aaaa",
            "reg_source_hash": "bbbb",
            "engine": "vmapped",
        },
        "3274291538643d8d",
        "f9f563a5aa1b13fb",
    ),
    (
        {
            "arch": "model2",
            "reg": "none",
            "params": "{}",
            "seed": 0,
            "dataset": "digits",
            "dataset_options": None,
            "epochs": 1,
            "batch_size": 64,
            "optimizer": float("nan"),
            "learning_rate": float("nan"),
            "lr_schedule": "constant",
            "optimizer_options": "{}",
            "precision": None,
        },
        "303ce3588974ea32",
        "bc287954cd71cdc8",
    ),
]


@pytest.mark.parametrize(("row", "config", "cell"), GOLDEN)
def test_the_frozen_identity_keeps_its_hashes(row, config, cell):
    assert identity_v3.config_hash(row) == config
    assert identity_v3.cell_hash(row) == cell


def test_execution_options_never_change_the_identity():
    row = GOLDEN[0][0]
    changed = {**row, "jit_compile": "on", "steps_per_execution": 8, "pipeline": "tf.data"}
    assert identity_v3.config_hash(changed) == GOLDEN[0][1]


@pytest.mark.parametrize(
    "damage", [{"seed": None}, {"epochs": "ten"}, {"params": "{"}, {"target": "x>=y"}]
)
def test_a_damaged_row_raises_what_m002_skips(damage):
    with pytest.raises((KeyError, TypeError, ValueError)):
        identity_v3.config_hash({**GOLDEN[0][0], **damage})


def test_m002_writes_the_frozen_hashes_and_keeps_damaged_rows(tmp_path):
    db = sqlite3.connect(":memory:")
    migrations.m001_tables(db, tmp_path)
    rows = [{**row, "run_id": f"r{i}", "config_hash": "old"} for i, (row, *_) in enumerate(GOLDEN)]
    rows.append({**GOLDEN[0][0], "run_id": "damaged", "config_hash": "old", "seed": None})
    for row in rows:
        stored = {k: None if v != v else v for k, v in row.items()}  # NaN is stored as NULL
        db.execute(
            f"INSERT INTO runs ({', '.join(stored)}) VALUES ({', '.join('?' * len(stored))})",
            list(stored.values()),
        )
    migrations.m002_identity_v2(db, tmp_path)
    hashes = dict(
        (r[0], r[1:]) for r in db.execute("SELECT run_id, config_hash, cell_hash FROM runs")
    )
    assert hashes == {
        **{f"r{i}": (config, cell) for i, (_, config, cell) in enumerate(GOLDEN)},
        "damaged": ("old", None),
    }


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_migrations_never_import_the_engine():
    files = [Path(migrations.__file__), *Path(frozen.__file__).parent.glob("*.py")]
    for path in files:
        assert not {
            n for n in _imports(path) if n.startswith(("regbench.engine", "regbench.design"))
        }, path
    for path in Path(frozen.__file__).parent.glob("*.py"):  # the standard library, or frozen
        ours = {n for n in _imports(path) if n.startswith("regbench")}
        assert not {n for n in ours if not n.startswith("regbench.results.frozen")}, path


def test_m002_runs_without_loading_the_engine(tmp_path):
    code = (
        "import sqlite3, sys; from pathlib import Path; "
        "from regbench.results import migrations as m; "
        "db = sqlite3.connect(':memory:'); m.m001_tables(db, Path('.')); "
        "m.m002_identity_v2(db, Path('.')); "
        "print(sorted(k for k in sys.modules if k.startswith('regbench.engine')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# stored rows of schema 7 and the hashes identity v5 gives them (engine.plan.RunSpec when m008
# shipped): spellings of before (strings, defaults given, a combination in the order typed)
GOLDEN_V5 = [
    (
        {
            "arch": "model1",
            "reg": "l2+dropout",
            "params": '{"l2.strength": 0.01, "dropout.rate": 0.1}',
            "seed": 0,
            "dataset": "digits",
            "dataset_options": '{"native": "yes"}',
            "epochs": 10,
            "batch_size": 64,
            "optimizer": "sgd",
            "learning_rate": 0.01,
            "optimizer_options": '{"momentum": "0", "nesterov": "true"}',
            "reg_source": "regbench 0.2.0+regbench 0.2.0",
            "reg_source_hash": "h1+h2",
            "arch_source": "regbench 0.2.0",
            "arch_source_hash": "a",
            "backend": "tensorflow",
        },
        "59701fb63eedab3a",
        "f2053cf596cfa87f",
    ),
    (
        {
            "arch": "model2",
            "reg": "dropout+batchnorm",
            "params": '{"dropout.rate": 0.2}',
            "seed": 3,
            "dataset": "synthetic",
            "dataset_options": '{"noise": ".3", "size": "70"}',
            "epochs": 2,
            "batch_size": 32,
            "optimizer": "adamw",
            "learning_rate": None,
            "optimizer_options": '{"weight_decay": 0.004, "beta_1": "0.8"}',
            "engine": "vmapped",
            "backend": None,
            "split_scheme": "fixed-test",
        },
        "7fddd2cfb02104ee",
        "0e9027a5564dbb78",
    ),
    (
        {
            "arch": "model3",
            "reg": "none",
            "params": "{}",
            "seed": 1,
            "dataset": "cifar10",
            "dataset_options": None,
            "epochs": 1,
            "batch_size": 64,
            "optimizer": "rmsprop",
            "learning_rate": 0.001,
            "optimizer_options": "{}",
            "backend": "jax",
            "split_scheme": None,
        },
        "92811309be1bea67",
        "e517153bc7adaf76",
    ),
]


@pytest.mark.parametrize(("row", "config", "cell"), GOLDEN_V5)
def test_the_frozen_identity_v5_keeps_its_hashes(row, config, cell):
    assert identity_v5.config_hash(row) == config
    assert identity_v5.cell_hash(row) == cell


def test_v5_leaves_a_tensorflow_row_in_one_spelling_as_v4_hashed_it():
    """TensorFlow and an unnamed split are v5's defaults: such a row keeps its v4 hash."""
    row = {**GOLDEN[0][0], "backend": "tensorflow"}
    assert identity_v5.config_hash(row) == identity_v4.config_hash(row)


@pytest.mark.parametrize(
    "damage",
    [{"dataset_options": '{"native": "maybe"}'}, {"optimizer_options": '{"momentun": 1}'}],
)
def test_a_row_v5_cannot_respell_raises_what_m008_skips(damage):
    with pytest.raises((KeyError, TypeError, ValueError)):
        identity_v5.config_hash({**GOLDEN_V5[0][0], **damage})
