"""The entry point regbench loads: registers the extras through regbench's public hooks.

Importing this module must stay cheap (no Keras): `regbench list` imports every plugin.
"""

from regbench.api import hookimpl

from regbench_extras.architectures import VGG_MINI
from regbench_extras.regularizers import REGULARIZERS


@hookimpl
def register_architectures(register):
    register(VGG_MINI)


@hookimpl
def register_regularizers(register):
    for regularizer in REGULARIZERS:
        register(regularizer())
