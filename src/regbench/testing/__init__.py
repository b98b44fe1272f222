"""The conformance kit: checks a plugin author calls from their own tests.

`check_regularizer(reg)` runs the regularizer's checks. A regularizer that passes builds on
every architecture it is given (default: all installed) and gives (batch, classes) probability
rows; adds only the weights and losses it claims (the `adds_params`, `adds_losses` and
`stochastic_inference` attributes of `regbench.api.Regularizer`); changes training where it
claims to act and leaves inference alone where it claims to (`check_effects`); builds at its
declared bounds and refuses values outside them with `RegbenchError`; rewrites batches into
soft targets of the right shape, mixing the targets as it mixes the images (if it has a
`batch` hook); trains on every architecture exactly as the trainer does, compiled with XLA
unless `xla=False`; reloads the saved model in a fresh process; and its whole package imports
no backend directly. `check_architecture(arch)` and `check_dataset(ds)` do the same for the
other plugin kinds. Each check is also public, so a test can run one alone. `check_ramp(reg,
arch)` checks that a regularizer whose layers read the run's progress behaves differently at
its start and its end. `check_step(reg, reference)` and `check_average(reg)` check the step
and weights sides (a `train_step` against the update computed by hand; a `WeightAverage`
against the average it declares, batch norm recalibrated). `check_on_backends(reg)` runs the
training contract in a fresh process on each installed Keras backend (TensorFlow, JAX), so a
plugin that works only on its author's backend fails naming the other. `check_visualizer(vis)`
renders one image on small models of every installed architecture (colour, and grey and not
square) and checks the PNG paths it returns lie in the output folder, that a second call
works and that the model's weights are untouched. A batch regularizer's `loss` hook gets
`CategoricalCrossentropy()` and soft targets, as the trainer gives it. Needs `regbench[test]`
(hypothesis); plain `AssertionError`s, no pytest.
"""

from regbench.testing.architecture_kit import check_architecture
from regbench.testing.backend_neutral import check_backend_neutral
from regbench.testing.backends import check_on_backends
from regbench.testing.dataset_kit import check_dataset
from regbench.testing.effects import check_effects
from regbench.testing.fresh import check_reloads_in_fresh_process
from regbench.testing.probes import CLAIMS
from regbench.testing.ramps import check_ramp
from regbench.testing.regularizer_kit import (
    check_batches,
    check_bounds_build,
    check_declaration,
    check_model,
    check_random_params,
    check_refuses_out_of_bounds,
    check_regularizer,
    installed_architectures,
)
from regbench.testing.sides import check_average, check_step
from regbench.testing.strategies import hparam_values, invalid_hparam_values
from regbench.testing.training import check_training_contract
from regbench.testing.visualizer_kit import check_visualizer

__all__ = [
    "CLAIMS",
    "check_architecture",
    "check_average",
    "check_backend_neutral",
    "check_batches",
    "check_bounds_build",
    "check_dataset",
    "check_declaration",
    "check_effects",
    "check_model",
    "check_on_backends",
    "check_ramp",
    "check_random_params",
    "check_refuses_out_of_bounds",
    "check_regularizer",
    "check_reloads_in_fresh_process",
    "check_step",
    "check_training_contract",
    "check_visualizer",
    "hparam_values",
    "installed_architectures",
    "invalid_hparam_values",
]
