"""The ``reach-redeploy`` and ``reach-retrain`` flows.

Redeploy serves one cluster, named by (scenario, workload): the ones asked for, else the cluster the
serving deployment was made for, else the one an explicitly named bento was trained for. It picks
the bento asked for (refused with :class:`flows.release.selection.NotServable` when it cannot serve
that cluster) or the newest gated bento that can (:mod:`.selection`: a specific bento of that
scenario and workload, or a general one within its limits), starts it beside the running one, checks
it with a canary batch of requests *of the served cluster* (:mod:`.canary`: the simulator's REACH
payloads from that scenario and workload, led by the live cluster's own request when a kubeconfig
is given), switches the endpoint and stops the old server
(:func:`flows.release.serving.redeploy`); any failure leaves the old service serving.

With :class:`flows.release.analysis.AnalysisParams` the old server stays up, idle, through an
analysis period: the latency Prometheus measured under the new policy is compared with the
incumbent's last period (:func:`flows.release.analysis.decide`); when it is worse beyond the
tolerance (or unmeasured) the previous bento serves again at once (blue/green back), the run
publishes a ``redeploy-analysis`` artifact and fails with :class:`RolledBack`. Retrain runs the
pipeline, then redeploy for the pipeline's scenario and workload when the gate passed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.pipeline import PipelineParams, reach_pipeline
from flows.release.analysis import AnalysisParams, AnalysisVerdict, decide
from flows.release.canary import canary_requests
from flows.release.serving import RedeployError

if TYPE_CHECKING:
    from flows.release.selection import Cluster
    from flows.release.serving import Endpoint, RedeployResult


class RolledBack(RedeployError):
    """The analysis found the new policy worse (or could not measure it): the previous bento serves again."""


class RollbackFailed(RuntimeError):
    """The analysis asked for a rollback and it failed: the *new* bento still serves (the message says which)."""


@task
def target_cluster(bento: str | None, scenario: str | None, workload: str | None) -> Cluster:
    """The cluster to serve: as asked, else the serving deployment's (the files it recorded, while they exist),
    else a named specific bento's own."""
    from flows.release.packaging import bento_labels
    from flows.release.selection import ANY, cluster_of
    from flows.release.serving import current_endpoint

    serving = current_endpoint()
    if serving is not None and serving.scenario and not scenario and not workload:
        # the files it serves, when they are still there: a name may stand for another folder under data/
        scenario = serving.scenario_dir if _exists(serving.scenario_dir) else serving.scenario
        workload = serving.workload_file if _exists(serving.workload_file) else serving.workload
    elif serving is not None and serving.scenario:
        scenario, workload = scenario or serving.scenario, workload or serving.workload
    elif bento is not None:
        labels = bento_labels(bento)
        own_scenario, own_workload = labels.get("scenario", ""), labels.get("workload", "")
        scenario = scenario or (own_scenario if own_scenario != ANY else None)
        workload = workload or (own_workload if own_workload != ANY else None)
    if not scenario or not workload:  # bad input, not a failed switch: nothing was started
        raise ValueError(
            "which cluster is this deployment for? nothing serves one yet; name it: "
            "reach deploy --scenario <name or dir> --workload <name or file> (e.g. --scenario 7-21 "
            "--workload aggregator_sequential)"
        )
    return cluster_of(scenario, workload)


def _exists(path: str) -> bool:
    return bool(path) and Path(path).exists()


@task
def choose_bento(requested: str | None, cluster: Cluster) -> str | None:
    """The bento to deploy for ``cluster``: the one asked for (if it can serve it), else the newest eligible gated one.

    None when the newest eligible bento already serves this cluster (nothing to do) or there is none.
    "Serves this cluster" compares the files' hashes too (:meth:`flows.release.serving.Endpoint.serves`):
    a deployment for other files of the same names, or one recorded without hashes, is replaced.
    """
    from flows.release.packaging import bento_labels, gated_bento_for
    from flows.release.selection import check_servable
    from flows.release.serving import current_endpoint

    if requested:
        check_servable(requested, bento_labels(requested), cluster)
        return requested
    serving = current_endpoint()
    newest = gated_bento_for(cluster)
    if serving is not None and serving.serves(cluster) and serving.bento == newest:
        return None
    return newest


