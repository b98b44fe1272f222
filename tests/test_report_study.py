"""The report as a study needs it: valid HTML, a sortable leaderboard with the paired
statistics (and whatever columns the board gains), visualize figures, skipped cells apart from
failures, per-architecture shared axes, every seed as a point, and Markdown that stays text."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_report import ENVIRONMENT, fake_experiment, fake_run

from regbench.reporting import board_figures, figures, render
from regbench.reporting.report import write_report
from regbench.results.leaderboard import TIE_NOTE, table
from regbench.results.reader import load
from regbench.results.store import Store

pytestmark = pytest.mark.xdist_group("report_study")  # one worker writes the report fixture

VOID = {"meta", "img", "br", "hr", "input", "link"}


class Checker(HTMLParser):
    """Tag balance and the things a self-contained, sortable report must have."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.scripts: list[dict] = []
        self.tables: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs)
        if tag == "table":
            self.tables.append(attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


class Rankings(HTMLParser):
    """The headings and cell texts of each sortable table (a ranking per protocol)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.open = False
        self.cell: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "sortable") in attrs:
            self.open = True
            self.tables.append({"headers": [], "rows": []})
        elif self.open and tag == "tr":
            self.tables[-1]["rows"].append([])
        elif self.open and tag in ("th", "td"):
            self.cell = ""

    def handle_endtag(self, tag):
        if not self.open:
            return
        if tag == "table":
            self.open = False
            self.tables[-1]["rows"] = [row for row in self.tables[-1]["rows"] if row]
        elif tag in ("th", "td"):
            table = self.tables[-1]
            (table["headers"] if tag == "th" else table["rows"][-1]).append(self.cell or "")
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def rankings_of(path: Path) -> list[dict]:
    parser = Rankings()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tables


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    folder = fake_experiment(tmp_path_factory.mktemp("experiment"), seeds=(0, 1, 2))
    shots = folder / "figures" / "visualize" / "model1-none-s0-0000" / "gradcam"
    shots.mkdir(parents=True)
    png = figures.png_bytes(board_figures.accuracy_vs_time_figure(load(folder).runs))
    (shots / "gradcam.png").write_bytes(png)
    return folder


@pytest.fixture(scope="module")
def report(experiment, tmp_path_factory):
    return write_report(experiment, tmp_path_factory.mktemp("out"))


@pytest.mark.slow
def test_the_html_is_well_formed_and_its_one_script_is_inline(report):
    checker = Checker()
    checker.feed(report["html"].read_text(encoding="utf-8"))
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert checker.scripts == [{}]  # one inline script, nothing fetched
    assert {"class": "sortable"} in checker.tables


def test_the_leaderboard_carries_the_paired_comparison(report):
    text = report["html"].read_text(encoding="utf-8")
    assert "vs none (paired, ± 95% CI)" in text and "Holm" in text
    assert "baseline" in text
    md = report["markdown"].read_text(encoding="utf-8")
    assert "verdict (Holm-adjusted p)" in md


def test_visualize_figures_in_the_folder_are_included(report, experiment):
    text = report["html"].read_text(encoding="utf-8")
    assert "model1-none-s0-0000: gradcam / gradcam" in text
    md = report["markdown"].read_text(encoding="utf-8")
    link = [line for line in md.splitlines() if "gradcam.png" in line][0]
    target = link[link.index("](") + 2 : -1]
    assert (report["markdown"].parent / target).resolve().is_file()


def test_runs_of_one_architecture_share_their_y_axes(experiment):
    runs, epochs = load(experiment)
    mine = runs[(runs["arch"] == "model1") & (runs["status"] == "ok")]
    ids = list(mine["run_id"])
    limits = figures.shared_limits(epochs, mine)
    ranges = {
        tuple(ax.get_ylim())
        for run_id in ids
        for ax in figures.accuracy_figure(epochs, run_id, ylims=limits).axes
        if ax.get_label() == "accuracy"
    }
    assert len(ranges) == 1
    low, high = ranges.pop()
    values = epochs[epochs["run_id"].isin(ids) & (epochs["metric"] == "accuracy")]["value"]
    assert low < values.min() and high > values.max()
    assert low < mine["train_accuracy"].min() and high > mine["train_accuracy"].max()


def test_ci_bars_plot_every_seed_and_no_interval_for_one_seed(tmp_path):
    folder = fake_experiment(tmp_path, archs=("model1",), seeds=(0, 1, 2), extras=False)
    store = Store(folder)
    store.record_run(*fake_run("model2-none-s0-0000", "model2", "none", 0, 3))
    store.close()
    runs, epochs = load(folder)
    board = table(runs, epochs)
    figure = board_figures.ci_bar_figure(board)
    (ax,) = [a for a in figure.axes if a.get_label() == "ci"]
    dots = [c for c in ax.collections if c.get_label() == "seeds"]
    assert sum(len(c.get_offsets()) for c in dots) == 3 + 3 + 1
    bars = [c for c in ax.containers if c.get_label() == "95% CI"]
    (errorbar,) = bars
    assert len(errorbar.lines[2][0].get_segments()) == 2  # the n=1 cell has no interval
    labels = [t.get_text() for t in ax.child_axes[0].get_yticklabels()]
    assert any(label.endswith("(n=1)") and "±" not in label for label in labels)


def _jsdom() -> str | None:
    """Where node finds jsdom (NODE_PATH or a global install), or None."""
    import shutil
    import subprocess

    if not shutil.which("node"):
        return None
    found = subprocess.run(
        ["node", "-e", "console.log(require.resolve('jsdom'))"], capture_output=True, text=True
    )
    return found.stdout.strip() if found.returncode == 0 else None


@pytest.mark.skipif(
    _jsdom() is None, reason="needs node with jsdom (npm install jsdom; NODE_PATH=.../node_modules)"
)
def test_the_leaderboard_sorts_when_its_headings_are_clicked(tmp_path):
    import json
    import subprocess

    folder = fake_experiment(tmp_path, seeds=(0, 1), extras=False)
    store = Store(folder)
    store.record_run(*fake_run("model3-none-s0-0000", "model3", "none", 0, 3))
    store.close()
    paths = write_report(folder)
    script = Path(__file__).parent / "js" / "sort_check.js"
    done = subprocess.run(
        ["node", str(script), str(paths["html"])], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["errors"] == []
    vals = [float(v.split()[0]) for v in result["val acc first click"]]
    assert vals == sorted(vals, reverse=True)
    vals = [float(v.split()[0]) for v in result["val acc second click"]]
    assert vals == sorted(vals)
    assert result["reg first click"] == sorted(result["reg first click"])  # text: from A
    assert result["reg second click"] == sorted(result["reg second click"], reverse=True)
    assert result["sorted by"] == ["seeds", "ascending"]  # aria-sort: the last one clicked, twice
    assert result["rank at start"] == "ascending"  # the table arrives sorted by rank
    page = paths["html"].read_text(encoding="utf-8")
    assert "table.sortable td { white-space: nowrap; }" in page  # `0.625 ± 0.025` on one line
    assert 'th[aria-sort="ascending"]::after' in page  # and the sorted column shows an arrow
    assert result["seeds first click"] == ["2", "2", "2", "2", "1"]


def test_a_large_sweep_draws_no_run_figures_and_says_why():
    import pandas as pd

    from regbench.reporting.gallery import MAX_RUN_FIGURES, curves_note, drawn

    grid = pd.DataFrame(
        [
            {"run_id": f"c{c}-s{s}", "arch": "model1", "reg": "dropout", "params": {"rate": c}}
            | {"seed": s, "stage": "grid", "status": "ok"}
            for s in range(10)
            for c in range(10)
        ]
    )
    assert drawn(grid).empty
    assert f"up to {MAX_RUN_FIGURES} runs; this one has 100" in curves_note(grid)
    small = grid.head(MAX_RUN_FIGURES)
    assert len(drawn(small)) == MAX_RUN_FIGURES and curves_note(small) == ""


@pytest.mark.slow
def test_each_protocol_is_ranked_apart_and_new_board_columns_show(tmp_path, monkeypatch):
    import regbench.reporting.report as report_module

    def wider(runs, epochs, baseline="none"):
        board = table(runs, epochs, baseline)
        return board.assign(
            protocol=board["arch"].map({"model1": "optimizer=sgd", "model2": "optimizer=adam"}),
            tied=True,
            seeds_lost=1,
            notes=[["few seeds", "unstable"]] * len(board),
        ).sort_values("arch")

    monkeypatch.setattr(report_module, "table", wider)
    paths = write_report(fake_experiment(tmp_path, seeds=(0,), extras=False))  # a figure a run
    text = paths["html"].read_text(encoding="utf-8")
    board, drawn = text.split('<h2 id="figures">')
    board, summary = board.split('<h2 id="across">')
    assert re.findall(r"<h3>Protocol: (.*?)</h3>", board) == ["optimizer=sgd", "optimizer=adam"]
    # the answer across architectures, per protocol too
    assert re.findall(r"<h3>Protocol: (.*?)</h3>", summary) == ["optimizer=sgd", "optimizer=adam"]
    # the figures follow the board's protocols: the runs its cells average
    assert re.findall(r"<h3>Protocol: (.*?)</h3>", drawn) == ["optimizer=sgd", "optimizer=adam"]
    assert (paths["figures"] / "grid-optimizer_adam.png").is_file()
    rankings = rankings_of(paths["html"])
    assert len(rankings) == 2
    for ranking, arch in zip(rankings, ("model1", "model2"), strict=True):
        assert ranking["headers"][:3] == ["#", "arch", "reg"]
        assert ranking["headers"][-2:] == ["seeds lost", "notes"]  # added columns, own names
        assert [row[1] for row in ranking["rows"]] == [arch, arch]
        for row in ranking["rows"]:
            assert row[0].endswith("=") and row[-2:] == ["1", "few seeds, unstable"]
    assert TIE_NOTE in html.unescape(text)  # the terminal leaderboard's own words
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "### Protocol: optimizer=sgd" in md and "### Protocol: optimizer=adam" in md
    assert "| seeds lost | notes |" in md


@pytest.mark.slow
def test_skipped_cells_are_reported_apart_from_failed_runs(tmp_path):
    folder = fake_experiment(tmp_path, archs=("model1",), extras=False)
    store = Store(folder)
    reason = "not applicable: batchnorm needs a conv layer"
    row = {"run_id": "model1-batchnorm-s0-skip", "config_hash": "skip", "stage": "grid"}
    row |= {"arch": "model1", "reg": "batchnorm", "params": {}, "seed": 0}
    store.record_run({**row, "status": "skipped", "error": reason, **ENVIRONMENT}, [])
    store.close()
    paths = write_report(folder)
    for text in (paths["html"].read_text("utf-8"), paths["markdown"].read_text("utf-8")):
        failed = text.index("Failed runs")
        skipped = text.index("Skipped cells")
        assert failed < skipped and "No run failed." in text[failed:skipped]
        assert reason in text[skipped:]
    assert "1 of them skipped as not applicable" in text
    (ranking,) = rankings_of(paths["html"])
    assert sorted(row[2] for row in ranking["rows"]) == ["dropout", "none"]  # never skipped


@given(st.text())
def test_markdown_cells_stay_one_line_of_text(text):
    cell = render.md_cell(text)
    assert "\n" not in cell and "\r" not in cell
    assert "<" not in cell and ">" not in cell  # no raw HTML gets through
    assert cell.replace("\\|", "").count("|") == 0  # every pipe escaped: the cell never splits
