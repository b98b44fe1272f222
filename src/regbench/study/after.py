"""After the grid: `final` (retrain the best on train+validation, test once), `report` and
`visualize`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regbench.design.experiment import Experiment
from regbench.errors import RegbenchError
from regbench.study.grid import load
from regbench.study.recording import Recorder
from regbench.study.settings import (
    Interrupted,
    Observer,
    check_data,
    executor_options,
    load_data,
)

if TYPE_CHECKING:
    from regbench.plugins.manager import Registry


def final(
    folder: str | Path,
    *,
    arch: str | None = None,
    reg: str | None = None,
    best: bool = False,
    epochs: int | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    observer: Observer | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Retrain one cell on train+validation and read its test split once (the lab's last step).

    `folder` is the experiment folder. The cell is `arch` + `reg` (its finished run with the
    best validation accuracy), or the leaderboard's best with `best=True` (its first ranked cell:
    one that lost seeds is not ranked, so never picked); it keeps that cell's
    protocol and hyperparameters, with `epochs` (default: the cell's own) and `seed` (one final
    run; the CLI's `--seeds` calls this once per seed). `dataset` keeps to the runs trained
    on it (a folder may hold several); `data_dir` and `cache_dir` are where the data is, as
    for `run`; `observer` hears the run's progress. Returns the final run's
    results row (its `status` says whether it finished ok; `figure`, its training curves).
    """
    from regbench.design.experiment import check_protocol
    from regbench.design.plan import RunSpec
    from regbench.engine.executor import Hooks, run_in_process
    from regbench.plugins.manager import registry
    from regbench.results import leaderboard
    from regbench.results.lookup import finished_run, of_dataset
    from regbench.results.store import Store

    folder = Path(folder)
    experiment = Experiment.create(
        experiment=folder, data_dir=data_dir, cache_dir=cache_dir, seeds=[seed], epochs=epochs
    )
    if best:
        results = load(folder)
        runs = results.runs if dataset is None else of_dataset(results.runs, dataset, folder)
        board = leaderboard.table(runs, results.epochs)
        if board.empty:
            raise RegbenchError(f"best: {folder} has no finished grid runs to choose from")
        ranked = board[board["ranked"]]  # a cell that lost seeds is never the best
        if ranked.empty:
            raise RegbenchError(
                f"best: every cell of {folder} lost seeds, so none is ranked; rerun the lost "
                "seeds (the same `regbench run`), or name a cell (--arch and --reg)"
            )
        source = finished_run(folder, cell=ranked.iloc[0]["cell"], dataset=dataset)
    elif arch and reg:
        source = finished_run(folder, arch=arch, reg=reg, dataset=dataset)
    else:
        raise RegbenchError("choose the cell with arch and reg, or take the best with best=True")
    cell = RunSpec.from_row(source)
    spec = replace(
        cell,
        seed=experiment.seeds[0],
        stage="final",
        tuned=(),
        protocol=replace(cell.protocol, epochs=epochs or cell.protocol.epochs),
    )
    check_protocol(spec.protocol, spec.execution)
    check_data([spec], experiment, registry())
    observer = observer or Observer()
    with Store(folder) as store:
        record = Recorder(store, observer)
        options = replace(executor_options(experiment), models_dir=folder / "models")
        observer.begin(1, 0, folder)
        try:
            run_in_process(
                [spec],
                options,
                Hooks(on_result=record, on_start=observer.started, on_progress=observer.update),
            )
        except KeyboardInterrupt:
            raise Interrupted(folder, 0) from None
        finally:
            observer.end()
    row = record.rows[0]
    if row["status"] == "ok":
        row["figure"] = str(_final_figure(folder, row))
        if (folder / "report.html").exists():  # keep an existing report up to date
            report(folder)
    return row


def _final_figure(folder: Path, row: Mapping[str, Any]) -> Path:
    from regbench.reporting.figures import final_figure

    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    path = figures / f"{row['run_id']}.png"
    figure = final_figure(load(folder).epochs, row["run_id"], test_accuracy=row["test_accuracy"])
    figure.savefig(path, dpi=120)
    return path


def report(
    folder: str | Path, out: str | Path | None = None, baseline: str = "none"
) -> dict[str, Path]:
    """Write report.html, report.md and figures/ for an experiment; return their paths.
    Each cell is compared with the `baseline` regularizer of its architecture."""
    from regbench.reporting.report import write_report

    return write_report(Path(folder), Path(out) if out else None, baseline=baseline)


