"""Beyond one machine: each run a Ray task; results come back to the driver, which alone
writes the store. Optional: `pip install 'regbench[ray]'`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from regbench.design.plan import RunSpec
from regbench.engine.executor import ExecutorOptions, Hooks, failed_result
from regbench.errors import RegbenchError
from regbench.plugins.files import replaced

_DATA = None  # one DataCache per Ray worker process, reused across the tasks it runs


def _train_task(spec: RunSpec, options: ExecutorOptions):
    """Runs inside a Ray worker: load data once per process, train, return the result and
    the trained model's bytes. The model is saved in a folder private to this task, since a
    worker on another machine cannot write the driver's experiment folder."""
    global _DATA
    from regbench.engine.worker import DataCache, resolve_trainer

    if _DATA is None or (_DATA.data_dir, _DATA.cache_dir) != (options.data_dir, options.cache_dir):
        _DATA = DataCache(options.data_dir, options.cache_dir)
    scratch = Path(tempfile.mkdtemp(prefix="regbench-models-"))
    try:
        result = resolve_trainer(options.trainer)(
            spec, lambda: _DATA.get(spec), scratch if options.models_dir else None, lambda _: None
        )
        saved = result.row.get("model_path")  # relative: `<scratch's name>/<run_id>.keras`
        model = (scratch / Path(saved).name).read_bytes() if isinstance(saved, str) else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.row["worker"] = f"ray:{os.uname().nodename}:{os.getpid()}"
    return result, model


def _receive_model(result, model: bytes | None, models_dir: Path | None) -> None:
    """Write a model that came back from a worker into the driver's experiment folder; its
    stored path is relative to that folder, as the trainers store it (`models/<run_id>.keras`),
    so the folder can be read from any working folder, moved or copied."""
    if model is None or models_dir is None:
        result.row["model_path"] = None
        return
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / Path(result.row["model_path"]).name
    with replaced(path, ".tmp.keras") as tmp:
        tmp.write_bytes(model)
    result.row["model_path"] = f"{models_dir.name}/{path.name}"


def run_with_ray(specs: Sequence[RunSpec], options: ExecutorOptions, hooks: Hooks) -> None:
    """Submit every run as a Ray task (fractional GPUs when packing) and record as they finish."""
    try:
        import ray
    except ImportError:
        raise RegbenchError("--executor ray needs Ray: pip install 'regbench[ray]'") from None
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
                    result, model = ray.get(done[0])
                except Exception as exc:  # the task or its worker died
                    message = " ".join(str(exc).split())[:300]
                    result = failed_result(spec, f"ray task failed: {message}", "ray")
                else:
                    _receive_model(result, model, options.models_dir)
                hooks.on_result(result)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()
