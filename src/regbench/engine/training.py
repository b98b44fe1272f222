"""The training model: the real model wrapped when a regularizer acts past Keras `fit`'s step.

A regularizer that rewrites batches (Mixup, CutMix), trains with its own step (SAM, R-Drop) or
ends with an average of its weights (SWA, EMA) trains through a thin model around the real one.
Its train step one-hot encodes the labels and hands images and targets to the `batch` hook
(batch regularizers train with crossentropy on soft targets and argmax accuracy, so accuracy
means what it means for other runs); then either delegates to Keras's own step (batches only)
or runs regbench's functional step (engine.steps) and updates the weight average
(engine.averaging). Both compile with XLA like any model, on TensorFlow and JAX; the vmapped
engine calls `functional_step` inside its program. Only the inner model is counted, described
and saved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from regbench.engine import averaging, steps
from regbench.plugins.context import RunContext, invoke
from regbench.plugins.keras import import_keras
from regbench.plugins.regularizer import Regularizer, overrides

Values = tuple[Sequence[Any], Sequence[Any], Sequence[Any]]  # trainable, non-trainable, optimizer


@cache
def _wrapper_class() -> type:
    keras = import_keras()
    ops = keras.ops

    class RegularizedTraining(keras.Model):  # type: ignore[name-defined]
        def __init__(self, inner, regularizer, params, run, seed):
            super().__init__(name=f"{inner.name}_training")
            self.inner = inner
            self.regularizer, self.params, self.run = regularizer, dict(params), run
            self.seed_generator = keras.random.SeedGenerator(seed)
            rule = invoke(regularizer.average, self.params, ctx=run)
            self.averaging = (
                None if rule is None else averaging.slots(self, rule, inner.trainable_variables)
            )
            self.own_step = regularizer.uses_steps or rule is not None
            self.hook = steps.bound_hook(regularizer, self.params, run)
            self.passes_per_step = 1
            self.built = True  # the inner model is: stateless calls need no symbolic build

        def call(self, x, training=False):
            return self.inner(x, training=training)

        def _targets(self, y):
            """Sparse labels as one-hot rows (batch regularizers only); soft targets (already
            rows) as they are."""
            if not self.regularizer.uses_batches:
                return y
            if len(y.shape) == 2 and y.shape[-1] == self.run.classes:
                return y
            labels = ops.cast(ops.reshape(y, (-1,)), "int32")
            return ops.one_hot(labels, self.run.classes)

        def train_step(self, *args):  # TensorFlow and torch: (data); JAX: (state, data)
            self.run.state.new_step()
            try:
                return self._train_step(*args)
            finally:
                self.run.state.new_step()

        def _train_step(self, *args):
            *state, data = args
            x, y = data[0], self._targets(data[1])
            if not state:
                if self.regularizer.uses_batches:
                    x, y = self.regularizer.batch(x, y, self.params, self.seed_generator, self.run)
                if not self.own_step:
                    return super().train_step((x, y))
                return self._stateful_step(x, y)
            trainable, non_trainable, optimizer_values, metrics_values = state[0]
            if self.regularizer.uses_batches:
                (x, y), non_trainable = self._stateless_batch(x, y, non_trainable)
            if not self.own_step:
                state = (trainable, non_trainable, optimizer_values, metrics_values)
                return super().train_step(state, (x, y))
            (trainable, non_trainable, optimizer_values), loss, predictions = self.step_values(
                (trainable, non_trainable, optimizer_values), x, y
            )
            logs, metrics_values = self._update_metrics_variables(
                metrics_values, loss, x, y, predictions, None
            )
            return logs, (trainable, non_trainable, optimizer_values, metrics_values)

        def _stateful_step(self, x, y):
            """TensorFlow: the functional step on the variables' values, written back."""
            groups = (self.trainable_variables, self.non_trainable_variables)
            groups += (self.optimizer.variables,)
            values = tuple([ops.convert_to_tensor(v.value) for v in group] for group in groups)
            new, loss, predictions = self.step_values(values, x, y)
            for group, updated in zip(groups, new, strict=True):
                for variable, value in zip(group, updated, strict=True):
                    variable.assign(value)
            self._loss_tracker.update_state(loss, sample_weight=ops.shape(x)[0])
            return self.compute_metrics(x, y, predictions, None)

        def step_values(self, values: Values, x, y):
            """One step from `values`: (new values, loss, predictions)."""
            step, loss, predictions = steps.run_step(
                self, compiled_loss(self), values, x, y, self.hook
            )
            self.passes_per_step = step.passes
            non_trainable = step.non_trainable
            if self.averaging is not None:
                non_trainable = averaging.update(
                    self.averaging,
                    self.run,
                    self.non_trainable_variables,
                    non_trainable,
                    step.weights,
                )
            return (step.weights, non_trainable, step.optimizer_variables), loss, predictions

        def _stateless_batch(self, x, y, non_trainable):
            """JAX: draw from the seed generator through the step's own state, as Keras's
            stateless calls do, and hand the advanced state on."""
            variables = self.non_trainable_variables
            with keras.StatelessScope(
                state_mapping=list(zip(variables, non_trainable, strict=True))
            ) as scope:
                out = self.regularizer.batch(x, y, self.params, self.seed_generator, self.run)
            advanced = [
                scope.get_current_value(v) if scope.get_current_value(v) is not None else old
                for v, old in zip(variables, non_trainable, strict=True)
            ]
            return out, advanced

        # Keras also computes losses and metrics outside the steps (JAX's symbolic build)
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            y = None if y is None else self._targets(y)
            return super().compute_loss(x, y, y_pred, sample_weight, training)

        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            return super().compute_metrics(x, self._targets(y), y_pred, sample_weight)

    return RegularizedTraining


