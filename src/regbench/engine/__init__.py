"""The run engine: experiment, plan, executors, trainer, models, tuning."""
