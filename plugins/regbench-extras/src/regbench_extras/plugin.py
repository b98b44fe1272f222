"""The entry point regbench loads: registers the extras through regbench's public hooks.

Importing this module must stay cheap (no Keras): `regbench list` imports every plugin.
"""

from regbench.api import hookimpl

from regbench_extras.architectures import RESNET20, VGG_MINI
from regbench_extras.averages import AVERAGING_REGULARIZERS
from regbench_extras.mixing import MIXING_REGULARIZERS
from regbench_extras.regularizers import REGULARIZERS
from regbench_extras.steps import STEP_REGULARIZERS


@hookimpl
def register_architectures(register):
    register(VGG_MINI)
    register(RESNET20)


@hookimpl
def register_regularizers(register):
    for regularizer in (
        *REGULARIZERS,
        *STEP_REGULARIZERS,
        *AVERAGING_REGULARIZERS,
        *MIXING_REGULARIZERS,
    ):
        register(regularizer())


@hookimpl
def register_keras_objects():
    """Called once Keras is imported, before any build or load: registers the custom layers
    and losses so a saved model reloads in a fresh process."""
    import regbench_extras.layers  # noqa: F401  (registering is the import's effect)
    import regbench_extras.losses  # noqa: F401
    import regbench_extras.mixing_layers  # noqa: F401
