"""The evaluation fan-out on Dask: a LocalCluster and a scheduler address give the default runner's records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest

from flows.evaluation.runner import check_runner_spec, evaluate_on, make_task_runner
from flows.evaluation.units import plan_units
from tests.conftest import scenario_dir, workload_file


def _units() -> list[Any]:
    return plan_units(
        scenario_dir("7-21"),
        [workload_file("aggregator_sequential"), workload_file("chain")],
        ["steady", "node_failure"],
        [0, 1],
        episodes=2,
        model_dir=None,
        baselines=("noop", "greedy", "random"),
    )


def _rows(records: list[Any]) -> list[dict[str, Any]]:
    """Records without their decision time (a measurement that differs run to run)."""
    return [{k: v for k, v in asdict(r).items() if k != "decision_seconds"} for r in records]


@pytest.fixture(scope="module")
def default_records(prefect_harness: None) -> list[dict[str, Any]]:
    return _rows(evaluate_on("default", _units()))


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A separate Dask scheduler with one worker process, reached by address as a remote one would be."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as c:
        yield c.scheduler_address


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_same_records_as_the_default_runner(
    default_records: list[dict[str, Any]],
) -> None:
    assert len(default_records) == 8 * 2 * 3
    assert _rows(evaluate_on("dask", _units(), workers=2)) == default_records


@pytest.mark.slow
def test_a_dask_scheduler_address_runs_the_same_code(default_records: list[dict[str, Any]], scheduler: str) -> None:
    spec = scheduler.replace("tcp://", "dask://")
    assert _rows(evaluate_on(spec, _units())) == default_records


@pytest.mark.parametrize("bad", ["dask:8786", "ray://h:1", "dask://host", ""])
def test_unknown_runner_specs_are_refused_with_the_accepted_forms(bad: str) -> None:
    with pytest.raises(ValueError, match="dask://HOST:PORT"):
        check_runner_spec(bad)


def test_specs_map_to_prefect_task_runners() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask.task_runners import DaskTaskRunner

    assert isinstance(make_task_runner("default"), ThreadPoolTaskRunner)
    local = make_task_runner("dask", workers=3)
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 3
    remote = make_task_runner("dask://10.0.0.5:8786")
    assert remote.address == "tcp://10.0.0.5:8786"


def test_the_default_runner_runs_one_unit_at_a_time(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads only contend for the GIL on these CPU-bound units (bench_evaluation): one at a time, in order."""
    import threading
    import time

    import flows.evaluation.units as units_module

    lock = threading.Lock()
    seen = {"active": 0, "most": 0}
    order: list[int] = []

    def one(unit: Any, policy: Any = None) -> list[Any]:
        with lock:
            seen["active"] += 1
            seen["most"] = max(seen["most"], seen["active"])
            order.append(unit.seed)
        time.sleep(0.05)  # long enough for a second thread to start meanwhile, were there one
        with lock:
            seen["active"] -= 1
        return [unit.seed]

    monkeypatch.setattr(units_module, "evaluate_unit", one)
    units = _units()[:4]
    assert evaluate_on("default", units) == [u.seed for u in units]
    assert seen["most"] == 1


def test_units_whose_worker_runs_another_ceiling_are_refused(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standing worker started before the search changed: its records must not be labelled with ours."""
    import flows.evaluation.runner as runner

    monkeypatch.setattr(runner, "_worker_ceiling", lambda: "the search of an older reach")
    with pytest.raises(RuntimeError, match="restart the task runner's workers"):
        evaluate_on("default", _units()[:2])
