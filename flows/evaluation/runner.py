"""Where the evaluation fan-out runs: Prefect's default task runner, or Dask (local or a remote scheduler).

A *runner spec* is a short string, the ``task_runner`` parameter of the pipeline and the
``--task-runner`` of the benchmark: ``default`` (Prefect's thread pool, in this process), ``dask``
(a ``distributed.LocalCluster`` of one single-threaded worker process per core, started for the run
and closed after it) or ``dask://HOST:PORT`` / ``tcp://HOST:PORT`` (an existing Dask scheduler: its
workers, on any machines, run the units; deploy/README.md says how to start one). Evaluation units
are CPU-bound Python, so threads share one core; Dask's worker processes use them all.
:func:`evaluate_on` is the Prefect subflow that maps :func:`flows.evaluation.units.evaluate_unit`
over units on the chosen runner. Used by :mod:`flows.pipeline` and ``benchmarks/bench_evaluation.py``;
``prefect_dask`` is imported only when a Dask runner is asked for.
"""

from __future__ import annotations

import os
import re
from typing import Any

from prefect import flow, task

DEFAULT = "default"
LOCAL_DASK = "dask"
_ADDRESS = re.compile(r"^(?:dask|tcp)://(?P<host>[A-Za-z0-9_.\-\[\]:]+):(?P<port>\d{1,5})$")


def check_runner_spec(spec: str) -> str:
    """The spec unchanged, or a ValueError that names the accepted forms."""
    if spec in (DEFAULT, LOCAL_DASK) or _ADDRESS.match(spec):
        return spec
    raise ValueError(
        f"task_runner {spec!r} is not one of: 'default', 'dask' (a local Dask cluster) or "
        "'dask://HOST:PORT' (a Dask scheduler, e.g. dask://10.0.0.5:8786)"
    )


def make_task_runner(spec: str, workers: int | None = None) -> Any:
    """The Prefect task runner of a spec (``workers``: local Dask worker processes, default one per core)."""
    check_runner_spec(spec)
    if spec == DEFAULT:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    from prefect_dask.task_runners import DaskTaskRunner

    if spec == LOCAL_DASK:
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": workers or os.cpu_count() or 1,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,  # no web UI port: loopback-only rule, nothing to expose
                "host": "127.0.0.1",
            },
        )
    match = _ADDRESS.match(spec)
    assert match is not None  # checked above
    return DaskTaskRunner(address=f"tcp://{match['host']}:{match['port']}")


@task
def evaluate_unit(unit: Any) -> list[Any]:
    """One (workload, family, seed) unit: the policy and every baseline on held-out start states."""
    from flows.evaluation.units import evaluate_unit as run_unit

    return run_unit(unit)


@flow(name="reach-evaluation")
def evaluate_units(units: list[Any]) -> list[Any]:
    """Every unit's records, in unit order (the task runner is chosen by :func:`evaluate_on`)."""
    return [r for batch in evaluate_unit.map(units).result() for r in batch]


def evaluate_on(spec: str, units: list[Any], workers: int | None = None) -> list[Any]:
    """Run :func:`evaluate_units` as a subflow (or a flow) on the runner of ``spec``."""
    runner = make_task_runner(spec, workers)
    records: list[Any] = evaluate_units.with_options(task_runner=runner)(units)
    return records
