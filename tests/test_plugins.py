"""The plugin system as plugin authors meet it: in-process plugins and installed distributions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import regbench
from regbench import hookimpl
from regbench.errors import PluginError
from regbench.plugins.hparams import HParam
from regbench.plugins.manager import Origin, build_registry
from regbench.plugins.regularizer import Regularizer


class Jitter(Regularizer):
    name = "jitter"
    description = "Gaussian noise at every point"
    family = "any"
    hparams = (HParam("stddev", 0.1, 0.0, 1.0),)

    def layers_at(self, point, params):
        from regbench.plugins.keras import import_keras

        return [import_keras().layers.GaussianNoise(params["stddev"])]


class InProcessPlugin:
    @hookimpl
    def register_regularizers(self, register):
        register(Jitter())


def test_builtins_come_from_regbench(registry):
    for kind, names in {
        "architectures": ["model1", "model2", "model3"],
        "regularizers": ["none", "l2", "dropout", "batchnorm"],
        "datasets": ["cifar10", "digits", "synthetic"],
    }.items():
        for name in names:
            assert registry.entries[kind][name].origin.dist == "regbench"
    assert registry.get("architectures", "conv-conv-dense").name == "model3"  # alias


def test_in_process_plugin_registers_and_builds():
    from regbench.engine.models import build_model

    reg = build_registry(extra_plugins=((InProcessPlugin(), Origin("my-plugin", "1.2")),))
    entry = reg.entries["regularizers"]["jitter"]
    assert entry.origin == Origin("my-plugin", "1.2")
    model = build_model(reg.get("architectures", "model3"), entry.obj, {"stddev": 0.2})
    assert sum(type(layer).__name__ == "GaussianNoise" for layer in model.layers) == 2


def test_unknown_names_list_the_valid_ones(registry):
    with pytest.raises(PluginError, match="unknown regularizer 'dropot'; choose from: none, l2"):
        registry.get("regularizers", "dropot")


def test_name_clash_names_both_distributions():
    class Clash:
        @hookimpl
        def register_regularizers(self, register):
            register(Jitter())

    reg = build_registry(
        extra_plugins=(
            (InProcessPlugin(), Origin("first-dist", "1")),
            (Clash(), Origin("second-dist", "2")),
        )
    )
    with pytest.raises(PluginError, match="first-dist 1 and second-dist 2"):
        reg.get("regularizers", "jitter")
    assert reg.get("regularizers", "dropout").name == "dropout"  # the rest is unharmed


def test_broken_plugins_are_recorded_and_the_rest_load():
    class Misspelled:
        @hookimpl
        def register_regularisers(self, register):  # no such hook
            pass

    class Raises:
        @hookimpl
        def register_architectures(self, register):
            raise RuntimeError("boom")

    reg = build_registry(
        extra_plugins=(
            (Misspelled(), Origin("typo-dist", "1")),
            (Raises(), Origin("raising-dist", "1")),
            (InProcessPlugin(), Origin("good-dist", "1")),
        )
    )
    errors = {b.origin.dist: b.error for b in reg.broken}
    assert "register_regularisers" in errors["typo-dist"]
    assert "boom" in errors["raising-dist"]
    assert "jitter" in reg.entries["regularizers"]


# ---------------------------------------------------------------- installed distributions


def make_distribution(site: Path, dist: str, module: str, source: str) -> None:
    """What `pip install` leaves behind: the module and a dist-info with an entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[regbench]\n{module} = {module}\n")


GOOD = """
    from regbench import hookimpl
    from regbench.plugins.hparams import HParam
    from regbench.plugins.regularizer import Regularizer

    class Shake(Regularizer):
        name = "shake"
        description = "A regularizer from an installed package"
        hparams = (HParam("amount", 0.5, 0.0, 1.0),)

    @hookimpl
    def register_regularizers(register):
        register(Shake())
"""
BROKEN = "import not_a_module_anywhere\n"
CLASHING = GOOD.replace('"A regularizer', '"Another regularizer')


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    make_distribution(folder, "regbench-good", "rb_good", GOOD)
    make_distribution(folder, "regbench-broken", "rb_broken", BROKEN)
    return folder


