"""The tuning stage: a keras-tuner search over the space a regularizer plugin declares.

One (architecture, regularizer) cell per call. Every trial reaches the caller the moment it
ends and the chosen best values when the search is done; the caller (study.tune) records both
in the store, so a crash loses nothing and only the parent process writes the store. Trials fit
on the training split and are scored on the validation split only: the test split is kept for
the grid's one honest measurement.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from regbench.design.plan import Execution, Protocol
from regbench.engine import averaging, training
from regbench.engine.trainer import build_and_compile, context_for, run_callbacks
from regbench.errors import RegbenchError
from regbench.plugins.architecture import Architecture
from regbench.plugins.datasets import Splits
from regbench.plugins.hparams import HParam
from regbench.plugins.keras import import_keras
from regbench.plugins.manager import registry
from regbench.plugins.regularizer import Regularizer


@dataclass(frozen=True)
class Search:
    """One cell's search, as `engine.tuning.run_search` takes it."""

    arch: str
    reg: str
    protocol: Protocol
    execution: Execution
    tuner: str
    max_trials: int
    seed: int
    project_root: Path
    executions_per_trial: int = 1

    def run(
        self,
        data: Splits,
        on_trial: Callable[[dict], None] | None = None,
        on_best: Callable[[dict], None] | None = None,
    ) -> dict[str, Any]:
        """`run_search` of this cell on `data`; its best values ({} with nothing to tune)."""
        best = run_search(
            arch=self.arch,
            reg=self.reg,
            protocol=self.protocol,
            data=data,
            tuner=self.tuner,
            max_trials=self.max_trials,
            seed=self.seed,
            project_root=self.project_root,
            on_trial=on_trial,
            execution=self.execution,
            executions_per_trial=self.executions_per_trial,
            on_best=on_best,
        )
        return dict(best or {})


TUNERS = {"random": "RandomSearch", "bayesian": "BayesianOptimization", "hyperband": "Hyperband"}
OBJECTIVE = "val_accuracy"


