"""The Prefect deployments of reach, served by one long-running process (``reach up`` starts it).

``reach-pipeline`` (on demand), ``reach-retrain`` (pipeline then redeploy of the cluster being served,
on a cron schedule) and ``reach-redeploy`` (on demand). The retraining cron (UTC) comes from
``$REACH_HOME/schedule.json`` (written by ``reach retrain schedule``) or defaults to Sunday 03:00 UTC.
The two deployments that switch the service run one at a time (``concurrency_limit=1``: a second run
waits for the first) and read the analysis and the live cluster from the settings ``reach deploy``
reads (``from_settings``). Run as ``python -m flows.release.deployments``; ``deploy/prefect/prefect.yaml``
declares the same deployments for a process work pool, for users who prefer workers to a serving
process (with its own cron: the schedule file is this runner's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.local.processes import reach_home

DEFAULT_RETRAIN_CRON = "0 3 * * 0"  # Sundays 03:00 UTC
RETRAIN_TIMEZONE = "UTC"  # of the retraining cron (what `reach retrain schedule` says)
SWITCHING_RUNS = 1  # runs at once of a deployment that switches the service (retrain, redeploy)


def schedule_file() -> Path:
    return reach_home() / "schedule.json"


def retrain_cron() -> str:
    """The retraining schedule: the one saved by ``reach retrain schedule``, else the default."""
    path = schedule_file()
    if not path.exists():
        return DEFAULT_RETRAIN_CRON
    try:
        cron = json.loads(path.read_text())["cron"]
        if not isinstance(cron, str) or not valid_cron(cron):
            raise ValueError(f"{cron!r} is not a 5-field cron expression")
        return cron
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} holds no retraining schedule ({type(exc).__name__}: {exc}); set one with "
            f"`reach retrain schedule --cron '{DEFAULT_RETRAIN_CRON}'` or remove the file for the default"
        ) from exc


def valid_cron(cron: str) -> bool:
    """Whether ``cron`` is a 5-field expression Prefect's cron grammar accepts."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError:
        return False
    return len(cron.split()) == 5


def save_retrain_cron(cron: str) -> None:
    """Validate a cron expression (Prefect's own cron grammar, 5 fields) and save it for the runner."""
    if not valid_cron(cron):
        raise ValueError(f"not a valid 5-field cron expression: {cron!r} (example: '0 3 * * 0' = Sundays at 03:00 UTC)")
    path = schedule_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"cron": cron}))
    tmp.replace(path)


def deployments() -> list[Any]:
    """The three RunnerDeployments, with their schedules and descriptions."""
    from prefect.schedules import Cron

    from flows.pipeline import reach_pipeline
    from flows.release.redeploy import reach_redeploy, reach_retrain

    return [
        reach_pipeline.to_deployment(
            name="on-demand", description="Ingest → validate → train → evaluate → gate → package.", tags=["reach"]
        ),
        reach_retrain.to_deployment(
            name="scheduled",
            schedule=Cron(retrain_cron(), timezone=RETRAIN_TIMEZONE),
            description="Retrain the cluster being served (its files and planning; nothing serving: the defaults) "
            "on a schedule (UTC), then redeploy it; never switches to another cluster unless switch_cluster.",
            tags=["reach"],
            concurrency_limit=SWITCHING_RUNS,
        ),
        reach_redeploy.to_deployment(
            name="on-demand",
            description="Blue/green switch to the newest gated bento for a (scenario, workload), with a canary "
            "and an analysis period (Prometheus from the settings) that rolls back a worse policy.",
            tags=["reach"],
            parameters={"from_settings": True},  # unattended: the analysis and kubeconfig of `reach deploy`
            concurrency_limit=SWITCHING_RUNS,
        ),
    ]


def main() -> None:
    from prefect import serve

    serve(*deployments(), print_starting_message=True)


if __name__ == "__main__":
    main()
