"""The names a setting may take, as plain data: the settings table, the parsers and the plan read
them from here, and nothing here imports anything."""

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "nadam", "adagrad")
# Keras's default learning rate of each optimizer (keras.optimizers.get(name).learning_rate)
DEFAULT_LEARNING_RATES = {"sgd": 0.01}  # every other optimizer here: 0.001
LR_SCHEDULES = ("constant", "cosine", "step", "warmup_cosine")
JIT_CHOICES = ("auto", "on", "off")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
TARGET_METRICS = ("val_accuracy", "accuracy", "val_loss", "loss")  # losses: reached when <=
ENGINES = ("standard", "vmapped")  # vmapped: packs of runs as one JAX program (engine/vmapped.py)
PIPELINES = ("auto", "arrays", "tf.data")  # how batches reach the model (engine/pipeline.py)
EXECUTORS = ("local", "inprocess", "ray")
