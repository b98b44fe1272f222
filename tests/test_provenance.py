"""Provenance per plugin object: a run records a hash of its architecture's and regularizer's
own code (or their declared version), so editing one regularizer of a package re-queues only
its cells; a combination lists one source and one hash per component."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from conftest import TESTS
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from regbench.api import Architecture, Conv, Point, Regularizer, hookimpl
from regbench.design.pending import PER_OBJECT_NOTE, provenance_parts, stale_reasons, why_pending
from regbench.design.plan import PROVENANCE_SCHEME, Protocol, RunSpec, make_plan
from regbench.plugins.manager import Origin, build_registry
from regbench.plugins.table import Classifier, Flatten
from regbench.reporting import board_text
from regbench.results import leaderboard
from regbench.results.frozen import identity_v6
from regbench.results.reader import load
from regbench.results.store import DB_NAME, Store

DIST = "regbench-pair"
# a package with two regularizers in one module, a helper only `alpha` uses, and a layer module
# of which `beta` imports one function inside a method
PACKAGE = {
    "__init__.py": "",
    "regs.py": """
        from regbench.api import NOISE, HParam, Regularizer, import_keras

        RATE = 0.1


        def _alpha_rate(params):
            return params["rate"]


        class Alpha(Regularizer):
            name = "alpha"
            description = "dropout at every point"
            family = NOISE
            hparams = (HParam("rate", RATE, 0.0, 0.9),)

            def layers_at(self, point, params):
                return [import_keras().layers.Dropout(_alpha_rate(params))]


        class Beta(Regularizer):
            name = "beta"
            description = "noise at every point"
            family = NOISE
            hparams = (HParam("stddev", 0.1, 0.001, 1.0),)

            def layers_at(self, point, params):
                from pairpkg.layers import make_noise

                return [make_noise(params["stddev"])]
    """,
    "layers.py": """
        from regbench.api import import_keras


        def make_noise(stddev):
            return import_keras().layers.GaussianNoise(stddev)


        def unused(x):
            return x
    """,
    "data.py": """
        from dataclasses import replace

        from regbench.builtins.datasets import Synthetic


        class Flipped(Synthetic):
            name = "flipped"
            description = "synthetic images, mirrored"

            def load(self, seed, options):
                splits = super().load(seed, options)
                return replace(splits, x_train=splits.x_train[:, :, ::-1])
    """,
    "plugin.py": """
        from regbench.api import hookimpl

        from pairpkg.data import Flipped
        from pairpkg.regs import Alpha, Beta


        @hookimpl
        def register_regularizers(register):
            register(Alpha())
            register(Beta())


        @hookimpl
        def register_datasets(register):
            register(Flipped())
    """,
}
ENV = {"REGBENCH_LOAD_PLUGINS": DIST}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """What `pip install regbench-pair` leaves behind: the package and its dist-info."""
    folder = tmp_path / "site"
    (folder / "pairpkg").mkdir(parents=True)
    for name, source in PACKAGE.items():
        (folder / "pairpkg" / name).write_text(textwrap.dedent(source).lstrip())
    info = folder / "regbench_pair-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[regbench]\npair = pairpkg.plugin\n")
    return folder


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch):
    """`site` on this process's path, only its plugin loaded beside the built-ins."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("REGBENCH_LOAD_PLUGINS", DIST)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # an edit within a second is seen
    yield site
    _forget_package()


def _forget_package() -> None:
    for module in [m for m in sys.modules if m == "pairpkg" or m.startswith("pairpkg.")]:
        del sys.modules[module]


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text, f"{old!r} not in {file}"
    file.write_text(text.replace(old, new))


def hashes() -> dict[str, str]:
    """Every architecture's and regularizer's source hash, from a registry built now (the
    package imported afresh, as a new process would)."""
    _forget_package()
    registry = build_registry()
    assert not [b for b in registry.broken if b.origin.dist == DIST], registry.broken
    kinds = ("architectures", "regularizers")
    return {n: e.source_hash for k in kinds for n, e in registry.entries[k].items()}


def hashes_in_a_fresh_process(site: Path) -> dict[str, str]:
    code = (
        "import json; from regbench.plugins.manager import registry; r = registry(); "
        "print(json.dumps({n: e.source_hash for k in ('architectures', 'regularizers') "
        "for n, e in r.entries[k].items()}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1", **ENV},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {name for name in before if before[name] != after[name]}