@task
def switch_service(
    bento: str,
    cluster: Cluster,
    canary_size: int,
    ready_timeout_s: float,
    keep_previous: bool,
    kubeconfig: str | None = None,
) -> RedeployResult:
    """Blue/green switch with a canary of the served cluster; raises (and keeps the old service) on any failure.

    With ``kubeconfig`` the live cluster's own request (as the migrator builds it) comes first.
    """
    from flows.release.packaging import bento_labels
    from flows.release.selection import serve_arguments
    from flows.release.serving import redeploy

    arguments = serve_arguments(bento, bento_labels(bento), cluster)
    # the cluster's own files (a path need not be a name under data/, and a name there may be another cluster)
    requests = canary_requests(cluster.scenario_dir or cluster.scenario, cluster.workload_file or cluster.workload,
                               canary_size)  # fmt: skip
    if kubeconfig:
        from flows.release.canary import live_request
        from migrator.settings import MigratorSettings

        requests.insert(0, live_request(MigratorSettings(kubeconfig=kubeconfig)))
    result = redeploy(
        bento, requests, ready_timeout_s, cluster=cluster, retire_previous=not keep_previous, arguments=arguments
    )
    create_markdown_artifact(
        "# Redeploy\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in _summary(result).items()),
        key="redeploy",
        description="Blue/green switch",
    )
    return result


def _summary(result: RedeployResult) -> dict[str, Any]:
    canary = result.canary
    return {
        "bento": result.endpoint.bento,
        "scenario": result.endpoint.scenario,
        "workload": result.endpoint.workload,
        "url": result.endpoint.url,
        "slot": result.endpoint.slot,
        "previous": result.previous.bento if result.previous else None,
        "canary": f"{canary.requests} requests of {result.endpoint.scenario} / {result.endpoint.workload}, "
        f"0 failures, {canary.agreements} agree with the old service",
    }


@task
def measure_periods(switched_at_s: float, params: AnalysisParams) -> tuple[list[float], list[float]]:
    """Wait out the analysis period; the latency samples of the incumbent's last period and of the new one."""
    from migrator.metrics import PrometheusMetrics

    after_end_s = switched_at_s + params.warmup_s + params.period_s
    time.sleep(max(0.0, after_end_s - time.time()) + params.step_s)  # one more step: the last scrape lands
    reader = PrometheusMetrics(params.prometheus_url, params.latency_query, "")
    periods = {
        "incumbent": (switched_at_s - params.period_s, switched_at_s),
        "new policy": (switched_at_s + params.warmup_s, after_end_s),
    }
    samples = {}
    for name, (start_s, end_s) in periods.items():
        reader.last_error = ""
        samples[name] = reader.latency_series_ms(start_s, end_s, params.step_s)
        if reader.last_error:
            get_run_logger().warning("analysis, %s period: %s", name, reader.last_error)
    return samples["incumbent"], samples["new policy"]


def _verdict_markdown(verdict: AnalysisVerdict, result: RedeployResult, params: AnalysisParams) -> str:
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    change = "—" if verdict.change_pct is None else f"{verdict.change_pct:+.1f} %"
    previous = result.previous.bento if result.previous else "—"
    return (
        f"# Redeploy analysis: {verdict.outcome.upper()}{' — rolled back' if verdict.roll_back else ''}\n\n"
        f"Query `{params.latency_query}` on {params.prometheus_url}, {params.period_s:g} s per period, "
        f"{params.statistic}, tolerance {params.tolerance_pct:g} %.\n\n"
        "| policy | bento | samples | latency (ms) |\n|---|---|---:|---:|\n"
        f"| incumbent | {previous} | {verdict.before_samples} | {ms(verdict.before_ms)} |\n"
        f"| new | {result.endpoint.bento} | {verdict.after_samples} | {ms(verdict.after_ms)} |\n\n"
        f"Change: {change}\n\n" + "\n".join(f"- {r}" for r in verdict.reasons)
    )


