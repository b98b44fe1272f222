"""The leaderboard: ranked by mean validation accuracy with a 95% CI across seeds."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from regbench.reporting import board_text
from regbench.results import leaderboard


def experiment() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, epochs = [], []
    values = {("model3", "batchnorm"): [0.60, 0.62, 0.64], ("model1", "none"): [0.30, 0.10, 0.20]}
    for (arch, reg), vals in values.items():
        for seed, val in enumerate(vals):
            run_id = f"{arch}-{reg}-s{seed}"
            rows.append(
                {
                    "run_id": run_id,
                    "stage": "grid",
                    "arch": arch,
                    "reg": reg,
                    "params": "{}",
                    "tuned": "[]",
                    "seed": seed,
                    "status": "ok",
                    "error": None,
                    "val_accuracy": val,
                    "train_accuracy": val + 0.1,
                    "test_accuracy": 0.99,
                    "total_params": 10,
                    "train_time_s": 2.0,
                }
            )
            epochs += [
                {
                    "run_id": run_id,
                    "epoch": e,
                    "split": "val",
                    "metric": "accuracy",
                    "value": val * e / 3,
                    "elapsed_s": e,
                }
                for e in (1, 2, 3)
            ]
    rows.append(
        {
            "run_id": "model2-l2-s0",
            "stage": "grid",
            "arch": "model2",
            "reg": "l2",
            "params": '{"strength": 0.01}',
            "tuned": "[]",
            "seed": 0,
            "status": "diverged",
            "error": "loss became nan at epoch 1",
        }
    )
    rows.append({**rows[0], "run_id": "final-x", "stage": "final", "val_accuracy": None})
    return pd.DataFrame(rows), pd.DataFrame(epochs)


def test_ranked_by_validation_with_a_t_interval():
    runs, epochs = experiment()
    board = leaderboard.table(runs, epochs)
    assert list(board["arch"]) == ["model3", "model1"] and list(board["rank"]) == [1, 2]
    top = board.iloc[0]
    assert top["seeds"] == 3 and top["val_accuracy"] == pytest.approx(0.62)
    # t(0.975, 2) = 4.303; sd = 0.02; half-width = 4.303 * 0.02 / sqrt(3)
    assert top["val_ci95"] == pytest.approx(4.3027 * 0.02 / 3**0.5, rel=1e-3)
    assert top["gap"] == pytest.approx(0.1)
    assert top["val_curve"] == "▁▄█"


def test_rendering_shows_intervals_and_failures_plainly():
    runs, epochs = experiment()
    buffer = io.StringIO()
    board_text.render(runs, epochs, Console(file=buffer, width=200, no_color=True))
    text = buffer.getvalue()
    assert "0.620 ± 0.050" in text
    assert "model2-l2-s0  diverged: loss became nan at epoch 1" in text
    assert "\x1b[" not in text  # no colour codes when not a terminal


def test_json_has_the_board_and_the_failures():
    payload = json.loads(leaderboard.to_json(*experiment()))
    assert [row["arch"] for row in payload["leaderboard"]] == ["model3", "model1"]
    assert payload["failed"][0]["status"] == "diverged"


def test_test_accuracy_never_ranks():
    runs, epochs = experiment()
    runs.loc[runs["arch"] == "model1", "test_accuracy"] = 1.0
    assert leaderboard.table(runs, epochs).iloc[0]["arch"] == "model3"


def test_cells_are_configurations_and_a_seed_counts_once():
    runs, epochs = experiment()
    runs["cell_hash"] = runs["arch"] + "-a"
    again = runs[runs["run_id"] == "model1-none-s0"].assign(run_id="retry", val_accuracy=0.9)
    longer = runs[runs["arch"] == "model1"].assign(
        cell_hash="model1-b", run_id=lambda f: f["run_id"] + "-10ep"
    )
    board = leaderboard.table(pd.concat([runs, again, longer]), epochs)
    model1 = board[board["arch"] == "model1"]
    assert len(model1) == 2 and list(model1["seeds"]) == [3, 3]  # two protocols, 3 seeds each
    assert model1["val_accuracy"].max() == pytest.approx((0.9 + 0.1 + 0.2) / 3)


def test_a_lost_seed_counts_and_flags_its_cell():
    runs, epochs = experiment()
    lost = runs[runs["run_id"] == "model3-batchnorm-s2"].assign(
        run_id="model3-batchnorm-s3", seed=3, status="diverged", val_accuracy=None
    )
    failed = lost.assign(run_id="model3-batchnorm-s4", seed=4, status="failed")
    retried = runs[runs["run_id"] == "model1-none-s0"].assign(status="failed", started_at="0")
    runs = pd.concat([retried, runs, lost, failed])  # model1's seed 0 failed, then finished
    board = leaderboard.table(runs, epochs).set_index("arch")
    assert board.loc["model3", ["seeds", "planned", "failed"]].tolist() == [3, 5, 2]
    assert board.loc["model3", "flag"] == "1 diverged, 1 failed"
    assert board.loc["model1", ["seeds", "planned", "failed", "flag"]].tolist() == [3, 3, 0, ""]
    assert board.loc["model3", "val_accuracy"] == pytest.approx(0.62)  # over the 3 that finished
    buffer = io.StringIO()
    board_text.render(runs, epochs, Console(file=buffer, width=200, no_color=True))
    text = buffer.getvalue()
    assert "3/5!" in text and "3/3" in text and "3/3!" not in text
    assert leaderboard.LOST_NOTE in text
    rows = json.loads(leaderboard.to_json(runs, epochs))["leaderboard"]
    assert {r["arch"]: (r["seeds"], r["planned"], r["failed"]) for r in rows} == {
        "model3": (3, 5, 2),
        "model1": (3, 3, 0),
    }


def test_skipped_runs_are_not_planned_seeds():
    runs, epochs = experiment()
    skipped = runs[runs["run_id"] == "model1-none-s0"].assign(
        run_id="model1-none-s7", seed=7, status="skipped", val_accuracy=None
    )
    board = leaderboard.table(pd.concat([runs, skipped]), epochs).set_index("arch")
    assert board.loc["model1", ["seeds", "planned", "failed"]].tolist() == [3, 3, 0]


def test_equal_figures_at_the_printed_precision_share_a_rank():
    runs, epochs = experiment()
    copy = runs[(runs["arch"] == "model3") & (runs["stage"] == "grid")].assign(
        arch="model4", run_id=lambda f: f["run_id"] + "-m4", val_accuracy=[0.6004, 0.62, 0.64]
    )
    board = leaderboard.table(pd.concat([runs, copy]), epochs)
    assert list(zip(board["arch"], board["rank"], board["tied"], strict=True)) == [
        ("model4", 1, True),  # 0.62013 and 0.62000 both print 0.620
        ("model3", 1, True),
        ("model1", 3, False),
    ]
    buffer = io.StringIO()
    board_text.render(pd.concat([runs, copy]), epochs, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert text.count("1=") == 2 and leaderboard.TIE_NOTE in text


def test_protocols_are_ranked_apart_and_labelled():
    runs, epochs = experiment()
    runs["epochs"], runs["lr_schedule"] = 3, "constant"
    cosine = runs[runs["arch"] == "model1"].assign(
        lr_schedule="cosine", run_id=lambda f: f["run_id"] + "-cos", val_accuracy=0.9
    )
    both = pd.concat([runs, cosine])
    board = leaderboard.table(both, epochs)
    assert list(zip(board["protocol"], board["arch"], board["rank"], strict=True)) == [
        ("epochs=3, lr_schedule=constant", "model3", 1),
        ("epochs=3, lr_schedule=constant", "model1", 2),
        ("epochs=3, lr_schedule=cosine", "model1", 1),
    ]
    assert set(board["epochs"]) == {3}
    payload = json.loads(leaderboard.to_json(both, epochs))
    assert payload["protocols"] == [
        "epochs=3, lr_schedule=constant",
        "epochs=3, lr_schedule=cosine",
    ]
    first = payload["leaderboard"][0]
    assert first["epochs"] == 3 and first["protocol_values"]["lr_schedule"] == "constant"
    buffer = io.StringIO()
    board_text.render(both, epochs, Console(file=buffer, width=200, no_color=True))
    text = buffer.getvalue()
    assert "leaderboard: epochs=3, lr_schedule=constant" in text
    assert "leaderboard: epochs=3, lr_schedule=cosine" in text


@pytest.mark.slow
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8))
def test_rank_is_one_plus_the_cells_printed_above(means):
    rows = [
        {
            "run_id": f"m{i}",
            "stage": "grid",
            "arch": f"model{i}",
            "reg": "none",
            "params": "{}",
            "tuned": "[]",
            "seed": 0,
            "status": "ok",
            "val_accuracy": mean,
            "train_accuracy": mean,
            "test_accuracy": mean,
            "total_params": 1,
            "train_time_s": 1.0,
        }
        for i, mean in enumerate(means)
    ]
    board = leaderboard.table(
        pd.DataFrame(rows), pd.DataFrame(columns=["run_id", "epoch", "split", "metric", "value"])
    )
    printed = [f"{v:.3f}" for v in board["val_accuracy"]]
    for shown, rank, tied in zip(printed, board["rank"], board["tied"], strict=True):
        assert rank == 1 + sum(float(p) > float(shown) for p in printed)
        assert tied == (printed.count(shown) > 1)
    assert list(board["rank"]) == sorted(board["rank"])


@pytest.mark.parametrize("width", [80, 120, 200])
def test_at_any_width_run_ids_and_figures_stay_whole(width):
    """`leaderboard --wide` on an 80-column terminal: every run id whole on a line of its own,
    every figure unsplit, and a line naming the columns left out."""
    runs, epochs = experiment()
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True)
    board_text.render(runs, epochs, console, wide=True)
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    board = leaderboard.table(runs, epochs)
    for run_id in (i for ids in board["run_ids"] for i in ids):
        assert any(line.split() and line.split()[-1] == run_id for line in lines), run_id
    text = buffer.getvalue()
    assert "0.620" in text and "…" not in text
    narrow = text.startswith("(narrow:")  # said whenever columns are left out
    assert ("train acc" in text.split("\n", 1)[1]) != narrow
    assert narrow or width > 80
