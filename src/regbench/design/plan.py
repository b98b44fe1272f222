"""The cross-product: what an experiment asks for, checked against the installed plugins, as a
list of plain run specs."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from regbench.design.canonical import (
    DEFAULT_BACKEND,
    combination_order,
    stored_backend,
    training_backend,
)
from regbench.design.choices import DEFAULT_LEARNING_RATES
from regbench.design.optimizer_options import canonical_optimizer_options
from regbench.design.settings import SETTINGS, Setting
from regbench.errors import CompositionConflict, RegbenchError
from regbench.plugins.context import RunContext
from regbench.plugins.datasets import UNNAMED_SPLIT, check_options
from regbench.plugins.manager import Registry


@dataclass(frozen=True)
class Protocol:
    """How every cell is trained, in the terms that change its results (the lab's by default).

    These fields are part of a run's identity: change one and the run is a different run.
    """

    dataset: str = "cifar10"
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    learning_rate: float | None = None
    target: tuple[str, float] | None = None
    precision: str = "float32"
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)  # momentum, nesterov, ...
    lr_schedule: str = "constant"  # or cosine, step, warmup_cosine (engine.optimizers)
    # the Keras backend the run trains on; None: the one runs started here train on (RunSpec
    # fills it in: design.canonical.training_backend)
    backend: str | None = None
    # how the dataset splits train/validation/test (Dataset.split_scheme, set by make_plan);
    # "unnamed" for runs from before schemes were named (the built-ins' test split then varied
    # with the seed) and for a dataset that names none
    split_scheme: str = UNNAMED_SPLIT

    def __post_init__(self) -> None:
        """Optimizer options in one spelling (typed, Keras's defaults left out, sorted), so
        `momentum=0` and no option are one protocol; the dataset's options need the dataset
        plugin and are made canonical by `make_plan`. Options that do not parse are kept as
        given, for `design.experiment.check_protocol` to refuse."""
        try:
            options = canonical_optimizer_options(self.optimizer, self.optimizer_options)
        except RegbenchError:
            return
        object.__setattr__(self, "optimizer_options", options)

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate the optimizer starts from: the one given, or Keras's default for
        the optimizer (so leaving it unset and giving that value are the same protocol)."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return DEFAULT_LEARNING_RATES.get(self.optimizer, 0.001)


# A protocol setting that is no column: a measurement of the history (engine.outcome), not how
# the run trains
MEASURED = ("target",)
# what a run's protocol holds that no one sets: where it trains and how its dataset splits
FOUND = ("backend", "split_scheme")


def protocol_columns(table: Sequence[Setting] = SETTINGS) -> tuple[str, ...]:
    """The runs-table columns that make a protocol: runs that differ in any of them are never
    pooled, ranked together or compared (results.stats, leaderboard, report, exports read
    them). The table's protocol settings (but the measured), what a run finds (`FOUND`), and
    the two execution settings that make a run a run of its own (see `Execution`)."""
    own = [s.name for s in table if s.role == "protocol" and s.name not in MEASURED]
    return (*own, "engine", *FOUND, "jit_compile")


PROTOCOL_COLUMNS = protocol_columns()


@dataclass(frozen=True)
class Execution:
    """How a run is executed: speed options that leave its results' meaning unchanged.

    Not part of a run's identity, so turning one on does not make finished runs pending; the
    exceptions are `engine` (a run of another engine than "standard" is a run of its own) and
    an explicit `jit_compile` ("on" or "off"; XLA fuses and reorders the arithmetic and draws
    other random streams, so a run with it is not the run without it; "auto", Keras's choice,
    leaves identities as they were). The vmapped engine is one XLA program whatever is asked:
    its runs record "auto".
    """

    jit_compile: str = "auto"
    steps_per_execution: int = 1
    pipeline: str = "auto"
    tensorboard_dir: str | None = None  # write TensorBoard logs of each run under it
    engine: str = "standard"


IDENTITY_VERSION = 6  # bump (with a store migration) when `RunSpec.identity` changes shape
# How the source hashes were made, recorded beside them (not part of the identity): "object",
# each registered object's own code (plugins.provenance). A row with provenance but no scheme
# was hashed the earlier way, every file of the registering package at once.
PROVENANCE_SCHEME = "object"


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One cell of the grid at one seed: a plain description that any executor can ship."""

    arch: str
    reg: str
    params: Mapping[str, float | int]
    seed: int
    protocol: Protocol = field(default_factory=Protocol)
    execution: Execution = field(default_factory=Execution)
    stage: str = "grid"
    tuned: tuple[str, ...] = ()  # which params came from the tuning stage
    # where the architecture, regularizer and dataset come from: PROVENANCE keys to "dist
    # version" and source hashes (design.plan.provenance); part of the identity, so an upgrade
    # shows
    provenance: Mapping[str, str] = field(default_factory=dict)
    provenance_scheme: str | None = PROVENANCE_SCHEME  # how its hashes were made; not identity
    skip: str | None = None  # why this cell is not trained (design.applicability); not identity

    def __post_init__(self) -> None:
        """An unset backend is the one this run trains on when started here; the vmapped
        engine's is JAX whatever was set (it is a JAX program)."""
        backend = self.protocol.backend
        if backend is None or self.execution.engine == "vmapped":
            backend = training_backend(self.execution.engine)
        if backend != self.protocol.backend:
            object.__setattr__(self, "protocol", replace(self.protocol, backend=backend))
        if self.execution.engine == "vmapped" and self.execution.jit_compile != "auto":
            object.__setattr__(self, "execution", replace(self.execution, jit_compile="auto"))

    def identity(self) -> dict[str, Any]:
        """What makes this run scientifically different from another: the model, the
        regularizer and its values, the data, the protocol, the seed, the stage, the plugins'
        versions and sources, and the engine and XLA setting when not the default."""
        protocol = asdict(self.protocol)
        del protocol["target"]  # a measurement of the history (engine.outcome), not the science
        protocol["learning_rate"] = self.protocol.effective_learning_rate
        protocol["dataset_options"] = dict(sorted(self.protocol.dataset_options.items()))
        defaults = {
            "optimizer_options": {},
            "lr_schedule": "constant",
            "backend": DEFAULT_BACKEND,
            "split_scheme": UNNAMED_SPLIT,
        }
        for key, default in defaults.items():
            if protocol[key] == default:  # the defaults leave earlier identities unchanged
                del protocol[key]
            elif key == "optimizer_options":
                protocol[key] = dict(sorted(protocol[key].items()))
        return {
            "arch": self.arch,
            "reg": self.reg,
            "params": dict(sorted(self.params.items())),
            "seed": self.seed,
            "stage": self.stage,
            "protocol": protocol,
            "provenance": dict(sorted(self.provenance.items())),
            # an engine other than Keras fit trains the same science, but not bit for bit: its
            # runs are never pooled with the standard engine's; nor are runs that asked for XLA
            # on or off with each other or with Keras's choice
            **({"engine": self.execution.engine} if self.execution.engine != "standard" else {}),
            **({"jit_compile": jit} if (jit := self.execution.jit_compile) != "auto" else {}),
        }

    @property
    def config_hash(self) -> str:
        """Identity of the result: same hash, same run."""
        return digest(self.identity())

    @property
    def cell_hash(self) -> str:
        """Identity of the cell across seeds: the runs the leaderboard averages together."""
        return digest({k: v for k, v in self.identity().items() if k != "seed"})

    @property
    def run_id(self) -> str:
        prefix = "final-" if self.stage == "final" else ""
        return f"{prefix}{self.arch}-{self.reg}-s{self.seed}-{self.config_hash[:8]}"

    @property
    def target_label(self) -> str | None:
        """The target as the runs table stores it (`val_accuracy>=0.5`), or None."""
        target = self.protocol.target
        return f"{target[0]}>={target[1]}" if target else None

    def row(self) -> dict[str, Any]:
        """The columns of a results row that this spec alone determines."""
        return {
            **asdict(self.protocol),
            **asdict(self.execution),
            "arch": self.arch,
            "reg": self.reg,
            "seed": self.seed,
            "stage": self.stage,
            "run_id": self.run_id,
            "config_hash": self.config_hash,
            "cell_hash": self.cell_hash,
            "params": dict(self.params),
            "tuned": list(self.tuned),
            "dataset_options": dict(self.protocol.dataset_options),
            "optimizer_options": dict(self.protocol.optimizer_options),
            "learning_rate": self.protocol.effective_learning_rate,
            "target": self.target_label,
            **{key: self.provenance.get(key) for key in PROVENANCE},
            "provenance_scheme": self.provenance_scheme if self.provenance else None,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunSpec:
        """The spec a stored results row was trained from (rows of every store version)."""

        def value(key: str, default: Any = None) -> Any:
            item = row.get(key)
            return default if item is None or item != item else item  # None or NaN

        def decoded(key: str) -> dict[str, Any]:
            item = value(key, {})
            return json.loads(item) if isinstance(item, str) else dict(item)

        def decoded_list(key: str) -> list[Any]:
            item = value(key, [])
            return json.loads(item) if isinstance(item, str) else list(item)

        target = value("target")
        metric, _, goal = target.partition(">=") if isinstance(target, str) else ("", "", "")
        rate = value("learning_rate")
        return cls(
            arch=str(row["arch"]),
            reg=str(row["reg"]),
            params=decoded("params"),
            seed=int(row["seed"]),
            stage=str(value("stage", "grid")),
            tuned=tuple(decoded_list("tuned")),
            protocol=Protocol(
                dataset=str(row["dataset"]),
                dataset_options=decoded("dataset_options"),
                epochs=int(row["epochs"]),
                batch_size=int(row["batch_size"]),
                optimizer=str(value("optimizer", "sgd")),
                learning_rate=None if rate is None else float(rate),
                target=(metric, float(goal)) if metric else None,
                precision=str(value("precision", "float32")),
                optimizer_options=decoded("optimizer_options"),
                lr_schedule=str(value("lr_schedule", "constant")),
                backend=str(value("backend", stored_backend(value("engine", "standard")))),
                split_scheme=str(value("split_scheme", UNNAMED_SPLIT)),
            ),
            provenance={key: str(value(key)) for key in PROVENANCE if value(key) is not None},
            provenance_scheme=value("provenance_scheme"),  # None: hashed per package
            execution=Execution(
                jit_compile=str(value("jit_compile", "auto")),
                steps_per_execution=int(value("steps_per_execution", 1)),
                pipeline=str(value("pipeline", "auto")),
                engine=str(value("engine", "standard")),
            ),
        )


PROVENANCE = (
    "arch_source",
    "reg_source",
    "arch_source_hash",
    "reg_source_hash",
    "dataset_source",
    "dataset_source_hash",
)


def provenance(registry: Registry, arch: str, reg: str, dataset: str) -> dict[str, str]:
    """Which distribution and version provide `arch`, `reg` and `dataset`, and each object's
    declared version or source hash; a combination has one of each per component, joined by
    '+'."""
    arch_source, arch_hash = registry.provenance("architectures", arch)
    reg_source, reg_hash = registry.provenance("regularizers", reg)
    dataset_source, dataset_hash = registry.provenance("datasets", dataset)
    return {
        "arch_source": arch_source,
        "reg_source": reg_source,
        "arch_source_hash": arch_hash,
        "reg_source_hash": reg_hash,
        "dataset_source": dataset_source,
        "dataset_source_hash": dataset_hash,
    }


def digest(payload: Mapping[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def expand_names(kind: str, requested: Sequence[str], registry: Registry) -> list[str]:
    """'all' or a list of names/aliases, checked against the registry (canonical names back)."""
    names: list[str] = []
    for item in requested:
        for name in (part.strip() for part in item.split(",")):
            if not name:
                continue
            if name == "all":
                names.extend(registry.names(kind))
                continue
            if kind == "regularizers" and "+" in name:
                name = combination_name(registry, name)
            try:
                names.append(registry.get(kind, name).name)
            except CompositionConflict:  # a cell of its own, skipped with the reason (make_plan)
                names.append(name)
    if not names:
        raise RegbenchError(f"no {kind} chosen; name at least one, or 'all'")
    return list(dict.fromkeys(names))


def combination_name(registry: Registry, name: str) -> str:
    """`a+b` as the combination's cell is named: its components' canonical names in their one
    order (`design.canonical.combination_order`); a name registered whole stays as it is."""
    if registry.aliases["regularizers"].get(name, name) in registry.entries["regularizers"]:
        return name
    parts = [registry.get("regularizers", part.strip()) for part in name.split("+")]
    return "+".join(part.name for part in combination_order(parts))


def _cell_name(registry: Registry, reg: str) -> str:
    """`combination_name` of a name that may be one (values stored or given under another
    order); a name it cannot read is left for the caller's own check to refuse."""
    try:
        return combination_name(registry, reg) if "+" in reg else reg
    except RegbenchError:
        return reg


def current_protocol(registry: Registry, protocol: Protocol, engine: str) -> Protocol:
    """`protocol` as runs started here train it: the dataset's options in its one spelling,
    its split scheme, and the Keras backend of `engine`'s workers (a protocol asking for
    another backend is refused: this process cannot train it)."""
    dataset = registry.get("datasets", protocol.dataset)
    check_options(dataset, protocol.dataset_options)
    backend = training_backend(engine)
    if protocol.backend not in (None, backend):
        raise RegbenchError(
            f"the protocol's backend is {protocol.backend}, but runs started here train on "
            f"{backend}; set KERAS_BACKEND={protocol.backend}, or leave the backend unset"
        )
    return replace(
        protocol,
        dataset_options=dataset.canonical_options(protocol.dataset_options),
        split_scheme=dataset.split_scheme,
        backend=backend,
    )


def make_plan(
    registry: Registry,
    archs: Sequence[str],
    regs: Sequence[str],
    seeds: Sequence[int],
    protocol: Protocol,
    reg_params: Mapping[str, Mapping[str, Any]] | None = None,
    tuned: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    execution: Execution | None = None,
    applicability: bool = True,
) -> list[RunSpec]:
    """Every (arch, reg, seed) cell; params are validated against each regularizer's bounds.

    `protocol`, `execution` and `seeds` are trusted as `Experiment` validated them (a protocol
    from elsewhere goes through `design.experiment.check_protocol` first); only what needs the
    registry is checked here: names, the dataset's options, the regularizers' values. Names
    and options come out in their one spelling (`current_protocol`, `combination_name`).

    `applicability` decides here which cells are skipped: those that change nothing, and those
    whose regularizer needs a side the engine lacks (design.engine_sides); it may build models,
    so it imports Keras. Without it the trainer decides, in the worker, where Keras is loaded
    anyway.

    Explicit `reg_params` win over `tuned` values, which win over the plugin defaults. A list
    of values in `reg_params` sweeps: one cell per value (per combination across a
    regularizer's hyperparameters); values that resolve to the same cell count once.
    """
    execution = execution or Execution()
    arch_names = expand_names("architectures", archs, registry)
    reg_names = expand_names("regularizers", regs, registry)
    protocol = current_protocol(registry, protocol, execution.engine)
    reg_params = {_cell_name(registry, reg): values for reg, values in (reg_params or {}).items()}
    for reg in reg_params:
        registry.get("regularizers", reg)  # an unknown regularizer in --param is an error
    tuned = {(arch, _cell_name(registry, reg)): v for (arch, reg), v in (tuned or {}).items()}
    from regbench.design.applicability import why_not
    from regbench.design.engine_sides import engine_cannot

    run = RunContext(epochs=protocol.epochs, batch_size=protocol.batch_size)

    specs: dict[str, RunSpec] = {}  # by config hash: a value given twice is one cell
    for seed in seeds:
        for arch in arch_names:
            for reg in reg_names:
                try:
                    regularizer = registry.get("regularizers", reg)
                except CompositionConflict as conflict:
                    spec = RunSpec(
                        arch=arch,
                        reg=reg,
                        params={},
                        seed=seed,
                        protocol=protocol,
                        execution=execution,
                        provenance=provenance(registry, arch, reg, protocol.dataset),
                        skip=str(conflict),
                    )
                    specs.setdefault(spec.config_hash, spec)
                    continue
                from_tuning = dict((tuned or {}).get((arch, reg), {}))
                for explicit in sweep(_explicit_params(reg, reg_params)):
                    params = regularizer.resolve({**from_tuning, **explicit})
                    tuned_keys = tuple(sorted(k for k in from_tuning if k not in explicit))
                    architecture = registry.get("architectures", arch)
                    spec = RunSpec(
                        arch=arch,
                        reg=reg,
                        params=params,
                        seed=seed,
                        tuned=tuned_keys,
                        protocol=protocol,
                        execution=execution,
                        provenance=provenance(registry, arch, reg, protocol.dataset),
                        skip=(
                            why_not(architecture, regularizer, params)
                            or engine_cannot(execution.engine, reg, regularizer, params, run)
                        )
                        if applicability
                        else None,
                    )
                    specs.setdefault(spec.config_hash, spec)
    return list(specs.values())


def sweep(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One assignment per combination: a list (or tuple) value sweeps that hyperparameter,
    the cartesian product across a regularizer's hyperparameters, in the order given."""
    names = list(values)
    choices = [list(v) if isinstance(v, list | tuple) else [v] for v in (values[n] for n in names)]
    for name, options in zip(names, choices, strict=True):
        if not options:
            raise RegbenchError(f"hyperparameter {name!r} was given an empty list of values")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]


def _explicit_params(reg: str, reg_params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """--param values for `reg`; for a combination `a+b`, `a.x=...` becomes its `a.x`."""
    explicit = dict(reg_params.get(reg, {}))
    if "+" in reg:
        for part in reg.split("+"):
            for key, value in reg_params.get(part, {}).items():
                explicit.setdefault(f"{part}.{key}", value)
    return explicit


def order_by_cost(
    specs: Sequence[RunSpec],
    registry: Registry,
    seconds_per_epoch: Mapping[tuple[str, str], float] | None = None,
) -> list[RunSpec]:
    """Most expensive first, so the longest runs do not start last and leave devices idle.

    Seconds per epoch measured by earlier runs rank the cells when every cell has them;
    otherwise the layer tables' multiply-accumulates x epochs do.
    """
    measured = seconds_per_epoch or {}
    if specs and all((s.arch, s.reg) in measured for s in specs):
        return sorted(
            specs, key=lambda s: measured[(s.arch, s.reg)] * s.protocol.epochs, reverse=True
        )
    from regbench.plugins import building

    macs = {s.arch: building.macs(registry.get("architectures", s.arch)) for s in specs}
    return sorted(specs, key=lambda s: macs[s.arch] * s.protocol.epochs, reverse=True)
