"""regbench's own training step: the `Step` a regularizer's `train_step` hook drives.

Written once, functionally: a step holds the values of the model's trainable, non-trainable
and optimizer variables, evaluates the model at any weights through Keras's stateless API
(`stateless_call`), differentiates with the backend's autodiff (TensorFlow's GradientTape,
JAX's value_and_grad) and updates through `optimizer.stateless_apply`. So the same step runs
inside Keras `fit` on TensorFlow (with or without XLA) and JAX (engine.training) and inside the
vmapped engine's program (engine.program), and a plugin's step is exact everywhere: SAM's two
gradients are of the same batch, R-Drop's two passes have their own dropout masks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from regbench.errors import RegbenchError
from regbench.plugins.context import RunContext, invoke
from regbench.plugins.keras import import_keras
from regbench.plugins.regularizer import Regularizer
from regbench.plugins.steps import Objective


def value_and_grad(fn: Callable[[list[Any]], tuple[Any, Any]], weights: Sequence[Any]) -> Any:
    """((value, aux), gradients) of `fn(weights) -> (value, aux)` by the backend's autodiff."""
    keras = import_keras()
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.value_and_grad(fn, has_aux=True)(list(weights))
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(w) for w in weights]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value, aux = fn(tensors)
        return (value, aux), tape.gradient(value, tensors)
    raise RegbenchError(f"regbench's training step cannot differentiate on {backend}")


def random_state(variable: Any) -> bool:
    """Whether a non-trainable variable is a random seed's state (keras.random.SeedGenerator)."""
    return variable.name == "seed_generator_state"


def plain_objective(step: FunctionalStep) -> Objective:
    """The run's loss of one forward pass: what Keras `fit` minimises."""

    def objective(forward: Callable[[Any], Any], images: Any, targets: Any) -> Any:
        return step.loss(targets, forward(images))

    return objective


class FunctionalStep:
    """A `regbench.api.Step` over variable values: `weights`, `non_trainable` and
    `optimizer_variables` are the state after what the step has done so far."""

    def __init__(
        self,
        model: Any,
        loss: Callable[[Any, Any], Any],
        trainable: Sequence[Any],
        non_trainable: Sequence[Any],
        optimizer_variables: Sequence[Any],
    ) -> None:
        self.model = model
        self._loss = loss
        self.weights = list(trainable)
        self.non_trainable = list(non_trainable)
        self.optimizer_variables = list(optimizer_variables)
        self.passes = 0  # forward passes made (counted as the step is traced)
        # a step's state advances once: later passes keep the first one's batch-norm
        # statistics and progress counts, and draw fresh random numbers (seed states)
        self._random = [random_state(v) for v in model.non_trainable_variables]
        self.reported: tuple[Any, Any] | None = None  # loss, predictions of the first call

    def loss(self, targets: Any, predictions: Any) -> Any:
        return self._loss(targets, predictions)

    def gradients(
        self,
        images: Any,
        targets: Any,
        *,
        weights: Sequence[Any] | None = None,
        objective: Objective | None = None,
    ) -> tuple[Any, list[Any]]:
        objective = objective or plain_objective(self)
        at = self.weights if weights is None else list(weights)
        if len(at) != len(self.weights):
            raise RegbenchError(
                f"step.gradients got {len(at)} weights; the model has {len(self.weights)}"
            )

        def value(trainable: list[Any]) -> tuple[Any, Any]:
            state: dict[str, Any] = {
                "non_trainable": self.non_trainable,
                "penalty": None,
                "first": None,
            }

            def forward(x: Any) -> Any:
                before = state["non_trainable"]
                predictions, after, losses = self.model.stateless_call(
                    trainable, before, x, training=True, return_losses=True
                )
                if self.passes:
                    after = [
                        a if r else b for a, b, r in zip(after, before, self._random, strict=True)
                    ]
                state["non_trainable"] = after
                self.passes += 1
                if state["first"] is None:
                    state["first"] = predictions
                    state["penalty"] = sum(losses) if losses else None
                return predictions

            loss = objective(forward, images, targets)
            if state["penalty"] is not None:
                loss = loss + state["penalty"]
            return self._scaled(loss), (loss, state["non_trainable"], state["first"])

        (_, (loss, self.non_trainable, predictions)), grads = value_and_grad(value, at)
        if self.reported is None:
            self.reported = (loss, predictions)
        return loss, list(grads)

    def apply(self, gradients: Sequence[Any]) -> None:
        keras = import_keras()
        optimizer = self.model.optimizer
        if keras.backend.backend() != "tensorflow":
            self.weights, self.optimizer_variables = optimizer.stateless_apply(
                self.optimizer_variables, list(gradients), self.weights
            )
            return
        # TensorFlow's optimizers update variables only (tf.distribute): write the values,
        # update, read them back (in program order inside the compiled step)
        variables = self.model.trainable_variables
        pairs = ((variables, self.weights), (optimizer.variables, self.optimizer_variables))
        for group, values in pairs:
            for variable, value in zip(group, values, strict=True):
                variable.assign(value)
        optimizer.apply(list(gradients), variables)
        self.weights = [keras.ops.convert_to_tensor(v.value) for v in variables]
        self.optimizer_variables = [
            keras.ops.convert_to_tensor(v.value) for v in optimizer.variables
        ]

    def _scaled(self, loss: Any) -> Any:
        """The loss as the optimizer differentiates it (scaled under mixed float16)."""
        optimizer = self.model.optimizer
        mapping = list(zip(optimizer.variables, self.optimizer_variables, strict=True))
        with import_keras().StatelessScope(state_mapping=mapping):
            return optimizer.scale_loss(loss)


Hook = Callable[[FunctionalStep, Any, Any], Any]  # a regularizer's train_step, bound


def bound_hook(regularizer: Regularizer, params: Mapping[str, Any], run: RunContext) -> Hook | None:
    """`regularizer`'s train_step with its values and run, or None for the plain step."""
    if not regularizer.uses_steps:
        return None

    def hook(step: FunctionalStep, images: Any, targets: Any) -> Any:
        return invoke(regularizer.train_step, step, images, targets, params, ctx=run)

    hook.__name__ = f"{regularizer.name}.train_step"
    return hook


def run_step(
    model: Any,
    loss: Callable[[Any, Any], Any],
    state: tuple[Sequence[Any], Sequence[Any], Sequence[Any]],
    images: Any,
    targets: Any,
    hook: Hook | None = None,
) -> tuple[FunctionalStep, Any, Any]:
    """One training step of `model` from `state` (trainable, non-trainable and optimizer
    values): a regularizer's `hook`, or the plain gradient step. Returns the step (its state
    after the update) and the loss and predictions it reports."""
    step = FunctionalStep(model, loss, *state)
    if hook is None:
        step.apply(step.gradients(images, targets)[1])
    else:
        hook(step, images, targets)
    if step.reported is None:
        raise RegbenchError(
            f"{getattr(hook, '__name__', 'train_step')} never called step.gradients: a step "
            "must evaluate the batch at least once"
        )
    return step, *step.reported
