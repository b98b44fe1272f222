"""Losses the extras train with. Imported only when a run asks for one: this imports Keras."""

from regbench.api import import_keras

keras = import_keras()


@keras.saving.register_keras_serializable(package="regbench_extras")
class SparseLabelSmoothing(keras.losses.Loss):
    """Categorical crossentropy against smoothed one-hot targets, taking what the trainer gives:
    sparse integer labels and softmax probabilities (Keras's sparse loss cannot smooth).

    Registered, so a model saved while compiled with it also reloads with compile=True.
    """

    def __init__(self, smoothing: float = 0.1, name: str = "sparse_label_smoothing", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        classes = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        targets = keras.ops.one_hot(labels, classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            targets, y_pred, label_smoothing=self.smoothing
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "smoothing": self.smoothing}
