"""`regbench list` and `regbench describe`: what is installed, and what a model looks like."""

from __future__ import annotations

import argparse
import json
from typing import Any

from regbench.cli.common import EXIT_OK, console
from regbench.errors import RegbenchError


def cmd_list(args: argparse.Namespace) -> int:
    from regbench.plugins.manager import KINDS, registry

    reg = registry()
    if args.json:
        payload: dict[str, Any] = {
            kind: [
                {
                    "name": e.name,
                    "description": e.description,
                    "dist": e.origin.dist,
                    "version": e.origin.version,
                    "aliases": list(getattr(e.obj, "aliases", ())),
                    "hyperparameters": [
                        {
                            "name": h.name,
                            "default": h.default,
                            "low": h.low,
                            "high": h.high,
                            "log": h.log,
                            "integer": h.integer,
                        }
                        for h in getattr(e.obj, "hparams", ())
                    ],
                    "source_hash": e.source_hash,
                    **_dataset_fields(e.obj, kind),
                }
                for e in reg.entries[kind].values()
            ]
            for kind in KINDS
        }
        payload["broken"] = [
            {
                "plugin": b.plugin,
                "dist": b.origin.dist,
                "version": b.origin.version,
                "error": b.error,
            }
            for b in reg.broken
        ]
        payload["deprecated"] = [
            {
                "plugin": b.plugin,
                "dist": b.origin.dist,
                "version": b.origin.version,
                "note": b.error,
            }
            for b in reg.deprecated
        ]
        payload["clashes"] = {
            kind: {name: [str(o) for o in origins] for name, origins in reg.clashes[kind].items()}
            for kind in KINDS
            if reg.clashes[kind]
        }
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    from rich.table import Table

    out = console()
    for kind in KINDS:
        table = Table(title=kind, title_justify="left")
        for column in ("name", "description", "hyperparameters", "from"):
            table.add_column(column)
        for entry in reg.entries[kind].values():
            hps = ", ".join(
                f"{h.name}={h.default:g} [{h.low:g}, {h.high:g}{', log' if h.log else ''}]"
                for h in getattr(entry.obj, "hparams", ())
            )
            name = entry.name
            if kind in reg.clashes and entry.name in reg.clashes[kind]:
                name += " (CLASH)"
            table.add_row(name, entry.description, hps, str(entry.origin))
        out.print(table)
    for kind in KINDS:
        for name, origins in reg.clashes[kind].items():
            out.print(
                f"[red]clash:[/] {kind[:-1]} {name!r} registered by "
                + " and ".join(str(o) for o in origins)
            )
    for broken in reg.broken:
        out.print(
            f"[red]broken plugin[/] {broken.plugin} ({broken.origin}): {broken.error}", markup=True
        )
    for old in reg.deprecated:
        out.print(f"[yellow]deprecated[/] ({old.origin}): {old.error}", markup=True)
    return EXIT_OK


def _dataset_fields(obj: Any, kind: str) -> dict[str, Any]:
    """What `list --json` adds for a dataset: its `--dataset-option` names, its split scheme."""
    if kind != "datasets":
        return {}
    return {
        "options": list(getattr(obj, "option_names", ())),
        "split_scheme": getattr(obj, "split_scheme", None),
    }


def _shape(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise RegbenchError(f"--input-shape expects H,W,C (e.g. 32,32,3); got {text!r}") from None
    if len(parts) != 3:
        raise RegbenchError(f"--input-shape expects H,W,C (e.g. 32,32,3); got {text!r}")
    return parts[0], parts[1], parts[2]


def cmd_describe(args: argparse.Namespace) -> int:
    from regbench.plugins.building import check_input
    from regbench.plugins.manager import registry

    plugins = registry()
    arch = plugins.get("architectures", args.arch)
    reg = plugins.get("regularizers", args.reg)
    values = reg.resolve(_own_params(args.param, reg.name))
    input_shape = _shape(args.input_shape)
    check_input(arch, input_shape)
    from regbench.design.applicability import why_not
    from regbench.engine.models import build_model, describe_model

    _check_fits(arch, reg, values, input_shape, args.classes)
    summary = describe_model(build_model(arch, reg, values, input_shape, args.classes, seed=0))
    summary["skipped"] = why_not(arch, reg, values, input_shape, args.classes)  # grids skip it
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f'Model: "{arch.name} + {reg.name}"', title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    for layer in summary["layers"]:
        shape = (
            "(" + ", ".join("None" if d is None else str(d) for d in layer["output_shape"]) + ")"
        )
        table.add_row(f"{layer['name']} ({layer['type']})", shape, f"{layer['params']:,}")
    out = console()
    out.print(table)
    out.print(
        f"Total params: {summary['total_params']:,}\n"
        f"Trainable params: {summary['trainable_params']:,}\n"
        f"Non-trainable params: {summary['non_trainable_params']:,}"
    )
    if summary["skipped"]:
        out.print(f"[yellow]A grid skips this pairing:[/] {summary['skipped']}", markup=True)
    return EXIT_OK


# classes and pixels beyond which `describe` estimates the model's size before building it
MANY_CLASSES = 1000
MANY_PIXELS = 512 * 512


def _check_fits(
    arch: Any, reg: Any, values: Any, shape: tuple[int, int, int], classes: int
) -> None:
    """Refuse a model too large for memory before building it. Its size grows linearly with
    its classes (the head) and, through the layers after a flatten, with its input's area:
    two small builds give each growth."""
    if classes < 1:
        raise RegbenchError(f"--classes must be at least 1; got {classes}")
    from regbench.builtins.datasets import check_fits
    from regbench.engine.models import build_model

    def params(height: int, width: int, n: int) -> int:
        return build_model(arch, reg, values, (height, width, shape[2]), n, seed=0).count_params()

    height, width, channels = shape
    if height * width > MANY_PIXELS:
        image = f"--input-shape {height},{width},{channels}"
        check_fits(height * width * channels * 4, f"{image}: one image", "choose a smaller input")
        base, twice = params(32, 32, 2), params(64, 64, 2)
        grown = base + (height * width - 32 * 32) * (twice - base) / (64 * 64 - 32 * 32)
        check_fits(
            grown * 4 * 2,
            f"{image}: {arch.name} with about {grown:,.0f} parameters",
            "choose a smaller input",
        )
    if classes > MANY_CLASSES:
        small = [params(*shape[:2], n) for n in (2, 3)]
        total = small[0] + (classes - 2) * (small[1] - small[0])
        check_fits(
            total * 4 * 2,  # float32 weights, and as much again while they are initialised
            f"--classes {classes}: {arch.name} with about {total:,} parameters",
            "choose fewer classes",
        )


def _own_params(items: list[str], reg_name: str) -> dict[str, str]:
    """--param values for one regularizer (either `name=v` or `reg.name=v`)."""
    from regbench.design.parsers import parse_assignments

    parts = reg_name.split("+")
    out = {}
    for key, value in parse_assignments(items, "--param").items():
        owner, dot, name = key.rpartition(".")
        if dot and owner != reg_name and owner not in parts:
            raise RegbenchError(f"--param {key}: this model uses regularizer {reg_name!r}")
        out[key if len(parts) > 1 else name] = value  # a combination keeps `part.name`
    return out
