"""Where the evaluation fan-out runs: Prefect's default task runner, or Dask (local or a remote scheduler).

A *runner spec* is a short string, the ``task_runner`` parameter of the pipeline and the
``--task-runner`` of the benchmark: ``default`` (Prefect's thread pool with one worker thread, in
this process: one unit after another), ``dask``
(a ``distributed.LocalCluster`` of one single-threaded worker process per core, started for the run
and closed after it) or ``dask://HOST:PORT`` / ``tcp://HOST:PORT`` (an existing Dask scheduler: its
workers, on any machines, run the units; deploy/README.md says how to start one). Evaluation units
are CPU-bound Python, so threads share one core; Dask's worker processes use them all. More threads
are slower than one, most likely because the units' many small numpy operations contend for the GIL (Prefect's own
default pool, one thread per unit, took 50.1 s for 12 units where one thread took 16.1 s,
``benchmarks/results/evaluation/bench.md``).
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
DEFAULT_THREADS = 1  # the default runner's worker threads (more contend for the GIL: bench_evaluation)
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

        return ThreadPoolTaskRunner(max_workers=DEFAULT_THREADS)
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


def _worker_ceiling() -> str:
    """The best-known search this process's code runs (:data:`ceenv.search.CEILING`)."""
    from ceenv.search import CEILING

    return CEILING


@task
def evaluate_unit(unit: Any) -> tuple[str, list[Any]]:
    """One (workload, family, seed) unit: the policy and every baseline on held-out start states, with the
    ceiling the process that ran it computes (a standing Dask worker may run older code)."""
    from flows.evaluation.units import evaluate_unit as run_unit

    return _worker_ceiling(), run_unit(unit)


@flow(name="reach-evaluation")
def evaluate_units(units: list[Any]) -> list[Any]:
    """Every unit's records, in unit order (the task runner is chosen by :func:`evaluate_on`).

    Refused when a unit's best-known ceiling is not the one this process labels the report with: a
    Dask worker started before the search changed would otherwise mix two ceilings under one label.
    """
    from ceenv.search import CEILING as here

    results = evaluate_unit.map(units).result()
    foreign = sorted({ceiling for ceiling, _ in results if ceiling != here})
    if foreign:
        raise RuntimeError(
            f"{sum(c != here for c, _ in results)} of {len(results)} evaluation units ran a best-known search "
            f"other than this process's ({here!r}): {foreign}; restart the task runner's workers (e.g. the Dask "
            "scheduler's) with this version of reach, then evaluate again"
        )
    return [r for _, batch in results for r in batch]


def evaluate_on(spec: str, units: list[Any], workers: int | None = None) -> list[Any]:
    """Run :func:`evaluate_units` as a subflow (or a flow) on the runner of ``spec``."""
    runner = make_task_runner(spec, workers)
    records: list[Any] = evaluate_units.with_options(task_runner=runner)(units)
    return records
