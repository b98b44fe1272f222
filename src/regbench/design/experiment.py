"""One experiment: the settings a study runs with, validated once for Python, TOML and the CLI.

`Experiment.create(...)` takes Python values or command-line strings alike and refuses bad ones
with an error worded by field (`epochs must be at least 1; got 0`), so the same rules hold
whether a user calls `regbench.run(epochs=0)`, writes `epochs = 0` in a TOML file or types
`--epochs 0`. Everything is checked before anything is written.
"""

from __future__ import annotations

import sys
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from regbench.design.plan import Execution, Protocol
from regbench.design.settings import DEFAULT_TRAINER, SETTINGS, Setting, file_keys, parsers
from regbench.errors import RegbenchError
from regbench.plugins.files import CONFIG_LIMIT, expanded, read_regular

_PARSERS = parsers()


@dataclass(frozen=True)
class Experiment:
    """What to train (the grid), how (the protocol) and where its results go (the folder)."""

    arch: tuple[str, ...] = ("all",)
    reg: tuple[str, ...] = ("all",)
    dataset: str = "cifar10"
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    learning_rate: float | None = None
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    lr_schedule: str = "constant"
    target: tuple[str, float] | None = None
    precision: str = "float32"
    jit_compile: str = "auto"
    steps_per_execution: int = 1
    pipeline: str = "auto"
    engine: str = "standard"
    tensorboard: bool = False
    baseline: str = "none"
    name: str | None = None
    experiment: Path | None = None
    data_dir: Path | None = None
    cache_dir: Path | None = None
    executor: str = "local"
    devices: tuple[str, ...] | None = None
    per_device: int = 1
    pack: int | None = None
    workers: int | None = None
    max_runs_per_worker: int | None = None
    run_timeout: float | None = None
    ray_address: str | None = None
    trainer: str = DEFAULT_TRAINER

    def __post_init__(self) -> None:
        if self.run_timeout is not None and self.executor == "inprocess":
            raise RegbenchError(
                "run_timeout needs worker processes (a hung run in this process cannot be "
                "stopped); use the local executor, or drop the timeout"
            )
        if self.pack is not None and self.engine != "vmapped":
            raise RegbenchError(
                "pack sets how many runs the vmapped engine trains as one program; add "
                '--engine vmapped (engine = "vmapped"), or drop it'
            )

    @classmethod
    def create(cls, source: str = "", **values: Any) -> Experiment:
        """Validate `values` (Python values or CLI strings); None means "the default"."""
        known = {f.name for f in fields(cls)}
        checked: dict[str, Any] = {}
        for key, value in renamed(values, source).items():
            if key not in known:
                raise RegbenchError(
                    f"{source}unknown setting {key!r}; known settings: {', '.join(sorted(known))}"
                )
            if value is None:
                continue
            checked[key] = _PARSERS[key](value, f"{source}{key}")
        return cls(**checked)

    @classmethod
    def from_config(cls, name_or_path: str, **overrides: Any) -> Experiment:
        """A TOML experiment file (a path, or a shipped name such as `lab`), then `overrides`."""
        config = load_config(name_or_path)
        base = cls.create(f"config {name_or_path}: ", **config)
        return base.update(**overrides)

    def update(self, **overrides: Any) -> Experiment:
        """A copy with `overrides` (validated like `create`; None leaves a field as it is)."""
        overrides = renamed(overrides)
        changed = Experiment.create(**overrides)
        given = {k: getattr(changed, k) for k, v in overrides.items() if v is not None}
        if "params" in given:  # per regularizer: a flag's values over the file's
            merged = {reg: dict(values) for reg, values in self.params.items()}
            for reg, values in given["params"].items():
                merged.setdefault(reg, {}).update(values)
            given["params"] = merged
        for key in ("dataset_options", "optimizer_options"):
            if key in given:
                given[key] = {**getattr(self, key), **given[key]}
        return replace(self, **given)

    @property
    def folder(self) -> Path:
        """The experiment folder: `experiment`, or reports/<name>, the name defaulting to the
        dataset."""
        if self.experiment is not None:
            return self.experiment
        return Path("reports") / (self.name or self.dataset)

    @property
    def protocol(self) -> Protocol:
        """The protocol settings (the table's `protocol` role), options as plain dicts."""
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.role == "protocol":
                value = getattr(self, setting.name)
                values[setting.name] = dict(value) if isinstance(value, Mapping) else value
        return Protocol(**values)

    @property
    def execution(self) -> Execution:
        return Execution(
            jit_compile=self.jit_compile,
            steps_per_execution=self.steps_per_execution,
            pipeline=self.pipeline,
            tensorboard_dir=str(self.folder / "tensorboard") if self.tensorboard else None,
            engine=self.engine,
        )


