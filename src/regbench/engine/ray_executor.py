"""Beyond one machine: each run a Ray task; results come back to the driver, which alone
writes the store. Optional: `pip install 'regbench[ray]'`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from regbench.engine.executor import ExecutorOptions, Hooks, failed_result
from regbench.engine.plan import RunSpec
from regbench.errors import RegbenchError

_DATA = None  # one DataCache per Ray worker process, reused across the tasks it runs


def _train_task(spec: RunSpec, options: ExecutorOptions):
    """Runs inside a Ray worker: load data once per process, train, return the result."""
    global _DATA
    from regbench.engine.worker import DataCache, resolve_trainer

    if _DATA is None or (_DATA.data_dir, _DATA.cache_dir) != (options.data_dir, options.cache_dir):
        _DATA = DataCache(options.data_dir, options.cache_dir)
    result = resolve_trainer(options.trainer)(
        spec, lambda: _DATA.get(spec), options.models_dir, lambda info: None
    )
    result.row["worker"] = f"ray:{os.uname().nodename}:{os.getpid()}"
    return result


def run_with_ray(specs: Sequence[RunSpec], options: ExecutorOptions, hooks: Hooks) -> None:
    """Submit every run as a Ray task (fractional GPUs when packing) and record as they finish."""
    try:
        import ray
    except ImportError:
        raise RegbenchError(
            "--executor ray needs Ray; install it with: pip install 'regbench[ray]'"
        ) from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(
                address=options.ray_address,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}},
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise RegbenchError(f"cannot reach Ray at {options.ray_address}: {exc}") from None
    try:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(_train_task).options(
            num_cpus=1, num_gpus=1 / options.per_device if has_gpus else 0, max_retries=0
        )
        pending = {task.remote(spec, options): spec for spec in specs}
        for spec in specs:
            hooks.on_start(spec.run_id, "ray")
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                spec = pending.pop(done[0])
                try:
                    result = ray.get(done[0])
                except Exception as exc:  # the task or its worker died
                    message = " ".join(str(exc).split())[:300]
                    result = failed_result(spec, f"ray task failed: {message}", "ray")
                hooks.on_result(result)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()
