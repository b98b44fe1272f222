"""The stages after the grid: `visualize` on a trained run and `final` on train+validation."""

from __future__ import annotations

import re

import numpy as np
import pytest

from regbench.cli import main
from regbench.results.reader import load

# one worker trains the experiment fixture, for real (two cells: over 4 s), so the module is in
# the slow tier by the marker's definition
pytestmark = [pytest.mark.xdist_group("stages"), pytest.mark.slow]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two trained cells, model1 + none and model3 + batchnorm, one epoch on 70 synthetic
    images (what is drawn and refused does not depend on how well they learnt)."""
    folder = tmp_path_factory.mktemp("exp")
    data = ["--dataset", "synthetic", "--dataset-option", "size=70", "--epochs", "1"]
    for arch, reg in (("model1", "none"), ("model3", "batchnorm")):
        argv = ["run", "--arch", arch, "--reg", reg, *data]
        assert main([*argv, "--experiment", str(folder), "--executor", "inprocess"]) == 0
    return folder


def test_visualize_a_cell_writes_every_figure(experiment, tmp_path, cli):
    out = tmp_path / "figs"
    result = cli(
        "visualize",
        "--arch",
        "model3",
        "--reg",
        "batchnorm",
        "--experiment",
        str(experiment),
        "--output-dir",
        str(out),
        "--class",
        "3",
        "--split",
        "test",  # 70 images: the validation tenth may lack class 3
        "--layers",
        "2",  # 64 panels a layer; test_visualizers draws all four
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    # Keras numbers layer names per process (conv2d, conv2d_1, ...): compare without it
    assert [re.sub(r"_\d+(?=\.png)", "", name) for name in names] == [
        "featuremaps/featuremaps_01_conv2d.png",
        "featuremaps/featuremaps_02_max_pooling2d.png",
        "filters/filters.png",
        "gradcam/gradcam.png",
    ]


def test_visualize_a_run_with_an_image_file(experiment, tmp_path, cli):
    from PIL import Image

    photo = tmp_path / "horse.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    run_id = load(experiment).runs.query("arch == 'model1' and reg == 'none'")["run_id"].iloc[0]
    result = cli(
        "visualize",
        "--run",
        run_id,
        "--experiment",
        str(experiment),
        "--image",
        str(photo),
        "--with",
        "featuremaps",
        "--layers",
        "2",
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "o").rglob("*.png"))) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "nope"], "no run 'nope'"),
        (["--arch", "model2", "--reg", "none"], "no finished model2 + none run"),
        (["--arch", "model1", "--reg", "none", "--image", "/nonexistent.png"], "no such file"),
        (
            ["--arch", "model1", "--reg", "none", "--with", "heatmap"],
            "unknown visualizer 'heatmap'",
        ),
        (["--arch", "model1"], "name a run with --run"),
        (
            ["--arch", "model1", "--reg", "none", "--dataset", "digits"],
            "--dataset digits: no run in",
        ),
    ],
)
def test_visualize_bad_input_is_one_line(experiment, cli, args, message):
    result = cli("visualize", "--experiment", str(experiment), *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("odd", ["fifo-image", "figures-a-file"])
def test_visualize_refuses_a_fifo_image_and_a_file_for_a_folder(experiment, cli, tmp_path, odd):
    """Probes 10 and 11: `--image FIFO` used to hang, `--figures existing.png` to print a
    NotADirectoryError; each is one line, exit 2, and nothing drawn."""
    import os

    base = ["visualize", "--experiment", str(experiment), "--arch", "model1", "--reg", "none"]
    if odd == "fifo-image":
        os.mkfifo(tmp_path / "pipe")
        args, message = ["--image", str(tmp_path / "pipe")], "is not a regular file (a FIFO)"
    else:
        (tmp_path / "existing.png").write_bytes(b"")
        args, message = ["--output-dir", str(tmp_path / "existing.png")], "cannot make the figures"
    result = cli(*base, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_final_best_trains_on_train_and_validation_and_tests_once(experiment, monkeypatch):
    from regbench.plugins.keras import import_keras

    keras = import_keras()
    calls = []
    evaluate = keras.Model.evaluate

    def counting(self, x=None, *args, **kwargs):
        calls.append(len(x))
        return evaluate(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "evaluate", counting)
    argv = ["final", "--best", "--epochs", "2", "--dataset", "synthetic"]
    assert main([*argv, "--experiment", str(experiment)]) == 0
    runs, epochs = load(experiment)
    grid = runs[runs["stage"] == "grid"]
    final = runs[runs["stage"] == "final"].iloc[0]
    best = grid.sort_values("val_accuracy", ascending=False).iloc[0]
    assert (final["arch"], final["reg"]) == (best["arch"], best["reg"])
    assert final["n_train"] == best["n_train"] + best["n_val"] and final["n_val"] == 0
    # the clean training subset before training (the divergence rule's initial loss) and
    # after it (train accuracy), then the test split, read once
    clean = min(final["n_train"], 5000)
    assert calls == [clean, clean, final["n_test"]]
    final_epochs = epochs[epochs["run_id"] == final["run_id"]]
    assert set(final_epochs["split"]) == {"train"} and final_epochs["epoch"].max() == 2
    assert (experiment / "figures" / f"{final['run_id']}.png").exists()
    # the final row never enters the grid's leaderboard
    from regbench.results.leaderboard import table

    assert len(table(runs, epochs)) == 2


def test_final_refuses_bad_input_before_writing(experiment, cli):
    before = len(load(experiment).runs)
    for args, message in (
        (["--epochs", "0"], "epochs must be between 1 and"),
        (["--seed", "-3"], "each seed must be between 0 and"),
        (["--data-dir", "/nonexistent"], "data_dir /nonexistent does not"),
        (["--dataset", "digits"], "(its datasets: synthetic)"),
    ):
        result = cli("final", "--best", "--experiment", str(experiment), *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(load(experiment).runs) == before


@pytest.mark.parametrize("split", ["validation", "test"])
def test_visualize_looks_at_validation_unless_told(experiment, tmp_path, monkeypatch, split):
    """Looking at a model never shows its test images by default; `split="test"` does."""
    import regbench
    from regbench.builtins.visualizers import FeatureMaps
    from regbench.design.experiment import Experiment
    from regbench.plugins.manager import registry
    from regbench.study.settings import load_data

    seen = []
    monkeypatch.setattr(FeatureMaps, "render", lambda self, m, image, *a: seen.append(image) or [])
    data = load_data(Experiment.create(), "synthetic", {"size": 70}, 0, registry())
    images, labels = (
        (data.x_val, data.y_val) if split == "validation" else (data.x_test, data.y_test)
    )
    wanted = int(labels[-1])  # a class the split has; its first image is drawn
    kwargs = {} if split == "validation" else {"split": "test"}
    regbench.visualize(
        experiment,
        arch="model1",
        reg="none",
        class_name=str(wanted),
        visualizers=["featuremaps"],
        **kwargs,
    )
    np.testing.assert_array_equal(seen[0], images[int((labels == wanted).argmax())])


def test_visualize_refuses_an_unknown_split(experiment):
    import regbench
    from regbench.errors import RegbenchError

    with pytest.raises(RegbenchError, match="split must be one of validation, test"):
        regbench.visualize(experiment, arch="model1", reg="none", split="train")


class _Broken:
    """A visualizer plugin whose `render` raises, and one that returns no list of paths."""

    from regbench.api import hookimpl

    @hookimpl
    def register_visualizers(self, register):
        from regbench.api import Visualizer

        class Raises(Visualizer):
            name, description = "raises", "raises as it draws"

            def render(self, model, image, out_dir, options):
                raise ZeroDivisionError("a bug in the plugin")

        class Returns(Visualizer):
            name, description = "returns", "returns a number"

            def render(self, model, image, out_dir, options):
                return 3

        register(Raises())
        register(Returns())


@pytest.mark.parametrize(
    "name, complaint",
    [("raises", "ZeroDivisionError: a bug in the plugin"), ("returns", "TypeError: render")],
)
def test_a_failing_visualizer_is_one_line_naming_it(
    experiment,
    monkeypatch,
    capsys,
    name,
    complaint,
    request,
):
    """A visualizer plugin's bug is the plugin's, said in one line with exit 2 (no traceback)."""
    from doubles import install

    from regbench.plugins.manager import Origin

    install(request, _Broken(), Origin("broken-vis", "0.1"))
    argv = ["visualize", "--experiment", str(experiment), "--arch", "model1", "--reg", "none"]
    assert main([*argv, "--with", name]) == 2
    err = capsys.readouterr().err
    assert f"visualizer {name!r} (broken-vis 0.1) failed: {complaint}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_lost_model_names_the_experiment_folder_from_anywhere(experiment, cli, tmp_path):
    """Probe 14: with the models gone and the command run from another folder, the advice
    named that folder (`--experiment /`) instead of the experiment."""
    import shutil

    copy = tmp_path / "exp"
    shutil.copytree(experiment, copy, ignore=shutil.ignore_patterns(".regbench.lock"))
    shutil.rmtree(copy / "models")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    argv = ["visualize", "--experiment", str(copy), "--arch", "model1", "--reg", "none"]
    result = cli(*argv, cwd=elsewhere)
    assert result.returncode == 2, result.stderr
    assert f"--experiment {copy} " in result.stderr and "model is gone" in result.stderr