STEP_BACKENDS = ("tensorflow", "jax")  # where regbench's step differentiates (engine.steps)


def cannot_train(regularizer: Regularizer, keras: Any) -> str | None:
    """Why the standard engine cannot train `regularizer` on this backend (its cell is then
    skipped with the reason): regbench's own step and weight average need autodiff it knows."""
    backend = keras.backend.backend()
    own = regularizer.uses_steps or overrides(regularizer, "average")
    if not own or backend in STEP_BACKENDS:
        return None
    return (
        f"{regularizer.name} trains with its own step or weight average, which regbench runs "
        f"on {' and '.join(STEP_BACKENDS)}; got KERAS_BACKEND={backend}"
    )


def needs_wrapper(regularizer: Regularizer, params: Mapping[str, Any], run: RunContext) -> bool:
    """Whether `regularizer` acts past Keras's own step: batches, a step, a weight average."""
    if regularizer.uses_batches or regularizer.uses_steps:
        return True
    return invoke(regularizer.average, params, ctx=run) is not None


def wrap(model: Any, regularizer: Regularizer, params: Mapping[str, Any], run: RunContext) -> Any:
    """`model` itself, or its training model when `regularizer` acts past Keras's step."""
    if not needs_wrapper(regularizer, params, run):
        return model
    return _wrapper_class()(model, regularizer, params, run, run.seed)


def compiled_loss(model: Any) -> Callable[[Any, Any], Any]:
    """The loss `model` was compiled with, as the batch mean of targets and predictions (a
    Keras `Loss` reduces itself; a loss function or name is averaged, as `compile` does)."""
    keras = import_keras()
    loss = model.loss
    if isinstance(loss, keras.losses.Loss):
        return loss
    function = keras.losses.get(loss)
    return lambda targets, predictions: keras.ops.mean(function(targets, predictions))


def functional_step(model: Any, values: Values, x: Any, y: Any) -> tuple[Values, Any, Any, int]:
    """One training step of a compiled model from `values` (the vmapped engine's): (new
    values, loss, predictions, forward passes). A training model runs its regularizer's step
    and average; a plain model the plain gradient step."""
    if hasattr(model, "step_values"):
        model.run.state.new_step()
        try:
            new, loss, predictions = model.step_values(values, x, y)
        finally:
            model.run.state.new_step()
        return new, loss, predictions, model.passes_per_step
    step, loss, predictions = steps.run_step(model, compiled_loss(model), values, x, y)
    return (step.weights, step.non_trainable, step.optimizer_variables), loss, predictions, 1


def passes_per_step(model: Any) -> int:
    """Forward passes per training step (1 unless a regularizer's step makes more)."""
    return int(getattr(model, "passes_per_step", 1))


def soft_loss_and_metrics(keras: Any) -> tuple[Any, list[Any]]:
    """What a soft-target run trains with: crossentropy on the targets, argmax accuracy."""
    return keras.losses.CategoricalCrossentropy(), [
        keras.metrics.CategoricalAccuracy(name="accuracy")
    ]


def deployable(model: Any) -> Any:
    """The model to count, describe and save: the inner one of a training model."""
    return getattr(model, "inner", model)