def test_editing_one_regularizer_changes_only_its_hash(installed):
    """The package's regularizers, helpers and imported layers each count for whoever uses
    them, and the hash is the same in a fresh process as here (no per-process salt)."""
    regs, layers = installed / "pairpkg" / "regs.py", installed / "pairpkg" / "layers.py"
    first = hashes()
    assert {"alpha", "beta", "model1", "none"} <= first.keys()
    assert all(len(value) == 12 for value in first.values())
    assert first["alpha"] != first["beta"]
    assert hashes_in_a_fresh_process(installed) == first

    edit(regs, 'description = "dropout at every point"', 'description = "dropout, edited"')
    second = hashes()
    assert changed(first, second) == {"alpha"}
    edit(regs, 'return params["rate"]', 'return float(params["rate"])')  # alpha's helper
    third = hashes()
    assert changed(second, third) == {"alpha"}
    edit(layers, "GaussianNoise(stddev)", "GaussianNoise(stddev * 1.0)")  # what beta imports
    fourth = hashes()
    assert changed(third, fourth) == {"beta"}
    edit(layers, "return x", "return x + 0")  # in the module beta imports from, unused
    assert changed(fourth, hashes()) == set()
    assert hashes_in_a_fresh_process(installed) == hashes()


class Versioned(Regularizer):
    name = "versioned"
    description = "declares its version"
    version = "2"

    def loss(self, params, loss):
        return loss


class _Plugin:
    def __init__(self, *objects):
        self.objects = objects

    @hookimpl
    def register_regularizers(self, register):
        for obj in self.objects:
            if isinstance(obj, Regularizer):
                register(obj)

    @hookimpl
    def register_architectures(self, register):
        for obj in self.objects:
            if isinstance(obj, Architecture):
                register(obj)


def test_a_declared_version_is_recorded_instead_of_the_source():
    tiny = Architecture(
        name="tiny_v",
        description="declares its version",
        layers=(Conv(4, 3), Point("maps", "maps"), Flatten(), Classifier()),
        version="1.4",
    )
    origin = Origin("versioned-dist", "0.1")
    registry = build_registry(extra_plugins=((_Plugin(Versioned(), tiny), origin),))
    assert registry.provenance("regularizers", "versioned") == ("versioned-dist 0.1", "v2")
    assert registry.provenance("architectures", "tiny_v") == ("versioned-dist 0.1", "v1.4")
    (spec,) = make_plan(
        registry, ["tiny_v"], ["versioned"], [0], Protocol(dataset="synthetic"), applicability=False
    )
    assert spec.provenance["reg_source_hash"] == "v2"
    assert spec.row()["provenance_scheme"] == PROVENANCE_SCHEME


def test_a_declared_version_survives_an_edit_until_it_is_bumped(installed):
    regs = installed / "pairpkg" / "regs.py"
    edit(regs, '    name = "beta"\n', '    name = "beta"\n    version = "7"\n')
    first = hashes()
    assert first["beta"] == "v7"
    edit(regs, 'return [make_noise(params["stddev"])]', "return [make_noise(params['stddev'])]")
    assert hashes()["beta"] == "v7"
    edit(regs, 'version = "7"', 'version = "8"')
    assert changed(first, hashes()) == {"beta"}


@pytest.mark.parametrize("version", ["", "1 beta", "1.0+local", 3])
def test_a_malformed_version_breaks_its_plugin_at_load(version):
    bad = type("Bad", (Versioned,), {"name": "bad_version", "version": version})
    origin = Origin("bad-dist", "0.1")
    registry = build_registry(extra_plugins=((_Plugin(bad()), origin),))
    (broken,) = [b for b in registry.broken if b.origin == origin]
    assert "bad_version" in broken.error and "version" in broken.error
    assert "bad_version" not in registry.entries["regularizers"]


COMPONENTS = ["none", "l2", "dropout", "batchnorm", "mixup", "label_smoothing", "cutout"]


@given(st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=4))
def test_a_combination_lists_one_source_and_one_hash_per_component(registry, parts):
    """ "for o2_mixup+o2_label_smoothing, reg_source showed one entry and reg_source_hash two":
    now both list every component, in its order, as each alone would."""
    parts = [p for p in parts if p in registry.entries["regularizers"]] or ["none"]
    name = "+".join(parts)
    source, digest = registry.provenance("regularizers", name)
    assert len(source.split("+")) == len(digest.split("+")) == len(parts)
    alone = [(part, *registry.provenance("regularizers", part)) for part in parts]
    assert provenance_parts(name, source, digest) == alone


DISTS = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
VERSIONS = st.from_regex(
    r"[0-9]{1,2}(\.[0-9]{1,2}){0,2}(\+[a-z0-9]{1,6}(\.[a-z0-9]{1,4})?)?", fullmatch=True
)
HASHES = st.one_of(st.from_regex(r"[0-9a-f]{12}", fullmatch=True), st.just("v2"), st.just(""))
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