def search_hash(
    arch: str,
    reg: str,
    space: list[HParam],
    protocol: Protocol,
    tuner: str,
    max_trials: int,
    seed: int,
) -> str:
    """Identity of a search, used to name its keras-tuner project.

    keras-tuner reloads any project of the same name, so anything that changes what the trials
    would be (space, bounds, tuner, budget, training protocol, seed) must change this hash, and
    an identical search must keep it, so that it resumes instead of starting over.
    """
    payload = {
        "arch": arch,
        "reg": reg,
        "space": [{k: v for k, v in asdict(h).items() if k != "help"} for h in space],
        "protocol": asdict(protocol),
        "tuner": tuner,
        "max_trials": max_trials,
        "seed": seed,
    }
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_search(tuner: str, max_trials: Any, executions_per_trial: Any = 1) -> None:
    """Refuse a tuner regbench does not know and budgets that would search nothing."""
    if tuner not in TUNERS:
        raise RegbenchError(f"tuner must be one of {', '.join(TUNERS)}; got {tuner!r}")
    for name, value in (("max_trials", max_trials), ("seeds_per_trial", executions_per_trial)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RegbenchError(f"{name} must be at least 1; got {value!r}")


def run_search(
    *,
    arch: str,
    reg: str,
    protocol: Protocol,
    data: Splits,
    tuner: str = "random",
    max_trials: int = 10,
    seed: int = 0,
    project_root: Path,
    on_trial: Callable[[dict], None] | None = None,
    execution: Execution | None = None,
    executions_per_trial: int = 1,
    on_best: Callable[[dict], None] | None = None,
) -> dict | None:
    """Tune one cell; return its best values. Writes nothing but keras-tuner's project.

    Returns None when the regularizer declares no hyperparameters: there is nothing to tune.
    Each finished trial goes to `on_trial` as a row of the store's trials table, the moment it
    ends. Rerunning an interrupted search with the same arguments resumes it: finished trials
    are not retrained. `executions_per_trial` trains each trial's values that many times
    (keras-tuner averages the scores). Ties on the score are broken by `TIE_RULE`; `on_best`
    hears the choice with what the store's best_values table keeps (arch, reg, values, score,
    search_hash, dataset). Raises RegbenchError for an unknown tuner or when every trial failed.
    """
    check_search(tuner, max_trials, executions_per_trial)
    plugins = registry()
    architecture: Architecture = plugins.get("architectures", arch)
    regularizer: Regularizer = plugins.get("regularizers", reg)
    if not regularizer.hparams:
        return None
    arch, reg = architecture.name, regularizer.name  # aliases name the same search
    digest = search_hash(
        arch, reg, list(regularizer.hparams), protocol, tuner, max_trials, seed
    ) + ("" if executions_per_trial == 1 else f"-x{executions_per_trial}")

    keras = import_keras()  # first: it quiets TensorFlow's start-up logs
    import keras_tuner as kt

    keras.utils.set_random_seed(seed)
    hypermodel = _hypermodel(kt, keras, architecture, regularizer, protocol, data, seed, execution)

    def record(trial: Any) -> None:
        ok = trial.status == kt.engine.trial.TrialStatus.COMPLETED
        row = {
            "trial_id": trial.trial_id,
            "search_hash": digest,
            "arch": arch,
            "reg": reg,
            "status": "ok" if ok else "failed",
            "score": float(trial.score) if ok else None,
            "values": _declared_values(regularizer, trial.hyperparameters.values),
            "train_time_s": hypermodel.fit_seconds,
            "error": None if ok else _error(trial),
        }
        if on_trial is not None:
            on_trial(row)

    options: dict[str, Any] = {
        "hypermodel": hypermodel,
        "objective": kt.Objective(OBJECTIVE, "max"),
        # keras-tuner takes seed 0 for "no seed" and draws one at random: shift it.
        "seed": seed + 1,
        "directory": str(project_root),
        "project_name": f"{arch}-{reg}-{digest}",
        "overwrite": False,
        # Run the whole budget whatever fails: each failure is recorded, and judged below.
        "max_consecutive_failed_trials": max_trials + 1,
        "executions_per_trial": executions_per_trial,
    }
    if tuner == "hyperband":
        options.update(max_epochs=protocol.epochs, hyperband_iterations=max_trials)
    else:
        options["max_trials"] = max_trials
    base = getattr(kt, TUNERS[tuner])
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from ..." on resume
            search = _tuner_class(base, keras, record)(**options)
        search.oracle.max_trials = max_trials  # Hyperband has no budget of its own
        search.search(verbose=0)
    finally:
        keras.backend.clear_session()  # and a full garbage collection (free_memory=True)
        keras.mixed_precision.set_global_policy("float32")

    trials = sorted(search.oracle.trials.values(), key=lambda t: t.trial_id)
    completed = [t for t in trials if t.status == kt.engine.trial.TrialStatus.COMPLETED]
    if not completed:
        first = _error(trials[0]) if trials else "no trial ran"
        raise RegbenchError(f"all {len(trials)} trials of {arch}/{reg} failed; the first: {first}")
    best, tied = pick_best(completed)
    values = _declared_values(regularizer, best.hyperparameters.values)
    if on_best is not None:
        on_best(
            {
                "arch": arch,
                "reg": reg,
                "search_hash": digest,
                "dataset": protocol.dataset,
                "trial_id": best.trial_id,
                "values": values,
                "score": float(best.score),
                "tied": [t.trial_id for t in tied],
                "rule": TIE_RULE,
            }
        )
    return values


TIE_RULE = "equal val_accuracy: the lower val_loss wins, then the earlier trial"


def pick_best(completed: Sequence[Any]) -> tuple[Any, list[Any]]:
    """The best trial by score, and every trial that tied with it (itself included, when
    there was a tie): ties go to the lower validation loss, then to the earlier trial."""
    top = max(t.score for t in completed)
    tied = [t for t in completed if t.score == top]
    best = min(tied, key=lambda t: (_val_loss(t), t.trial_id))
    return best, tied if len(tied) > 1 else []


def _val_loss(trial: Any) -> float:
    try:
        value = trial.metrics.get_last_value("val_loss")
    except (KeyError, ValueError, AttributeError):
        value = None
    return float("inf") if value is None else float(value)


def _declare(hp: Any, space: Sequence[HParam]) -> dict[str, Any]:
    """Register the plugin's declared space with keras-tuner; return this trial's values."""
    values = {}
    for h in space:
        sampling = "log" if h.log else "linear"
        if h.integer:
            values[h.name] = hp.Int(
                h.name, int(h.low), int(h.high), sampling=sampling, default=int(h.default)
            )
        else:
            values[h.name] = hp.Float(h.name, h.low, h.high, sampling=sampling, default=h.default)
    return values


def _declared_values(reg: Regularizer, values: Mapping[str, Any]) -> dict[str, float | int]:
    """The regularizer's own values, validated.

    Drops keras-tuner's bookkeeping (Hyperband's `tuner/epochs`, `tuner/trial_id`, ...) and
    clips floats to the bounds, since log sampling can land one rounding error outside them.
    """
    return reg.resolve({h.name: min(max(values[h.name], h.low), h.high) for h in reg.hparams})


def _error(trial: Any) -> str:
    """A failed trial's error in one line (keras-tuner keeps the whole traceback)."""
    lines = [line.strip() for line in (trial.message or "").splitlines() if line.strip()]
    return lines[-1][:500] if lines else f"{OBJECTIVE} was not a number"


def _hypermodel(
    kt: Any,
    keras: Any,
    architecture: Architecture,
    reg: Regularizer,
    protocol: Protocol,
    data: Splits,
    seed: int,
    execution: Execution | None = None,
) -> Any:
    """A HyperModel that builds, compiles and fits each trial's model as the trainer would."""

    class HyperModel(kt.HyperModel):
        fit_seconds: float | None = None
        run: Any = None  # the trial's run context: its training progress drives ramps
        in_trial = False  # set by the tuner around each trial

        def declare_hyperparameters(self, hp):
            _declare(hp, reg.hparams)

        def build(self, hp):
            if not self.in_trial:
                # keras-tuner builds once before any trial, to find conditional
                # hyperparameters; the declared space has none, so no model is built then (a
                # plugin that fails to build fails its trials, not the tuner)
                return None
            params = _declared_values(reg, _declare(hp, reg.hparams))
            self.run = context_for(protocol, data, seed, "tune", len(data.x_train))
            # sets the precision policy each time: keras-tuner's clear_session resets it
            return build_and_compile(
                architecture, reg, params, protocol, data, seed, execution, run=self.run
            )

        def fit(self, hp, model, callbacks=(), **kwargs):
            params = _declared_values(reg, hp.values)
            kwargs.setdefault("epochs", protocol.epochs)  # Hyperband sets its own
            start = time.perf_counter()
            history = model.fit(
                data.x_train,
                data.y_train,
                batch_size=protocol.batch_size,
                shuffle=True,
                validation_data=(data.x_val, data.y_val),
                callbacks=[*callbacks, *run_callbacks(reg, params, self.run)],
                **kwargs,
            )
            self.fit_seconds = time.perf_counter() - start
            network = training.deployable(model)
            if averaging.finish(model, network, data.x_train, protocol.batch_size) != "average":
                return history
            # a weight average is scored as the model it ends with, not by its epochs
            found = model.evaluate(
                data.x_val,
                data.y_val,
                batch_size=protocol.batch_size,
                verbose=0,
                return_dict=True,
            )
            return {OBJECTIVE: float(found["accuracy"]), "val_loss": float(found["loss"])}

    return HyperModel(name=f"{architecture.name}-{reg.name}")


def _tuner_class(base: type, keras: Any, record: Callable[[Any], None]) -> type:
    """`base` (a keras-tuner Tuner) that records each trial and frees its model when it ends."""

    class Tuner(base):
        def on_trial_begin(self, trial):
            super().on_trial_begin(trial)
            self.hypermodel.fit_seconds = None
            self.hypermodel.in_trial = True

        def on_trial_end(self, trial):
            self.hypermodel.in_trial = False
            super().on_trial_end(trial)  # the oracle scores and saves it: resumable from here
            keras.backend.clear_session()  # memory grows across trials otherwise (it collects)
            record(self.oracle.get_trial(trial.trial_id))

    return Tuner
