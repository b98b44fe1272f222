"""CPU budgeting: workers for the runs that exist, every core in use, worn workers replaced."""

from __future__ import annotations

import os
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from regbench.design.plan import Execution, Protocol, RunSpec
from regbench.engine import executor as ex
from regbench.engine.outcome import RunResult

_HELD: list[bytearray] = []  # memory a leaky trainer keeps, as TensorFlow's creep does


def threads_trainer(spec, load_data, models_dir, progress):
    """Reports the thread budget its worker was given, and which process it ran in."""
    leak = int(os.environ.get("LEAK_MB", "0"))
    if leak:
        _HELD.append(bytearray(os.urandom(1024)) * (leak * 1024))
    row = {
        **spec.row(),
        "status": "ok",
        "host": str(os.getpid()),
        "device": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        "total_time_s": float(os.environ.get("FAKE_SECONDS", "0")),
    }
    return RunResult(row, [])


def _specs(count: int, engine: str = "standard", seeds: int = 1) -> list[RunSpec]:
    return [
        RunSpec(
            arch=f"m{k}",
            reg="none",
            params={},
            seed=seed,
            protocol=Protocol(dataset="digits", epochs=1),
            execution=Execution(engine=engine),
        )
        for k in range(count)
        for seed in range(seeds)
    ]


@given(cores=st.integers(1, 64), workers=st.integers(1, 8) | st.none(), runs=st.integers(1, 100))
def test_workers_are_planned_for_the_runs_that_exist_and_share_every_core(cores, workers, runs):
    with mock.patch.object(ex, "cpu_cores", return_value=cores):
        plans = ex.plan_workers(ex.ExecutorOptions(devices=[], workers=workers), runs)
    planned = workers or max(1, min(4, cores))
    assert len(plans) == min(planned, runs)
    threads = {int(env["TF_NUM_INTRAOP_THREADS"]) for _, env in plans}
    assert threads == {max(1, cores // len(plans))}  # the same share each, all cores used
    assert all(env["CUDA_VISIBLE_DEVICES"] == "-1" for _, env in plans)


@given(devices=st.integers(1, 4), per_device=st.integers(1, 4), runs=st.integers(1, 20))
def test_gpu_slots_are_spread_over_devices_when_runs_are_few(devices, per_device, runs):
    ids = [str(d) for d in range(devices)]
    plans = ex.plan_workers(ex.ExecutorOptions(devices=ids, per_device=per_device), runs)
    assert len(plans) == min(devices * per_device, runs)
    used = [env["CUDA_VISIBLE_DEVICES"] for _, env in plans]
    assert max(used.count(d) for d in ids) - min(used.count(d) for d in ids) <= 1


@given(
    threads=st.integers(0, 8),
    to_start=st.integers(0, 20),
    alive=st.integers(1, 8),
    cores=st.integers(1, 32),
)
def test_tail_runs_take_the_cores_of_workers_going_idle(threads, to_start, alive, cores):
    got = ex.tail_threads(threads, to_start, alive, cores)
    assert got >= threads
    if threads == 0 or to_start == 0 or to_start >= alive:
        assert got == threads  # GPU workers, or enough runs left for every worker
    else:
        assert got == max(threads, cores // to_start)


def test_seeds_of_a_cell_are_one_task_on_the_vmapped_engine():
    standard, vmapped = _specs(2, seeds=3), _specs(2, engine="vmapped", seeds=3)
    assert [len(t) for t in ex.group_tasks(standard)] == [1] * 6
    tasks = ex.group_tasks(vmapped)
    assert [len(t) for t in tasks] == [3, 3]
    assert all(len({s.cell_hash for s in task}) == 1 for task in tasks)
    assert sorted(s.run_id for t in tasks for s in t) == sorted(s.run_id for s in vmapped)


def _run(specs, env: dict[str, str] | None = None, **options) -> list[dict]:
    rows: list[dict] = []
    opts = ex.ExecutorOptions(devices=[], trainer="test_threads:threads_trainer", **options)
    with mock.patch.dict(os.environ, env or {}):
        ex.run_with_workers(specs, opts, ex.Hooks(on_result=lambda r: rows.append(r.row)))
    return rows


def test_a_single_run_gets_every_core():
    rows = _run(_specs(1), workers=2)
    assert [r["device"] for r in rows] == [str(max(1, ex.cpu_cores()))]
    assert rows[0]["worker"] == "cpu0"


def test_long_last_runs_restart_with_the_cores_of_finished_workers():
    cores = 4
    with mock.patch.object(ex, "cpu_cores", return_value=cores):
        rows = _run(_specs(3), env={"FAKE_SECONDS": "100"}, workers=2)
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    rows.sort(key=lambda r: int(r["device"]))
    assert [int(r["device"]) for r in rows] == [2, 2, 4]  # the last run on all cores
    assert rows[2]["host"] not in {rows[0]["host"], rows[1]["host"]}  # in a fresh worker


def test_short_last_runs_keep_their_worker():
    with mock.patch.object(ex, "cpu_cores", return_value=4):
        rows = _run(_specs(3), workers=2)
    assert [int(r["device"]) for r in rows] == [2, 2, 2]
    assert len({r["host"] for r in rows}) == 2


def test_a_worker_whose_memory_grew_is_replaced():
    rows = _run(_specs(4), env={"LEAK_MB": "64"}, workers=1, max_memory_growth=0.05)
    hosts = [r["host"] for r in rows]
    assert len(rows) == 4 and len(set(hosts)) >= 2  # recycled after growing 64 MB a run
    assert hosts[0] == hosts[1]  # measured against its size after its first run


def test_memory_recycling_can_be_turned_off():
    rows = _run(_specs(3), env={"LEAK_MB": "64"}, workers=1, max_memory_growth=None)
    assert len({r["host"] for r in rows}) == 1