@given(st.lists(st.tuples(NAMES, DISTS, VERSIONS, HASHES), min_size=1, max_size=4))
def test_recorded_components_split_back_whatever_their_versions(components):
    """A local version (`1.0+cu121`) holds a '+', the separator: the components still split
    back, since each component's source is 'dist version'."""
    name = "+".join(c[0] for c in components)
    source = "+".join(f"{dist} {version}" for _, dist, version, _ in components)
    digest = "+".join(c[3] for c in components)
    expected = [(n, f"{dist} {version}", h) for n, dist, version, h in components]
    assert provenance_parts(name, source, digest) == expected


def test_a_row_from_before_a_combination_listed_each_source_shows_as_recorded():
    recorded = provenance_parts("mixup+cutmix", "regbench-extras 0.1.0", "aaaa+bbbb")
    assert recorded == [("mixup+cutmix", "regbench-extras 0.1.0", "aaaa+bbbb")]


def _old_row(spec, **changes) -> dict:
    """A stored row of `spec`'s science as the earlier scheme recorded it: whole-package
    hashes, a combination's distribution listed once, no scheme."""
    row = {**spec.row(), "config_hash": "0123456789abcdef", "status": "ok"}
    row |= {"arch_source_hash": "aaaaaaaaaaaa", "reg_source_hash": "bbbbbbbbbbbb+bbbbbbbbbbbb"}
    row |= {"reg_source": spec.provenance["reg_source"].split("+")[0]}
    return {**row, "provenance_scheme": None, **changes}


def test_a_run_hashed_per_package_is_pending_once_and_plan_says_why(registry):
    (spec,) = make_plan(
        registry,
        ["model1"],
        ["dropout+l2"],
        [1],
        Protocol(dataset="synthetic"),
        applicability=False,
    )
    assert why_pending(spec, _old_row(spec)) == PER_OBJECT_NOTE
    upgraded = _old_row(spec, arch_source="regbench 0.1.0")
    assert why_pending(spec, upgraded) == (
        f"{PER_OBJECT_NOTE}; arch source regbench 0.1.0 -> {spec.provenance['arch_source']}"
    )
    # once trained again, a later edit is told as a plain hash change: the newest row counts
    newer = {**spec.row(), "reg_source_hash": "cccc+dddd", "config_hash": "fedcba9876543210"}
    newer["started_at"] = "2027-01-02"
    older = _old_row(spec, started_at="2027-01-01")
    reasons = stale_reasons([spec], [newer, older])
    assert reasons == {
        spec.config_hash: f"reg source hash cccc+dddd -> {spec.provenance['reg_source_hash']}"
    }


def test_a_final_run_of_a_cell_hashed_per_package_keeps_its_scheme(registry):
    """`final` retrains a stored cell with its recorded provenance: the scheme goes along, so
    per-package hashes are never labelled per object."""
    (spec,) = make_plan(
        registry, ["model1"], ["dropout"], [1], Protocol(dataset="synthetic"), applicability=False
    )
    assert RunSpec.from_row(spec.row()).row()["provenance_scheme"] == PROVENANCE_SCHEME
    old = RunSpec.from_row(_old_row(spec))
    assert old.row()["provenance_scheme"] is None
    assert old.config_hash != spec.config_hash and why_pending(spec, old.row()) == PER_OBJECT_NOTE


def test_m007_adds_the_scheme_and_leaves_recorded_hashes_alone(tmp_path, registry):
    """A store of schema 6 (its runs hashed per package) gains the column, NULL for its runs,
    whose recorded provenance and hashes are kept as they were."""
    (spec,) = make_plan(
        registry, ["model1"], ["dropout"], [1], Protocol(dataset="synthetic"), applicability=False
    )
    Store(tmp_path).close()
    old = {k: v for k, v in _old_row(spec).items() if k != "provenance_scheme"}
    old |= {"params": json.dumps(old["params"]), "tuned": "[]", "dataset_options": "{}"}
    old |= {"optimizer_options": "{}"}
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("ALTER TABLE runs DROP COLUMN provenance_scheme")
        names = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
        db.execute(
            f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [old.get(n) for n in names],
        )
        db.execute("PRAGMA user_version = 6")
    db.close()
    Store(tmp_path).close()
    assert (tmp_path / f"{DB_NAME}.bak-v6").exists()
    (row,) = load(tmp_path).runs.to_dict(orient="records")
    assert pd.isna(row["provenance_scheme"])  # unknown, hence the earlier, per-package hashes
    # m008 and m009 then rehash the row (identity v6), from its recorded provenance
    assert row["config_hash"] == identity_v6.config_hash({**old, **row}) != old["config_hash"]
    assert row["reg_source_hash"] == "bbbbbbbbbbbb+bbbbbbbbbbbb"
    assert stale_reasons([spec], [row]) == {spec.config_hash: PER_OBJECT_NOTE}


