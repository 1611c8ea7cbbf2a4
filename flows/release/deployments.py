"""The Prefect deployments of reach, served by one long-running process (``reach up`` starts it).

``reach-pipeline`` (on demand), ``reach-retrain`` (pipeline then redeploy of the cluster being served,
on a cron schedule) and ``reach-redeploy`` (on demand). The retraining cron (UTC) comes from
``$REACH_HOME/schedule.json`` (written by ``reach retrain schedule``) or defaults to Sunday 03:00 UTC.
The two deployments that switch the service each run one at a time (``concurrency_limit=1`` per
deployment: a second run of the same deployment waits for the first); a retrain and a redeploy may run
at once (the retrain's redeploy is a subflow, outside the other deployment's limit), and the switch
lock of :mod:`.serving` serialises their switches: a switch that waits more than 180 s behind another
fails with ``SwitchBusy``, having changed nothing. Both read the analysis and the live cluster from the
settings ``reach deploy`` reads (``from_settings``). A schedule is refused unless it fires
(:func:`next_fire_time`: ``0 0 30 2 *`` never does). Run as ``python -m flows.release.deployments``; ``deploy/prefect/prefect.yaml``
declares the same deployments for a process work pool, for users who prefer workers to a serving
process (with its own cron: the schedule file is this runner's).
"""

from __future__ import annotations

import datetime
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
            raise ValueError(f"{cron!r} is not a 5-field cron expression that ever fires")
        return cron
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} holds no retraining schedule ({type(exc).__name__}: {exc}); set one with "
            f"`reach retrain schedule --cron '{DEFAULT_RETRAIN_CRON}'` or remove the file for the default"
        ) from exc


def valid_cron(cron: str) -> bool:
    """Whether ``cron`` is a 5-field expression Prefect's cron grammar accepts and that fires at some time
    (``0 0 30 2 *``, February 30th, is well formed but never fires: :func:`next_fire_time`)."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError:
        return False
    return len(cron.split()) == 5 and next_fire_time(cron) is not None


def next_fire_time(cron: str, after: datetime.datetime | None = None) -> datetime.datetime | None:
    """The first time (UTC) after ``after`` (default: now) that ``cron`` fires, or None when it never does.

    Computed by the croniter Prefect's scheduler uses (``prefect._vendor.croniter``, as Prefect calls it: a naive
    start, day of month OR day of week), so a cron it cannot schedule is refused here, not in the runner."""
    from prefect._vendor.croniter.croniter import CroniterError, croniter

    start = (after or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    try:
        schedule = croniter(cron, start.replace(tzinfo=None), day_or=True)  # type: ignore[no-untyped-call]
        fire: datetime.datetime = schedule.get_next(datetime.datetime)  # type: ignore[no-untyped-call]
    except (CroniterError, ValueError, KeyError):
        return None
    return fire.replace(tzinfo=datetime.UTC)


def save_retrain_cron(cron: str) -> None:
    """Validate a cron expression (Prefect's own cron grammar, 5 fields, one that fires) and save it for the runner."""
    if not valid_cron(cron):
        raise ValueError(
            f"not a 5-field cron expression that ever fires: {cron!r} (a date that does not exist, such as February "
            f"30th, never fires); example: '{DEFAULT_RETRAIN_CRON}' = Sundays at 03:00 UTC"
        )
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
            description="Retrain the cluster being served (the endpoint file's, also while its server is down: its files "
            "and planning; none recorded: the defaults) "
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
