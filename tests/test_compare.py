"""`regbench compare`: the same cells of several experiments, paired where seeds match."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from regbench.cli import main
from regbench.errors import RegbenchError
from regbench.reporting import compare_text
from regbench.results import compare
from regbench.results.leaderboard import LOST_NOTE
from regbench.results.store import Store


def experiment(folder: Path, cells: dict[tuple[str, str], list[float]], **protocol) -> Path:
    """Grid runs of `cells` (a value of None: a seed that diverged), with `protocol` columns."""
    store = Store(folder)
    tag = "-".join(f"{v}" for v in protocol.values())
    for (arch, reg), values in cells.items():
        for seed, value in enumerate(values):
            run_id = f"{arch}-{reg}-s{seed}-{folder.name}{tag}"
            store.record_run(
                {
                    **protocol,
                    "run_id": run_id,
                    "config_hash": run_id,
                    "status": "ok" if value is not None else "diverged",
                    "cell_hash": f"{arch}-{reg}-{folder.name}{tag}",
                    "stage": "grid",
                    "arch": arch,
                    "reg": reg,
                    "params": {"rate": 0.1} if reg == "dropout" else {},
                    "seed": seed,
                    "val_accuracy": value,
                    "train_accuracy": None if value is None else value + 0.1,
                    "test_accuracy": value,
                    "total_params": 10,
                    "train_time_s": 1.0,
                },
                [],
            )
    store.close()
    return folder


SHORT = [0.20, 0.25, 0.15, 0.22, 0.18, 0.21]
LONG = [0.40, 0.46, 0.33, 0.41, 0.37, 0.41]  # above SHORT on every seed: 6 seeds, a verdict


@pytest.fixture
def two(tmp_path):
    a = experiment(
        tmp_path / "short",
        {("model1", "none"): SHORT, ("model1", "dropout"): [0.30, 0.31, 0.28]},
    )
    b = experiment(
        tmp_path / "long",
        {("model1", "none"): LONG, ("model2", "none"): [0.5]},
    )
    return a, b


def test_cells_side_by_side_with_paired_differences(two):
    result = compare.compare(two)
    assert list(result["experiments"]) == ["short", "long"]
    cells = {(c["arch"], c["reg"]): c for c in result["cells"]}
    none = cells[("model1", "none")]
    assert none["experiments"]["short"]["seeds"] == 6
    assert none["experiments"]["long"]["val_by_seed"] == dict(enumerate(LONG))
    diff = none["differences"]["long"]
    assert diff["n_paired"] == 6 and diff["diff"] == pytest.approx(0.195, abs=1e-4)
    assert diff["verdict"] == "better" and diff["p_value"] == 2 / 2**6 and diff["p_t"] < 0.05
    from scipy.stats import mannwhitneyu  # P(long > short) over every pair of seeds

    expected = mannwhitneyu(LONG, SHORT).statistic / (len(LONG) * len(SHORT))
    assert diff["p_improvement"]["estimate"] == pytest.approx(expected)
    assert diff["p_improvement"]["low"] <= expected <= diff["p_improvement"]["high"]
    assert cells[("model1", "dropout")]["experiments"]["long"] is None
    assert cells[("model1", "dropout")]["differences"]["long"] is None
    assert cells[("model2", "none")]["experiments"]["short"] is None


def test_json_and_table_from_the_command_line(two, capsys):
    assert main(["compare", *map(str, two), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {c["reg"] for c in payload["cells"]} == {"none", "dropout"}
    buffer = io.StringIO()
    compare_text.render(two, Console(file=buffer, width=80, no_color=True))
    text = buffer.getvalue()
    assert "+0.195" in text and "better" in text and "long − short" in text
    assert "dropout" in text and "model2" in text


def test_same_folder_names_are_told_apart_by_path(tmp_path):
    a = experiment(tmp_path / "a" / "exp", {("model1", "none"): [0.2]})
    b = experiment(tmp_path / "b" / "exp", {("model1", "none"): [0.3]})
    result = compare.compare([a, b])
    assert list(result["experiments"]) == [str(a), str(b)]
    diff = result["cells"][0]["differences"][str(b)]
    assert diff["n_paired"] == 1 and diff["p_value"] is None and diff["verdict"] == "n/a"


def test_one_folder_or_a_folder_without_results_is_refused(two, tmp_path, capsys):
    with pytest.raises(RegbenchError, match="at least two"):
        compare.compare(two[:1])
    assert main(["compare", str(two[0]), str(tmp_path / "nothing")]) == 2
    assert "no regbench results" in capsys.readouterr().err


def test_protocols_inside_a_folder_are_never_pooled(tmp_path):
    a = experiment(tmp_path / "a", {("model1", "none"): [0.2, 0.25, 0.15]}, epochs=10)
    experiment(a, {("model1", "none"): [0.6, 0.65, 0.55]}, epochs=20)  # the better protocol
    b = experiment(tmp_path / "b", {("model1", "none"): [0.3, 0.35, 0.25]}, epochs=10)
    result = compare.compare([a, b])
    rows = {c["protocol"]: c for c in result["cells"]}
    assert set(rows) == {"epochs=10", "epochs=20"}
    assert rows["epochs=20"]["experiments"]["b"] is None
    ten = rows["epochs=10"]
    assert ten["experiments"]["a"]["val_accuracy"] == pytest.approx(0.2)  # not the 20-epoch one
    assert ten["differences"]["b"]["diff"] == pytest.approx(0.1)
    assert ten["differences"]["b"]["protocol_differs"] == []
    buffer = io.StringIO()
    compare_text.render([a, b], Console(file=buffer, width=160, no_color=True))
    assert "epochs=20" in buffer.getvalue()


def test_folders_of_different_protocols_compare_and_say_so(tmp_path):
    a = experiment(tmp_path / "ten", {("model1", "none"): [0.2, 0.25, 0.15]}, epochs=10)
    b = experiment(tmp_path / "twenty", {("model1", "none"): [0.3, 0.35, 0.25]}, epochs=20)
    result = compare.compare([a, b])
    assert result["protocols"] == {"ten": "epochs=10", "twenty": "epochs=20"}
    (cell,) = result["cells"]
    assert cell["differences"]["twenty"]["protocol_differs"] == ["epochs"]
    buffer = io.StringIO()
    compare_text.render([a, b], Console(file=buffer, width=160, no_color=True))
    text = buffer.getvalue()
    assert f"ten: {a} (epochs=10)" in text and f"twenty: {b} (epochs=20)" in text


def test_a_cell_that_lost_seeds_shows_as_ok_of_planned_and_is_not_compared(tmp_path):
    """Its survivors would read better than the cell is (the leaderboard's LOST_RULE): no
    difference, no verdict, and no place in Holm's count."""
    a = experiment(tmp_path / "a", {("model1", "none"): [0.2, None, 0.15]})
    b = experiment(tmp_path / "b", {("model1", "none"): [0.3, 0.35, 0.25, 0.3, 0.3, 0.3]})
    c = experiment(tmp_path / "c", {("model1", "none"): [0.31, 0.37, 0.26, 0.29, 0.32, 0.33]})
    for later in ([a, b], [b, a]):
        (cell,) = compare.compare(later)["cells"]
        figures = cell["experiments"]["a"]
        assert (figures["seeds"], figures["planned"], figures["failed"]) == (2, 3, 1)
        assert cell["experiments"]["b" if "b" in cell["experiments"] else "a"]["seeds"] >= 2
        assert figures["lost_seeds"] == {1: "diverged"}
        (difference,) = cell["differences"].values()
        assert difference["diff"] is None and difference["p_value"] is None
        assert difference["verdict"] == "n/a"
        assert difference["why_na"] == "lost seeds (a 1 diverged): not compared"
    payload = json.loads(compare.to_json([b, a, c]))  # one comparison tested: c - b
    tested = payload["cells"][0]["differences"]["c"]
    assert 0 < tested["p_value"] < 1 and tested["p_holm"] == pytest.approx(tested["p_value"])
    buffer = io.StringIO()
    compare_text.render([a, b], Console(file=buffer, width=160, no_color=True))
    text = buffer.getvalue()
    assert "(2/3!)" in text and "(6/6)" in text and "not compared" in text
    assert LOST_NOTE in " ".join(text.split())


def test_no_difference_on_any_seed_is_not_significant_and_valid_json(tmp_path):
    values = [0.125 + s / 16 for s in range(7)]  # 7 seeds: 2/2^7 survives Holm's 2 comparisons
    a = experiment(tmp_path / "a", {("model1", "none"): values})
    b = experiment(tmp_path / "b", {("model1", "none"): values})
    c = experiment(tmp_path / "c", {("model1", "none"): [v + 0.125 for v in values]})
    payload = json.loads(compare.to_json([a, b, c]), parse_constant=pytest.fail)  # no NaN
    differences = payload["cells"][0]["differences"]
    assert differences["b"]["verdict"] == "no significant difference"
    assert differences["b"]["p_value"] == 1.0 and differences["b"]["diff"] == 0
    assert differences["b"]["p_t"] is None  # the t-test's NaN: no spread, no difference
    assert differences["c"]["verdict"] == "better" and differences["c"]["p_value"] == 2 / 2**7
    assert differences["c"]["p_t"] == 0


def test_two_seeds_compare_as_underpowered(tmp_path):
    a = experiment(tmp_path / "a", {("model1", "none"): [0.2, 0.3]})
    b = experiment(tmp_path / "b", {("model1", "none"): [0.5, 0.6]})
    difference = compare.compare([a, b])["cells"][0]["differences"]["b"]
    assert difference["verdict"] == "underpowered" and difference["p_holm"] is None
    buffer = io.StringIO()
    compare_text.render([a, b], Console(file=buffer, width=160, no_color=True))
    assert "2 seeds: underpowered" in buffer.getvalue()


def test_at_80_columns_no_figure_or_value_is_split(tmp_path, cli):
    from rich.console import Console

    from regbench.reporting.compare_text import render

    base = ["run", "--arch", "model1", "--reg", "none,l2", "--dataset", "digits", "--epochs", "1"]
    base += ["--seeds", "2", "--trainer", "fake_trainer:train", "--executor", "inprocess"]
    assert cli(*base, "--experiment", str(tmp_path / "a")).returncode == 0
    odd = ["--param", "l2.strength=0.0602797", "--experiment", str(tmp_path / "b")]
    assert cli(*base, *odd).returncode == 0
    buffer = io.StringIO()
    render([tmp_path / "a", tmp_path / "b"], Console(file=buffer, width=80, no_color=True))
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "strength=0.0602797" in text and "…" not in text


def test_baseline_compares_each_experiments_cells_within_it(tmp_path, capsys):
    better = [v + 0.1 for v in SHORT]  # above `none` on every one of 6 seeds
    a = experiment(tmp_path / "a", {("model1", "none"): SHORT, ("model1", "l2"): better})
    b = experiment(tmp_path / "b", {("model1", "none"): LONG, ("model1", "l2"): LONG})
    result = compare.compare([a, b], baseline="none")
    assert result["baseline"] == "none"
    l2 = next(c for c in result["cells"] if c["reg"] == "l2")
    assert l2["experiments"]["a"]["vs_baseline"]["verdict"] == "better"
    assert l2["experiments"]["a"]["vs_baseline"]["diff"] == pytest.approx(0.1)
    assert l2["experiments"]["b"]["vs_baseline"]["diff"] == pytest.approx(0.0)
    assert "vs_baseline" not in compare.compare([a, b])["cells"][0]["experiments"]["a"]
    assert main(["compare", str(a), str(b), "--baseline", "none"]) == 0
    text = capsys.readouterr().out
    assert "a vs none" in text and "+0.100" in text and "better" in text
    assert main(["compare", str(a), str(b), "--baseline", "nosuchreg"]) == 2
    assert "--baseline" in capsys.readouterr().err
