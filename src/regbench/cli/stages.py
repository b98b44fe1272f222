"""`regbench visualize`, `final` and `report`: what comes after the grid."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from regbench.cli.common import EXIT_FAILED_RUNS, EXIT_OK, check_data, console, load_options
from regbench.cli.common import cache_dir as _cache
from regbench.errors import RegbenchError


def _experiment(args: argparse.Namespace) -> Path:
    return Path(args.experiment or Path("reports") / args.dataset)


def _class_index(wanted: str | None, names: tuple[str, ...]) -> int | None:
    if wanted is None:
        return names.index("horse") if "horse" in names else None  # the lab's photo
    if wanted in names:
        return names.index(wanted)
    if wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    raise RegbenchError(f"--class {wanted!r} is not a class of this dataset ({', '.join(names)})")


def cmd_visualize(args: argparse.Namespace) -> int:
    from regbench.plugins.manager import registry
    from regbench.results.lookup import finished_run, open_model

    folder = _experiment(args)
    if not args.run and not (args.arch and args.reg):
        raise RegbenchError("name a run with --run RUN_ID, or a cell with --arch and --reg")
    names = [n.strip() for n in args.with_.split(",") if n.strip()]
    visualizers = [registry().get("visualizers", name) for name in names]
    row = finished_run(folder, args.run, args.arch, args.reg)
    dataset = registry().get("datasets", row["dataset"])
    options = load_options(args, json.loads(row["dataset_options"] or "{}"))
    data = dataset.load(int(row["seed"]), options)  # the run's own split: its test images
    class_names = data.class_names
    model = open_model(row)
    if args.image:
        from regbench.plugins.visualizers import load_image

        if args.class_:
            raise RegbenchError("--class picks a test image; it cannot go with --image")
        image, label = load_image(args.image, model.input_shape[1:]), None
    else:
        wanted = _class_index(args.class_, class_names)
        if wanted is not None and not (data.y_test == wanted).any():
            raise RegbenchError(f"the test split has no image of class {class_names[wanted]!r}")
        index = 0 if wanted is None else int((data.y_test == wanted).argmax())
        image, label = data.x_test[index], int(data.y_test[index])
    out_dir = Path(args.out or folder / "figures" / "visualize" / row["run_id"])
    written: list[Path] = []
    for visualizer in visualizers:
        written += visualizer.render(
            model,
            image,
            out_dir / visualizer.name,
            {
                "layers": args.layers,
                "class_names": class_names,
                "label": label,
                "title": f"{row['arch']} + {row['reg']}",
            },
        )
    out = console()
    for path in written:
        out.print(str(path), markup=False, highlight=False)
    return EXIT_OK


def cmd_final(args: argparse.Namespace) -> int:
    """Retrain one cell on train+validation and read the test split once (the lab's last step)."""

    from regbench.engine.executor import ExecutorOptions, Hooks, run_in_process
    from regbench.engine.plan import RunSpec, check_protocol
    from regbench.results import leaderboard
    from regbench.results.lookup import finished_run
    from regbench.results.reader import load
    from regbench.results.store import Store

    folder = _experiment(args)
    runs, epochs = load(folder)
    if args.best:
        board = leaderboard.table(runs, epochs)
        if board.empty:
            raise RegbenchError(f"--best: {folder} has no finished grid runs to choose from")
        cell = board.iloc[0]["cell"]
        source = finished_run(folder, cell=cell)  # the best cell's protocol and hyperparameters
    elif args.arch and args.reg:
        source = finished_run(folder, arch=args.arch, reg=args.reg)
    else:
        raise RegbenchError("choose the cell with --arch and --reg, or take the best with --best")
    if args.seed < 0:
        raise RegbenchError(f"--seed must be 0 or more; got {args.seed}")
    cell = RunSpec.from_row(source)
    spec = replace(
        cell,
        seed=args.seed,
        stage="final",
        tuned=(),
        protocol=replace(cell.protocol, epochs=args.epochs),
    )
    check_protocol(spec.protocol, spec.execution)
    check_data([spec], args)
    store = Store(folder)
    out = console()
    results = []
    try:

        def on_result(result) -> None:
            result.row.pop("traceback", None)
            store.record_run(result.row, result.epochs)
            results.append(result.row)

        options = ExecutorOptions(
            data_dir=load_options(args, {})["data_dir"],
            cache_dir=_cache(args),
            models_dir=folder / "models",
        )
        out.print(
            f"final stage: {spec.arch} + {spec.reg}, {args.epochs} epochs on train+validation"
        )
        run_in_process([spec], options, Hooks(on_result=on_result))
    finally:
        store.close()
    row = results[0]
    if row["status"] != "ok":
        out.print(f"final run {row['run_id']} {row['status']}: {row.get('error')}")
        return EXIT_FAILED_RUNS
    from regbench.reporting.figures import final_figure

    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    path = figures / f"{row['run_id']}.png"
    figure = final_figure(load(folder).epochs, row["run_id"], test_accuracy=row["test_accuracy"])
    figure.savefig(path, dpi=120)
    out.print(
        f"{row['run_id']}: trained on {row['n_train']:,} images in "
        f"{row['train_time_s'] / 60:.2f} min; test accuracy {row['test_accuracy']:.4f} "
        f"({row['n_test']:,} images, read once)\nfigure: {path}"
    )
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from regbench.reporting.report import write_report

    paths = write_report(Path(args.experiment), Path(args.out) if args.out else None)
    out = console()
    for kind in ("html", "markdown", "figures"):
        out.print(f"{kind}: {paths[kind]}", markup=False, highlight=False)
    return EXIT_OK
