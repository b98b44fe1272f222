"""The run engine: the executors and workers, the trainers (standard and vmapped), the outcome of
a run, models, optimizers and the tuner; what to run is decided in `regbench.design`."""
