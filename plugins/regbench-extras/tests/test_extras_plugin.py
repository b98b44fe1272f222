"""The installed distribution: regbench finds the extras through the entry point, cheaply."""

import subprocess
import sys

from regbench.plugins.manager import Origin, build_registry

from regbench_extras.averages import AVERAGING_REGULARIZERS
from regbench_extras.mixing import MIXING_REGULARIZERS
from regbench_extras.regularizers import REGULARIZERS
from regbench_extras.steps import STEP_REGULARIZERS

ORIGIN = Origin("regbench-extras", "0.1.0")
NAMES = {
    "spatial_dropout",
    "gaussian_noise",
    "l1",
    "l1l2",
    "label_smoothing",
    "augment",
    "weight_decay",
    "early_stopping",
    "mixup",
    "cutmix",
    "cutout",
    "dropblock",
    "stochastic_depth",
    "spectral_norm",
    "sam",
    "asam",
    "rdrop",
    "swa",
    "ema",
    "manifold_mixup",
    "shakedrop",
}


def test_registry_lists_the_extras_with_their_distribution() -> None:
    registry = build_registry()
    extras = {
        name for name, entry in registry.entries["regularizers"].items() if entry.origin == ORIGIN
    }
    every = (*REGULARIZERS, *STEP_REGULARIZERS, *AVERAGING_REGULARIZERS, *MIXING_REGULARIZERS)
    assert extras == NAMES == {cls.name for cls in every}
    assert registry.entries["architectures"]["vgg-mini"].origin == ORIGIN
    assert registry.entries["architectures"]["resnet20"].origin == ORIGIN
    assert registry.provenance("regularizers", "mixup")[0] == str(ORIGIN)
    assert registry.get("architectures", "vgg").name == "vgg-mini"
    assert not [b for b in registry.broken if b.origin.dist == ORIGIN.dist]
    assert not any(registry.clashes[kind] for kind in registry.clashes)


def test_every_hparam_has_bounds_and_help() -> None:
    for cls in REGULARIZERS:
        assert cls.description
        assert cls.hparams, cls.name
        for hparam in cls.hparams:
            assert hparam.low < hparam.high and hparam.help, (cls.name, hparam.name)


def test_load_plugins_allow_list(monkeypatch) -> None:
    monkeypatch.setenv("REGBENCH_LOAD_PLUGINS", "regbench-extras")
    assert "l1" in build_registry().names("regularizers")
    monkeypatch.setenv("REGBENCH_LOAD_PLUGINS", "some-other-dist")
    registry = build_registry()
    assert "l1" not in registry.names("regularizers")
    assert "l2" in registry.names("regularizers")  # built-ins always load


def test_loading_the_plugin_does_not_import_keras() -> None:
    code = (
        "import sys; from regbench.plugins.manager import build_registry; build_registry(); "
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
