"""Every hook says what each of its arguments takes, typed and with a `:param:` line."""

from __future__ import annotations

import inspect

import pytest

from regbench.plugins import hookspecs

HOOKS = [
    name
    for name, f in vars(hookspecs).items()
    if inspect.isfunction(f) and hasattr(f, "regbench_spec")
]


def test_the_hooks_are_found():
    assert {"register_architectures", "register_regularizers", "register_keras_names"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_each_argument_of_a_hook_is_typed_and_documented(name):
    hook = getattr(hookspecs, name)
    hints = inspect.get_annotations(hook, eval_str=False)
    for argument in inspect.signature(hook).parameters:
        assert argument in hints and "Any" not in hints[argument], (name, argument)
        assert f":param {argument}:" in (hook.__doc__ or ""), (name, argument)
