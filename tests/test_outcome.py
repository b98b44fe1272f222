"""The run outcome, decided once for every engine: the epoch whose weights were kept, plugin
metrics in the epoch rows, no test split outside `final`."""

from __future__ import annotations

import numpy as np
import pytest
from doubles import RegularizersPlugin, install

from regbench.api import Regularizer, import_keras
from regbench.design.plan import Protocol, RunSpec


class RestoreFirstEpoch(Regularizer):
    """A callback that keeps the first epoch's weights, as EarlyStopping(restore_best_weights)
    does when the first epoch was the best, and logs a metric of its own every epoch."""

    name = "restore_first"
    description = "test double"
    family = "none-of-the-points"

    def callbacks(self, params):
        keras = import_keras()

        class Restore(keras.callbacks.Callback):
            restore_best_weights = True
            best_weights = None
            best_epoch = 0

            def on_epoch_end(self, epoch, logs=None):
                if epoch == 0:
                    self.best_weights = self.model.get_weights()
                logs["restore_first_marker"] = 10.0 + epoch

            def on_train_end(self, logs=None):
                self.model.set_weights(self.best_weights)

        return [Restore()]


@pytest.fixture
def with_plugin(request):
    install(request, RegularizersPlugin(RestoreFirstEpoch()))


def _train(tmp_path, stage="grid", epochs=3):
    from regbench.builtins.datasets import Digits
    from regbench.engine.trainer import train_run

    spec = RunSpec(
        arch="model1",
        reg="restore_first",
        params={},
        seed=0,
        stage=stage,
        protocol=Protocol(dataset="digits", epochs=epochs, learning_rate=0.05),
    )
    return spec, train_run(spec, lambda: Digits().load(0, {}), tmp_path / "models")


@pytest.mark.slow
def test_the_row_shows_the_epoch_whose_weights_were_kept(tmp_path, with_plugin):
    spec, result = _train(tmp_path)
    row = result.row
    assert row["status"] == "ok", row.get("error")
    assert (row["kept_epoch"], row["epochs_run"]) == (1, 3)
    first = {
        (e["metric"]): e["value"] for e in result.epochs if e["epoch"] == 1 and e["split"] == "val"
    }
    assert row["val_accuracy"] == first["accuracy"] and row["val_loss"] == first["loss"]
    # the saved model is the kept one: it scores the row's figure
    keras = import_keras()
    from regbench.builtins.datasets import Digits

    model = keras.saving.load_model(tmp_path / row["model_path"], compile=False, safe_mode=True)
    data = Digits().load(0, {})
    predicted = np.argmax(np.asarray(model(data.x_val, training=False)), axis=1)
    assert np.mean(predicted == data.y_val) == pytest.approx(row["val_accuracy"], abs=1e-6)
    # a plugin's own metric is kept, under its name, every epoch
    markers = sorted(
        (e["epoch"], e["value"]) for e in result.epochs if e["metric"] == "restore_first_marker"
    )
    assert markers == [(1, 10.0), (2, 11.0), (3, 12.0)]
    # a grid run never reads the test split
    assert row["test_accuracy"] is None and row["test_loss"] is None
    assert row["model_path"] == f"models/{spec.run_id}.keras"


@pytest.mark.slow
def test_only_final_reads_the_test_split(tmp_path, with_plugin):
    _, result = _train(tmp_path, stage="final", epochs=1)
    assert result.row["status"] == "ok", result.row.get("error")
    assert 0 <= result.row["test_accuracy"] <= 1 and result.row["val_accuracy"] is None
