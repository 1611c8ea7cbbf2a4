"""The ``reach-redeploy`` and ``reach-retrain`` flows.

Redeploy picks the newest bento whose gate passed and that is not serving, starts it beside the
running one, checks it with a canary batch of requests, switches the endpoint and stops the old
server (:func:`flows.release.serving.redeploy`); any failure leaves the old service serving. Canary
requests are drawn from the bento's own scenario by the simulator (the same REACH payload a
cluster would send). Retrain runs the pipeline, then redeploy when the gate passed.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.pipeline import PipelineParams, reach_pipeline


def canary_requests(scenario: str, workload: str, count: int, seed: int = 20_000) -> list[dict[str, Any]]:
    """``count`` REACH requests from random start states of the scenario (dynamic draws)."""
    from ceenv.env import CloudEdgeEnv
    from ceenv.payload import request_from_state
    from flows.local.paths import resolve_scenario, resolve_workload

    scenario_dir = resolve_scenario(scenario)
    env = CloudEdgeEnv(scenario_dir, resolve_workload(workload, scenario_dir))
    requests = []
    for i in range(count):
        env.reset(seed=seed + i)
        sim = env.simulator
        requests.append(
            request_from_state(
                env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, sim.target_ok()
            )
        )
    return requests


@task
def choose_bento(requested: str | None) -> str | None:
    """The bento to deploy: the one asked for, else the newest gated bento that is not serving."""
    from flows.release.packaging import newest_gated_bento
    from flows.release.serving import current_endpoint

    if requested:
        return requested
    serving = current_endpoint()
    return newest_gated_bento(exclude=serving.bento if serving else None)


@task
def switch_service(bento: str, canary_size: int, ready_timeout_s: float) -> dict[str, Any]:
    """Blue/green switch with a canary; raises (and keeps the old service) on any failure."""
    import bentoml

    from flows.release.serving import redeploy

    labels = bentoml.bentos.get(bento).info.labels
    requests = canary_requests(
        labels.get("scenario", "7-21"), labels.get("workload", "aggregator_sequential"), canary_size
    )
    result = redeploy(bento, requests, ready_timeout_s)
    summary = {
        "bento": bento,
        "url": result.endpoint.url,
        "slot": result.endpoint.slot,
        "previous": result.previous.bento if result.previous else None,
        "canary": f"{result.canary.requests} requests, 0 failures, {result.canary.agreements} agree with the old service",
    }
    create_markdown_artifact(
        "# Redeploy\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in summary.items()),
        key="redeploy",
        description="Blue/green switch",
    )
    return summary


@flow(name="reach-redeploy", log_prints=True)
def reach_redeploy(bento: str | None = None, canary_size: int = 16, ready_timeout_s: float = 120.0) -> dict[str, Any]:
    """Serve the newest gated bento (or ``bento``), blue/green, with a canary check."""
    chosen = choose_bento(bento)
    if chosen is None:
        get_run_logger().info("no gated bento newer than the one serving: nothing to deploy")
        return {"bento": None, "reason": "nothing to deploy"}
    return switch_service(chosen, canary_size, ready_timeout_s)


@flow(name="reach-retrain", log_prints=True)
def reach_retrain(params: PipelineParams | None = None) -> dict[str, Any]:
    """The scheduled job: run the pipeline, then redeploy if its policy passed the gate."""
    result = reach_pipeline(params)
    if not result["passed"] or not result["bento"]:
        return {"pipeline": result, "redeploy": None}
    return {"pipeline": result, "redeploy": reach_redeploy(result["bento"])}


__all__ = ["canary_requests", "reach_redeploy", "reach_retrain"]