@pytest.fixture
def installed(site, monkeypatch, request):
    """`site` on this process's path, as if pip had installed it, and the registry rebuilt."""
    from doubles import use

    monkeypatch.syspath_prepend(str(site))
    use(request, None)
    yield site
    for module in ("rb_good", "rb_broken", "rb_other"):
        sys.modules.pop(module, None)


def list_json(cli, **env: str) -> dict:
    from regbench.plugins import manager

    manager.set_registry(None)  # the fixture restores the process-wide registry afterwards
    result = cli("list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_installed_plugin_is_listed_with_its_distribution(cli_subprocess, site):
    """In a fresh process, as a user who just ran `pip install` meets it."""
    result = cli_subprocess("list", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    shake = next(r for r in listing["regularizers"] if r["name"] == "shake")
    assert (shake["dist"], shake["version"]) == ("regbench-good", "0.3")
    assert shake["hyperparameters"][0]["name"] == "amount"
    broken = [b for b in listing["broken"] if b["dist"] == "regbench-broken"]
    assert broken and "not_a_module_anywhere" in broken[0]["error"]
    assert {r["name"] for r in listing["regularizers"]} >= {"none", "l2", "dropout", "batchnorm"}


def test_load_plugins_env_limits_third_party_plugins(cli, installed):
    only_good = list_json(cli, REGBENCH_LOAD_PLUGINS="regbench-good")
    assert "shake" in {r["name"] for r in only_good["regularizers"]}
    assert not [b for b in only_good["broken"] if b["dist"] == "regbench-broken"]
    none = list_json(cli, REGBENCH_LOAD_PLUGINS="")
    assert "shake" not in {r["name"] for r in none["regularizers"]}
    assert {r["name"] for r in none["regularizers"]} >= {"none", "l2", "dropout", "batchnorm"}


def test_installed_clash_names_both_distributions(cli, installed):
    make_distribution(installed, "regbench-other", "rb_other", CLASHING)
    listing = list_json(cli)
    assert listing["clashes"]["regularizers"]["shake"] == [
        "regbench-good 0.3",
        "regbench-other 0.3",
    ]
    result = cli("describe", "--arch", "model1", "--reg", "shake")
    assert result.returncode == 2
    assert "regbench-good 0.3 and regbench-other 0.3" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_and_help_do_not_import_tensorflow():
    code = (
        "import sys\nfrom regbench.cli import main\nmain(['list'])\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'loaded TF'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    code = (
        "import sys\nfrom regbench.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\nassert 'tensorflow' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_describe_json_matches_the_spec(cli):
    result = cli("describe", "--arch", "model3", "--reg", "batchnorm", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (
        summary["total_params"],
        summary["trainable_params"],
        summary["non_trainable_params"],
    ) == (1_122_086, 1_121_758, 328)
    assert [layer["type"] for layer in summary["layers"]] == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "BatchNormalization",
        "Flatten",
        "Dense",
        "BatchNormalization",
        "Dense",
    ]
    assert summary["layers"][0] == {
        "name": summary["layers"][0]["name"],
        "type": "Conv2D",
        "output_shape": [None, 30, 30, 64],
        "params": 1792,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "model9"], "unknown architecture 'model9'; choose from: model1"),
        (["--arch", "model1", "--reg", "dropout", "--param", "rate=1.5"], "outside its bounds"),
        (["--arch", "model1", "--input-shape", "4,4,3"], "model1 needs a larger input"),
        (["--arch", "model1", "--input-shape", "four"], "--input-shape expects H,W,C"),
    ],
)
def test_describe_bad_input_is_one_clear_line(cli, args, message):
    result = cli("describe", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_alias_never_shadows_another_plugins_name():
    from regbench.plugins.architecture import Architecture
    from regbench.plugins.table import Classifier, Flatten

    class Squatter:
        @hookimpl
        def register_architectures(self, register):
            register(Architecture("tiny", "flat", (Flatten(), Classifier()), aliases=("model3",)))

    reg = build_registry(extra_plugins=((Squatter(), Origin("squat-dist", "1")),))
    assert reg.get("architectures", "tiny").name == "tiny"
    with pytest.raises(PluginError, match=f"regbench {regbench.__version__} and squat-dist 1"):
        reg.get("architectures", "model3")
