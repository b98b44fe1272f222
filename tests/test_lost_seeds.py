"""A cell that lost seeds (failed or diverged) is not ranked, gets no verdict and is no baseline,
wherever the leaderboard's ranking is used: the terminal, `--json`, the report's HTML and
Markdown, its CI bars and `final --best` (compare: tests/test_compare.py). Its survivors are
the seeds that went best, so their mean would read better than the cell is (issue 33.5)."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from test_report_study import rankings_of

from regbench.reporting import board_figures, board_text
from regbench.reporting.report import write_report
from regbench.results import leaderboard, stats
from regbench.results.store import Store

SEEDS = range(6)
# dropout lost seeds 1, 3 and 5, and its three survivors have the best mean of all
VALUES = {
    "none": [0.90, 0.91, 0.89, 0.90, 0.91, 0.89],
    "l2": [0.92, 0.93, 0.92, 0.93, 0.92, 0.94],
    "dropout": [0.95, None, 0.96, None, 0.95, None],
}


def row(reg: str, seed: int, value: float | None, **more) -> dict:
    run_id = f"model1-{reg}-s{seed}"
    return {
        "run_id": run_id,
        "config_hash": run_id,
        "cell_hash": f"model1-{reg}",
        "stage": "grid",
        "arch": "model1",
        "reg": reg,
        "params": {},
        "tuned": "[]",
        "seed": seed,
        "dataset": "digits",
        "epochs": 2,
        "status": "ok" if value is not None else "diverged",
        "error": None if value is not None else "loss became nan at epoch 2",
        "val_accuracy": value,
        "train_accuracy": None if value is None else value + 0.02,
        "test_accuracy": None,
        "total_params": 10,
        "train_time_s": 1.0,
        "started_at": f"2026-01-01T00:00:{seed:02d}+00:00",
        **more,
    }


def runs_of(values: dict[str, list[float | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        [row(reg, s, v) for reg, vals in values.items() for s, v in enumerate(vals)]
    )


NO_EPOCHS = pd.DataFrame(columns=["run_id", "epoch", "split", "metric", "value", "elapsed_s"])


def folder_of(path: Path, values: dict[str, list[float | None]]) -> Path:
    store = Store(path)
    try:
        for reg, vals in values.items():
            for seed, value in enumerate(vals):
                store.record_run(row(reg, seed, value, params={}), [])
    finally:
        store.close()
    return path


def test_the_board_ranks_only_cells_that_kept_every_seed():
    board = leaderboard.table(runs_of(VALUES), NO_EPOCHS).set_index("reg")
    assert board.loc["l2", "rank"] == 1 and board.loc["none", "rank"] == 2
    dropout = board.loc["dropout"]
    assert pd.isna(dropout["rank"]) and not dropout["ranked"] and not dropout["tied"]
    assert (dropout["seeds"], dropout["planned"], dropout["flag"]) == (3, 6, "3 diverged")
    assert dropout["lost_seeds"] == {1: "diverged", 3: "diverged", 5: "diverged"}
    assert dropout["val_accuracy"] == pytest.approx(0.9533, abs=1e-4)  # over the survivors
    assert dropout["verdict"] == stats.NA and pd.isna(dropout["diff"])
    assert dropout["why_na"] == "lost seeds (3 diverged): not ranked"
    assert board.loc["l2", "verdict"] == stats.BETTER  # the one test Holm counts
    assert board.loc["l2", "p_holm"] == pytest.approx(board.loc["l2", "p_value"])
    assert list(board.index) == ["l2", "none", "dropout"]  # the unranked after the ranked


def test_the_terminal_shows_a_lost_cell_apart_with_its_seeds():
    buffer = io.StringIO()
    board_text.render(runs_of(VALUES), NO_EPOCHS, Console(file=buffer, width=200, no_color=True))
    text = buffer.getvalue()
    ranking, lost = text.split(board_text.LOST_TITLE)
    assert "dropout" not in ranking and "3/6" not in ranking
    (line,) = [line for line in lost.splitlines() if "3/6!" in line]
    assert "dropout" in line and "seeds 1, 3, 5 diverged" in line and "0.953" in line
    table = lost.split("\n! ")[0]  # the lost table, before the notes and the failed runs
    assert "vs none" not in table and "verdict" not in table and "better" not in table
    assert leaderboard.LOST_NOTE in " ".join(text.split())


def test_json_gives_a_lost_cell_no_rank_and_no_verdict():
    payload = json.loads(leaderboard.to_json(runs_of(VALUES), NO_EPOCHS))
    cells = {r["reg"]: r for r in payload["leaderboard"]}
    assert cells["dropout"]["rank"] is None and cells["dropout"]["ranked"] is False
    assert cells["dropout"]["verdict"] == "n/a" and cells["dropout"]["diff"] is None
    assert cells["dropout"]["lost_seeds"] == {"1": "diverged", "3": "diverged", "5": "diverged"}
    l2 = cells["l2"]
    assert (l2["rank"], l2["ranked"], l2["verdict"]) == (1, True, "better")


def test_a_baseline_that_lost_seeds_is_no_baseline():
    values = {**VALUES, "none": [0.90, None, 0.89, 0.90, 0.91, 0.89]}
    board = leaderboard.table(runs_of(values), NO_EPOCHS).set_index("reg")
    assert pd.isna(board.loc["none", "rank"]) and board.loc["none", "verdict"] == stats.NA
    assert board.loc["none", "why_na"] == "lost seeds (1 diverged): not ranked, no baseline"
    l2 = board.loc["l2"]
    assert l2["rank"] == 1 and l2["verdict"] == stats.NA and pd.isna(l2["diff"])
    assert l2["why_na"] == "none lost seeds (1 diverged): no baseline"
    buffer = io.StringIO()
    board_text.render(runs_of(values), NO_EPOCHS, Console(file=buffer, width=200, no_color=True))
    assert "none lost seeds (1 diverged): no baseline" in buffer.getvalue()


def test_rerunning_the_lost_seeds_ranks_the_cell():
    runs = runs_of(VALUES)
    again = [row("dropout", s, 0.80, started_at="2026-01-02T00:00:00+00:00") for s in (1, 3, 5)]
    board = leaderboard.table(pd.concat([runs, pd.DataFrame(again)]), NO_EPOCHS)
    dropout = board.set_index("reg").loc["dropout"]
    assert dropout["ranked"] and dropout["rank"] == 3 and dropout["lost_seeds"] == {}


@pytest.mark.slow
def test_the_report_shows_a_lost_cell_apart_unranked_and_untested(tmp_path):
    paths = write_report(folder_of(tmp_path, VALUES))
    (ranking,) = rankings_of(paths["html"])  # the one sortable table: the ranking
    assert [(r[0], r[2]) for r in ranking["rows"]] == [("1", "l2"), ("2", "none")]
    page = html.unescape(paths["html"].read_text(encoding="utf-8"))
    board = page.split('<h2 id="across">')[0]  # the leaderboard, before the answer across
    lost = board.split(f"<h4>{board_text.LOST_TITLE.capitalize()}</h4>")[1]
    assert "dropout" in lost and "3/6!" in lost and "seeds 1, 3, 5 diverged" in lost
    assert "better" not in lost and leaderboard.LOST_NOTE in page
    md = paths["markdown"].read_text(encoding="utf-8").split("## Figures")[0]
    ranked, apart = md.split(f"#### {board_text.LOST_TITLE.capitalize()}")
    assert "| dropout |" not in ranked
    (line,) = [line for line in apart.splitlines() if "| dropout |" in line]
    assert "| 3/6! |" in line and "seeds 1, 3, 5 diverged" in line and "better" not in line


def test_the_ci_bars_draw_ranked_cells_and_name_the_lost_ones():
    board = leaderboard.table(runs_of(VALUES), NO_EPOCHS)
    (ax,) = [a for a in board_figures.ci_bar_figure(board).axes if a.get_label() == "ci"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["model1 · l2", "model1 · none"]
    assert "not ranked, lost seeds: model1 · dropout 3/6" in ax.get_xlabel()


def test_final_best_never_picks_a_cell_that_lost_seeds(tmp_path, monkeypatch):
    from regbench.results import lookup
    from regbench.study import final

    folder = folder_of(tmp_path, VALUES)
    picked = []

    def finished_run(folder, run_id=None, arch=None, reg=None, cell=None, dataset=None):
        picked.append(cell)
        raise KeyboardInterrupt  # stop before training: the pick is what is tested

    monkeypatch.setattr(lookup, "finished_run", finished_run)
    with pytest.raises(KeyboardInterrupt):
        final(folder, best=True)
    assert picked == ["model1-l2"]


def test_final_best_says_so_when_every_cell_lost_seeds(tmp_path):
    from regbench.errors import RegbenchError
    from regbench.study import final

    folder = folder_of(tmp_path, {"dropout": VALUES["dropout"]})
    with pytest.raises(RegbenchError, match="every cell of .* lost seeds, so none is ranked"):
        final(folder, best=True)


@pytest.mark.slow
@given(
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 2), st.booleans()), min_size=1, max_size=6),
    st.booleans(),
)
@settings(max_examples=20)  # a board each
def test_only_complete_cells_rank_and_get_a_verdict(cells, baseline_lost):
    """Ranks count the complete cells only (1 + those printed above); a cell that lost a seed,
    or whose baseline did, is never tested."""
    rows = [row("none", s, 0.5 + 0.01 * s) for s in range(3)]
    if baseline_lost:
        rows[-1] = row("none", 2, None)
    for i, (mean, lost, tied_values) in enumerate(cells):
        for seed in range(3):
            value = None if seed < lost else mean + (0 if tied_values else 0.001 * seed)
            rows.append(row(f"reg{i}", seed, value, cell_hash=f"model1-reg{i}"))
    board = leaderboard.table(pd.DataFrame(rows), NO_EPOCHS)
    complete = board[board["ranked"]]
    assert (board["ranked"] == (board["failed"] == 0)).all()
    assert board.loc[~board["ranked"], "rank"].isna().all()
    assert (board.loc[~board["ranked"], "verdict"] == stats.NA).all()
    printed = [f"{v:.3f}" for v in complete["val_accuracy"]]
    for shown, rank in zip(printed, complete["rank"], strict=True):
        assert rank == 1 + sum(float(p) > float(shown) for p in printed)
    tested = board[board["verdict"].isin([stats.BETTER, stats.WORSE, stats.SAME])]
    assert tested["ranked"].all() and (not baseline_lost or tested.empty)
