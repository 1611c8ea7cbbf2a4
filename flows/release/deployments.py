"""The Prefect deployments of reach, served by one long-running process (``reach up`` starts it).

``reach-pipeline`` (on demand), ``reach-retrain`` (pipeline then redeploy, on a cron schedule) and
``reach-redeploy`` (on demand). The retraining cron comes from ``$REACH_HOME/schedule.json``
(written by ``reach retrain schedule``) or defaults to Sunday 03:00. Run as
``python -m flows.release.deployments``; ``deploy/prefect/prefect.yaml`` declares the same deployments for a
process work pool, for users who prefer workers to a serving process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.local.processes import reach_home

DEFAULT_RETRAIN_CRON = "0 3 * * 0"


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
        raise ValueError(f"not a valid 5-field cron expression: {cron!r} (example: '0 3 * * 0' = Sundays at 03:00)")
    path = schedule_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"cron": cron}))
    tmp.replace(path)


def deployments() -> list[Any]:
    """The three RunnerDeployments, with their schedules and descriptions."""
    from flows.pipeline import reach_pipeline
    from flows.release.redeploy import reach_redeploy, reach_retrain

    return [
        reach_pipeline.to_deployment(
            name="on-demand", description="Ingest → validate → train → evaluate → gate → package.", tags=["reach"]
        ),
        reach_retrain.to_deployment(
            name="scheduled",
            cron=retrain_cron(),
            description="Retrain on a schedule, then redeploy for the pipeline's scenario and workload.",
            tags=["reach"],
        ),
        reach_redeploy.to_deployment(
            name="on-demand",
            description="Blue/green switch to the newest gated bento for a (scenario, workload), with a canary "
            "and an optional analysis period that rolls back a worse policy.",
            tags=["reach"],
        ),
    ]


def main() -> None:
    from prefect import serve

    serve(*deployments(), print_starting_message=True)


if __name__ == "__main__":
    main()