SPLITS = {  # the data `visualize` may draw an image from
    "validation": lambda data: (data.x_val, data.y_val),
    "test": lambda data: (data.x_test, data.y_test),
}


def visualize(
    folder: str | Path,
    *,
    run: str | None = None,
    arch: str | None = None,
    reg: str | None = None,
    image: str | Path | None = None,
    class_name: str | None = None,
    split: str = "validation",
    visualizers: Sequence[str] = ("featuremaps", "filters", "gradcam"),
    layers: int = 4,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    dataset: str | None = None,
) -> list[Path]:
    """Draw what a trained run's model sees (feature maps, filters, Grad-CAM, ...); return the
    files written. The image is `image`, or the first image of `class_name` (default: horse,
    the lab's photo) in the run's `split`: "validation" by default, so that looking at a model
    never shows its test images; "test" when asked. `dataset` keeps to the runs trained on
    it, as for `final`."""
    from regbench.plugins.manager import registry
    from regbench.results.lookup import finished_run, open_model

    folder = Path(folder)
    if not run and not (arch and reg):
        raise RegbenchError("name a run with --run RUN_ID, or a cell with --arch and --reg")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise RegbenchError(f"layers must be at least 1; got {layers!r}")
    if split not in SPLITS:
        raise RegbenchError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    plugins = registry()
    drawers = [plugins.get("visualizers", name) for name in visualizers]
    if not drawers:
        raise RegbenchError("choose at least one visualizer")
    experiment = Experiment.create(data_dir=data_dir, cache_dir=cache_dir)
    row = finished_run(folder, run, arch, reg, dataset=dataset)
    options = json.loads(row["dataset_options"] or "{}")
    data = load_data(experiment, row["dataset"], options, int(row["seed"]), plugins)
    model = open_model(row, folder)
    if image is not None:
        from regbench.plugins.visualizers import load_image

        if class_name is not None:
            raise RegbenchError("--class picks an image of the data; it cannot go with --image")
        picture, label = load_image(image, model.input_shape[1:]), None
    else:
        images, labels = SPLITS[split](data)
        wanted = _class_index(class_name, data.class_names)
        if wanted is not None and not (labels == wanted).any():
            raise RegbenchError(
                f"the {split} split has no image of class {data.class_names[wanted]!r}; "
                f"choose another class, or the {'test' if split == 'validation' else 'validation'}"
                " split"
            )
        index = 0 if wanted is None else int((labels == wanted).argmax())
        picture, label = images[index], int(labels[index])
    out_dir = Path(out) if out else folder / "figures" / "visualize" / row["run_id"]
    try:  # before any visualizer runs: a folder that cannot be made is not a plugin's fault
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegbenchError(
            f"cannot make the figures folder {out_dir}: {exc.strerror or exc}; name a folder "
            "with --output-dir (out= in Python)"
        ) from None
    options = {
        "layers": layers,
        "class_names": data.class_names,
        "label": label,
        "true_label": label,  # the picked image's class (None for --image): figures name it
        "title": f"{row['arch']} + {row['reg']}",
    }
    written: list[Path] = []
    for name, drawer in zip(visualizers, drawers, strict=True):
        written += _drawn(name, drawer, model, picture, out_dir / drawer.name, options, plugins)
    return written


def _drawn(
    name: str,
    drawer: Any,
    model: Any,
    picture: Any,
    out_dir: Path,
    options: dict[str, Any],
    plugins: Registry,
) -> list[Path]:
    """What one visualizer wrote; a visualizer that raises, or returns anything but a list
    of paths, is one line naming it and its distribution (the files drawn before it stay)."""
    try:
        files = drawer.render(model, picture, out_dir, options)
        if not isinstance(files, list | tuple) or not all(isinstance(f, str | Path) for f in files):
            raise TypeError(f"render returned {type(files).__name__}, not a list of paths")
    except RegbenchError:
        raise
    except Exception as exc:
        origin, _ = plugins.provenance("visualizers", name)
        message = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise RegbenchError(
            f"visualizer {name!r} ({origin}) failed: {type(exc).__name__}: {message}; "
            "report it to the plugin's author, or leave it out of --visualizers"
        ) from None
    return [Path(f) for f in files]


def _class_index(wanted: str | None, names: Sequence[str]) -> int | None:
    if wanted is None:
        return list(names).index("horse") if "horse" in names else None  # the lab's photo
    if wanted in names:
        return list(names).index(wanted)
    if wanted.isdecimal() and int(wanted) < len(names):
        return int(wanted)
    raise RegbenchError(f"--class {wanted!r} is not a class of this dataset ({', '.join(names)})")