@pytest.mark.slow
def test_plan_shows_only_the_edited_regularizers_cells_pending(cli_subprocess, site, tmp_path):
    """As an outside author meets it: install, run, edit one regularizer, plan."""
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(TESTS)]), **ENV}  # TESTS: fake_trainer
    grid = ["--arch", "model1", "--reg", "alpha,beta,alpha+beta", "--dataset", "synthetic"]
    grid += ["--epochs", "1", "--seeds", "1", "--experiment", str(tmp_path / "exp")]
    fake = ["--trainer", "fake_trainer:train", "--executor", "inprocess"]
    done = cli_subprocess("run", *grid, *fake, env=env)
    assert done.returncode == 0, done.stderr
    edit(
        site / "pairpkg" / "regs.py",
        "Dropout(_alpha_rate(params))",
        "Dropout(_alpha_rate(params) / 1)",
    )
    planned = cli_subprocess("plan", *grid, "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    states = {run["reg"]: (run["state"], run["why"]) for run in json.loads(planned.stdout)["runs"]}
    assert states["beta"] == ("done", None)
    for reg in ("alpha", "alpha+beta"):
        state, why = states[reg]
        assert state == "pending" and why.startswith("reg source hash "), states
    _, why = states["alpha+beta"]
    old, new = why.removeprefix("reg source hash ").split(" -> ")
    assert old.split("+")[1] == new.split("+")[1] and old.split("+")[0] != new.split("+")[0]


@pytest.mark.slow
def test_editing_a_dataset_plugin_requeues_its_runs(cli_subprocess, site, tmp_path):
    """A dataset's code is part of its runs' identity, as an architecture's is: edit the
    dataset (here how it mirrors the images) and `plan` shows its runs pending, saying why."""
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(TESTS)]), **ENV}
    grid = ["--arch", "model1", "--reg", "none,alpha", "--dataset", "flipped", "--epochs", "1"]
    grid += ["--dataset-option", "size=70", "--experiment", str(tmp_path / "exp")]
    fake = ["--trainer", "fake_trainer:train", "--executor", "inprocess"]
    done = cli_subprocess("run", *grid, *fake, env=env)
    assert done.returncode == 0, done.stderr
    planned = cli_subprocess("plan", *grid, "--json", env=env)
    assert {run["state"] for run in json.loads(planned.stdout)["runs"]} == {"done"}
    edit(site / "pairpkg" / "data.py", "[:, :, ::-1]", "[:, ::-1]")
    planned = cli_subprocess("plan", *grid, "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    runs = json.loads(planned.stdout)["runs"]
    assert [run["state"] for run in runs] == ["pending", "pending"]
    assert all(run["why"].startswith("dataset source hash ") for run in runs), runs


def _board_runs() -> tuple[pd.DataFrame, pd.DataFrame]:
    base = {"stage": "grid", "params": "{}", "tuned": "[]", "status": "ok", "error": None}
    base |= {"train_accuracy": 0.9, "test_accuracy": None, "total_params": 10, "train_time_s": 1.0}
    combination = {"reg": "mixup+label_smoothing", "reg_source_hash": "ff7a3020d50b+v3"}
    combination |= {"reg_source": "regbench-extras 0.1.0+local+regbench-extras 0.1.0+local"}
    rows = [
        {**base, "arch": "model1", "run_id": f"model1-mix-s{seed}", "seed": seed, **combination}
        | {"arch_source": "regbench 0.2.0", "arch_source_hash": "b9defec007ea"}
        | {"val_accuracy": 0.5 + seed / 100}
        for seed in (0, 1)
    ]
    rows.append({**base, "arch": "model1", "reg": "none", "run_id": "old", "seed": 0})
    rows[-1]["val_accuracy"] = 0.4  # recorded no provenance: nothing to show
    return pd.DataFrame(rows), pd.DataFrame(columns=["run_id", "epoch", "split", "metric", "value"])


@pytest.mark.parametrize("width", [60, 80, 200])
def test_leaderboard_wide_shows_each_cells_provenance_whole(width):
    runs, epochs = _board_runs()
    buffer = io.StringIO()
    board_text.render(runs, epochs, Console(file=buffer, width=width, no_color=True), wide=True)
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    items = [
        "model1 (regbench 0.2.0, b9defec0),",
        "mixup (regbench-extras 0.1.0+local, ff7a3020) +",
        "label_smoothing (regbench-extras 0.1.0+local, v3)",
    ]
    assert all(any(item in line for line in lines) for item in items), lines  # never split
    assert sum("built by" in line for line in lines) == 1  # none for `old`
    board = json.loads(leaderboard.to_json(runs, epochs))["leaderboard"]
    by_reg = {cell["reg"]: cell for cell in board}
    assert by_reg["mixup+label_smoothing"]["reg_source_hash"] == "ff7a3020d50b+v3"
    assert by_reg["none"]["arch_source"] is None