def analyse_release(result: RedeployResult, params: AnalysisParams, ready_timeout_s: float) -> AnalysisVerdict:
    """The analysis period after a switch: keep the new bento (retire the old server) or roll back and raise."""
    from flows.release.serving import retire, roll_back

    previous = result.previous
    assert previous is not None  # the flow analyses only a switch that replaced a deployment

    def back(why: str) -> Endpoint:
        try:
            return roll_back(result, ready_timeout_s)
        except Exception as exc:
            raise RollbackFailed(
                f"{why}; rolling back to {previous.bento} failed ({exc}): {result.endpoint.bento} still serves "
                f"at {result.endpoint.url}; `reach deploy --bento {previous.bento}` redeploys the previous one"
            ) from exc

    try:
        before, after = measure_periods(result.endpoint.since, params)
        verdict = decide(before, after, params)
    except BaseException as exc:
        try:
            back(f"the analysis failed ({type(exc).__name__}: {exc})")  # never leave an untrusted policy serving
        except RollbackFailed as failed:
            if isinstance(exc, Exception):
                raise
            print(f"error: {failed}", file=sys.stderr)  # an interrupt stays an interrupt; say what serves
        raise
    create_markdown_artifact(
        _verdict_markdown(verdict, result, params), key="redeploy-analysis", description=verdict.summary()
    )
    if not verdict.roll_back:
        retire(previous)
        return verdict
    restored = back(verdict.summary())
    raise RolledBack(f"{verdict.summary()}; {restored.bento} serves again at {restored.url} (blue/green back)")


@flow(name="reach-redeploy", log_prints=True)
def reach_redeploy(
    bento: str | None = None,
    scenario: str | None = None,
    workload: str | None = None,
    canary_size: int = 16,
    ready_timeout_s: float = 120.0,
    analysis: AnalysisParams | None = None,
    kubeconfig: str | None = None,
) -> dict[str, Any]:
    """Serve the newest gated bento for the cluster (or ``bento``), blue/green, with a canary and an optional analysis."""
    cluster = target_cluster(bento, scenario, workload)
    chosen = choose_bento(bento, cluster)
    if chosen is None:
        get_run_logger().info("no gated bento for %s newer than the one serving it: nothing to deploy", cluster)
        return {"bento": None, "reason": f"nothing to deploy for {cluster}"}
    result = switch_service(chosen, cluster, canary_size, ready_timeout_s, analysis is not None, kubeconfig)
    summary = _summary(result)
    if analysis is not None and result.previous is None:
        summary["analysis"] = "skipped: the first deployment has no incumbent to compare with or to restore"
    elif analysis is not None:
        summary["analysis"] = analyse_release(result, analysis, ready_timeout_s).summary()
    return summary


@flow(name="reach-retrain", log_prints=True)
def reach_retrain(params: PipelineParams | None = None, analysis: AnalysisParams | None = None) -> dict[str, Any]:
    """The scheduled job: run the pipeline, then redeploy for its scenario and workload if the gate passed."""
    params = params or PipelineParams()
    result = reach_pipeline(params)
    if not result["passed"] or not result["bento"]:
        return {"pipeline": result, "redeploy": None}
    redeployed = reach_redeploy(result["bento"], params.scenario, params.workload, analysis=analysis)
    return {"pipeline": result, "redeploy": redeployed}


__all__ = ["RolledBack", "canary_requests", "reach_redeploy", "reach_retrain"]