RENAMED = {"out": "experiment"}  # a setting's old name -> its name now


class RenamedSetting(FutureWarning):
    """A setting given under its old name (a FutureWarning: shown by default, to users)."""


def renamed(values: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """`values` with settings given under an old name (`out`) under their name now, each with
    a one-line warning pointing at the caller's line."""
    values = dict(values)
    for old, new in RENAMED.items():
        if old not in values:
            continue
        value = values.pop(old)
        if values.get(new) is not None and value is not None:
            raise RegbenchError(f"{source}{old} is the old name of {new}; give only {new}")
        warnings.warn(
            f"{source}the setting {old!r} is deprecated; name it {new!r}",
            RenamedSetting,
            stacklevel=_caller_outside_regbench(),
        )
        values[new] = value if values.get(new) is None else values[new]
    return values


def _caller_outside_regbench() -> int:
    """The `stacklevel` that attributes a warning raised by our caller to the first frame
    outside regbench (the user's line, not ours)."""
    frame: Any = sys._getframe(1)
    level = 1  # level 1: the caller, which warns
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "regbench":
        frame, level = frame.f_back, level + 1
    return level


def check_protocol(protocol: Protocol, execution: Execution | None = None) -> None:
    """Refuse a protocol (and execution) that `Experiment` did not make, such as one rebuilt
    from a stored row, by the same rules; `design.plan` trusts them afterwards."""
    values = {**asdict(protocol), **(asdict(execution) if execution else {})}
    Experiment.create(**{key: value for key, value in values.items() if key in _PARSERS})


# ---------------------------------------------------------------- TOML files

FILE_KEYS = file_keys()


def packaged_experiments() -> list[str]:
    folder = resources.files("regbench") / "experiments"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_config(name_or_path: str) -> dict[str, Any]:
    """Read an experiment file (a path, or the name of one shipped with regbench) as a dict."""
    path = expanded(name_or_path, "config")
    if not path.exists() and name_or_path in packaged_experiments():
        data = (resources.files("regbench") / "experiments" / f"{name_or_path}.toml").read_bytes()
    else:
        shipped = ", ".join(packaged_experiments())
        advice = f"give a TOML file or one of the shipped experiments ({shipped})"
        data = read_regular(path, "config", CONFIG_LIMIT, advice)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RegbenchError(
            f"config {name_or_path} is not UTF-8 text; save it as a UTF-8 TOML file"
        ) from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegbenchError(f"config {name_or_path} is not valid TOML: {exc}") from None
    unknown = sorted(set(config) - set(FILE_KEYS) - set(RENAMED))
    if unknown:
        raise RegbenchError(
            f"config {name_or_path}: unknown key {unknown[0]!r}; "
            f"known keys: {', '.join(sorted(FILE_KEYS))}"
        )
    return config


# ---------------------------------------------------------------- docs/settings.md


def settings_page(table: Sequence[Setting] = SETTINGS) -> str:
    """docs/settings.md: every setting, its flag, whether a file may set it, its default."""
    from dataclasses import MISSING

    defaults = {
        f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        for f in fields(Experiment)
    }
    lines = [
        "# Settings",
        "",
        "Every setting of an experiment, as a keyword of `regbench.run` (and `plan`, `tune`),",
        "a key of an experiment file (`--config FILE`, TOML) and a command-line flag. A flag",
        "given on the command line wins over the file. Roles: `grid` (what is trained),",
        "`protocol` (how: part of each run's identity; runs of two protocols are never ranked",
        "together), `execution` (how fast: recorded, never part of the science), `executor`",
        "(where runs go), `where` (folders), `report` (how results are read).",
        "",
        "This page is generated from the settings table (`python -m regbench.design.experiment`).",
        "",
        "| setting | flag | in a file | role | default | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in table:
        flag = f"`{s.spelling}`" if s.spelling and not s.hidden else "-"
        default = defaults.get(s.name)
        shown = "-" if default in (None, {}, ()) else f"`{_toml(default)}`"
        meaning = s.help.replace("%%", "%").replace("|", "\\|")
        in_file = "yes" if s.in_file else "no"
        lines.append(f"| `{s.name}` | {flag} | {in_file} | {s.role} | {shown} | {meaning} |")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


if __name__ == "__main__":
    print(settings_page(), end="")
