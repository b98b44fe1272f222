"""Each run records whether XLA compiled its training, as Keras ran it rather than as asked:
Keras falls back without XLA, with a warning only, for a model with a layer XLA cannot compile
(RandAugment)."""

from __future__ import annotations

import warnings

import pytest
from doubles import TINY_DATA, RegularizersPlugin, install

from regbench.api import Regularizer, import_keras
from regbench.cli import main
from regbench.results.reader import load

pytestmark = pytest.mark.slow  # trains two cells for real


class RandAugment(Regularizer):
    name = "randaugment"
    description = "Keras's RandAugment on the input"

    def input_layers(self, params):
        return [import_keras().layers.RandAugment(value_range=(0, 1))]


@pytest.mark.parametrize("jit, wanted", [("on", {"none": 1, "randaugment": 0}), ("off", None)])
def test_a_run_records_whether_xla_compiled_it(tmp_path, jit, wanted, request):
    if import_keras().backend.backend() != "tensorflow":
        pytest.skip("the standard engine's XLA fallback is TensorFlow's")
    install(request, RegularizersPlugin(RandAugment()))
    argv = ["run", "--arch", "model1", "--reg", "none,randaugment", *TINY_DATA, "--epochs", "1"]
    argv += ["--jit-compile", jit, "--executor", "inprocess", "--experiment", str(tmp_path)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras's "Proceeding with jit_compile=False"
        assert main(argv) == 0
    runs = load(tmp_path).runs.set_index("reg")
    assert set(runs["status"]) == {"ok"}
    assert runs["xla"].astype(int).to_dict() == (wanted or {"none": 0, "randaugment": 0})
    assert set(runs["jit_compile"]) == {jit}  # what was asked stays recorded beside it
