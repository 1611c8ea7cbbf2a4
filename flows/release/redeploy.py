"""The ``reach-redeploy`` and ``reach-retrain`` flows.

Redeploy serves one cluster, named by (scenario, workload): the ones asked for, else the cluster the
serving deployment was made for, else the one an explicitly named bento was trained for. It picks
the bento asked for (refused with :class:`flows.release.selection.NotServable` when it cannot serve
that cluster) or the newest gated bento that can (:mod:`.selection`: a specific bento of that
scenario and workload, or a general one within its limits) and that no earlier deploy rejected
(:mod:`.rejections`: a failed canary, a rollback), starts it beside the running one, checks
it with a canary batch of requests *of the served cluster* (:mod:`.canary`: the simulator's REACH
payloads from that scenario and workload, led by the live cluster's own request when a kubeconfig
is given), switches the endpoint and stops the old server
(:func:`flows.release.serving.redeploy`); any failure leaves the old service serving.

With :class:`flows.release.analysis.AnalysisParams` the old server stays up, idle, through an
analysis period: the latency Prometheus measured under the new policy is compared with the
incumbent's last period (:func:`flows.release.analysis.decide`); when it is worse beyond the
tolerance (or unmeasured) the previous bento serves again at once (blue/green back), the run
publishes a ``redeploy-analysis`` artifact and fails with :class:`RolledBack` (the rolled-back bento
is recorded as rejected). Unattended runs (``from_settings``: the deployments, the retrain) take the
analysis and the live cluster from the settings ``reach deploy`` reads (:func:`settings_release`).

Retrain retrains the cluster being served (the files its deployment recorded, and the planning its
bento serves with, also while its server is down; the defaults when none is recorded), runs the
pipeline, then redeploys the files the pipeline trained on (the ingested workload when profiles were
given) when the gate passed. It never switches the endpoint to another cluster unless asked
(``switch_cluster``).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.pipeline import PipelineParams, reach_pipeline
from flows.release.analysis import AnalysisParams, AnalysisVerdict, decide
from flows.release.canary import canary_requests
from flows.release.retraining import cluster_switch, recorded_file_exists, retrain_params, retrained_cluster
from flows.release.serving import RedeployError

if TYPE_CHECKING:
    from flows.release.selection import Cluster
    from flows.release.serving import Endpoint, RedeployResult


class RolledBack(RedeployError):
    """The analysis found the new policy worse (or could not measure it): the previous bento serves again."""


class RollbackFailed(RuntimeError):
    """The analysis asked for a rollback and it failed: the message says what the endpoint file names now (the new
    bento, or another deploy's that replaced it meanwhile)."""


@task
def target_cluster(bento: str | None, scenario: str | None, workload: str | None) -> Cluster:
    """The cluster to serve: as asked, else the serving deployment's (the files it recorded, while they exist;
    also when its server is down, e.g. after ``reach down && reach up``), else a named specific bento's own."""
    from flows.release.packaging import bento_labels
    from flows.release.selection import ANY, cluster_of
    from flows.release.serving import recorded_endpoint

    serving = recorded_endpoint()  # the cluster it was made for, alive or not: a restart must not switch clusters
    if serving is not None and serving.scenario and not scenario and not workload:
        # the files it serves, when they are still there: a name may stand for another folder under data/
        scenario = serving.scenario_dir if recorded_file_exists(serving.scenario_dir) else serving.scenario
        workload = serving.workload_file if recorded_file_exists(serving.workload_file) else serving.workload
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


@task
def choose_bento(requested: str | None, cluster: Cluster) -> str | None:
    """The bento to deploy for ``cluster``: the one asked for (if it can serve it), else the newest eligible gated one
    that no deploy rejected (:mod:`flows.release.rejections`).

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
                f"{why}; rolling back to {previous.bento} failed ({exc}): {_serving_now(result.endpoint)}; "
                f"`reach deploy --bento {previous.bento}` redeploys the previous one"
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
    _reject(result.endpoint.bento, f"rolled back: {verdict.summary()}")  # else the next deploy picks it again
    restored = back(verdict.summary())
    raise RolledBack(f"{verdict.summary()}; {restored.bento} serves again at {restored.url} (blue/green back)")


def _serving_now(switched: Endpoint) -> str:
    """What the endpoint file names now: the bento ``switched`` in, or what another deploy replaced it with (a
    rollback is refused then), or nothing."""
    from flows.release.serving import EndpointFileError, recorded_endpoint

    try:
        now = recorded_endpoint()
    except EndpointFileError as exc:
        return f"what serves is unknown ({exc})"
    if now is None:
        return "the endpoint file names nothing"
    if now == switched:
        return f"{now.bento} still serves at {now.url}"
    return f"{now.bento} serves at {now.url} (another deploy replaced {switched.bento} meanwhile)"


def _reject(bento: str, reason: str) -> None:
    """Record ``bento`` as rejected (:mod:`flows.release.rejections`); a failure to record is logged, not raised."""
    from flows.local.locks import LockTimeout
    from flows.release.rejections import reject

    try:
        reject(bento, reason)
    except (OSError, ValueError, LockTimeout) as exc:
        print(f"warning: could not record {bento} as rejected ({exc}); the next automatic deploy may choose it")


def analysis_from_settings(
    prometheus_url: str | None = None,
    latency_query: str | None = None,
    period_s: float = 60.0,
    tolerance_pct: float = 5.0,
) -> AnalysisParams | None:
    """The analysis of a redeploy (``reach deploy``, and the unattended flows with ``from_settings``): Prometheus as
    given, else the migrator's settings (``REACH_MIGRATOR_PROMETHEUS_URL``), else the one ``reach up`` started;
    None when there is none."""
    from flows.local import processes
    from flows.loop.settings import PROMETHEUS
    from migrator.settings import MigratorSettings

    migrator = MigratorSettings()
    local = processes.find(PROMETHEUS)
    url = prometheus_url or migrator.prometheus_url or (local.url if local is not None else None)
    if url is None:
        return None
    return AnalysisParams(
        prometheus_url=url,
        latency_query=latency_query or migrator.latency_query,
        period_s=period_s,
        tolerance_pct=tolerance_pct,
    )


def kubeconfig_from_settings(kubeconfig: str | None = None) -> str | None:
    """The live cluster whose own request leads the canary: as given, else the migrator's ``REACH_MIGRATOR_KUBECONFIG``."""
    from migrator.settings import MigratorSettings

    return kubeconfig or MigratorSettings().kubeconfig


def settings_release(
    analysis: AnalysisParams | None, kubeconfig: str | None
) -> tuple[AnalysisParams | None, str | None]:
    """An unattended redeploy's analysis and kubeconfig: those given, else the settings ``reach deploy`` reads."""
    analysis = analysis or analysis_from_settings()
    if analysis is None:
        print("no Prometheus configured (REACH_MIGRATOR_PROMETHEUS_URL, or `reach up`'s): no analysis period")
    return analysis, kubeconfig_from_settings(kubeconfig)


@flow(name="reach-redeploy", log_prints=True)
def reach_redeploy(
    bento: str | None = None,
    scenario: str | None = None,
    workload: str | None = None,
    canary_size: int = 16,
    ready_timeout_s: float = 120.0,
    analysis: AnalysisParams | None = None,
    kubeconfig: str | None = None,
    from_settings: bool = False,
) -> dict[str, Any]:
    """Serve the newest gated bento for the cluster (or ``bento``), blue/green, with a canary and an optional analysis.

    ``from_settings`` (the deployment's default: an unattended run) fills ``analysis`` and ``kubeconfig`` left
    null from the settings ``reach deploy`` reads (:func:`settings_release`); without it, null means none.
    """
    if canary_size < 1:  # bad input, refused before any work: a switch without a canary checks nothing
        raise ValueError(
            f"canary_size={canary_size}: a redeploy checks the new bento with at least 1 canary request before it "
            "serves; pass canary_size >= 1 (default 16)"
        )
    if from_settings:
        analysis, kubeconfig = settings_release(analysis, kubeconfig)
    cluster = target_cluster(bento, scenario, workload)
    chosen = choose_bento(bento, cluster)
    if chosen is None:
        from flows.release.packaging import rejected_for

        skipped = rejected_for(cluster)
        reason = f"nothing to deploy for {cluster}: no gated bento newer than the one serving it" + (
            f"; {skipped}" if skipped else ""
        )
        get_run_logger().info("%s", reason)
        return {"bento": None, "reason": reason}
    result = switch_service(chosen, cluster, canary_size, ready_timeout_s, analysis is not None, kubeconfig)
    summary = _summary(result)
    if analysis is not None and result.previous is None:
        summary["analysis"] = "skipped: the first deployment has no incumbent to compare with or to restore"
    elif analysis is not None:
        summary["analysis"] = analyse_release(result, analysis, ready_timeout_s).summary()
    return summary


@flow(name="reach-retrain", log_prints=True)
def reach_retrain(
    params: PipelineParams | None = None,
    analysis: AnalysisParams | None = None,
    kubeconfig: str | None = None,
    switch_cluster: bool = False,
    from_settings: bool = True,
) -> dict[str, Any]:
    """The scheduled job: retrain the cluster being served, then redeploy it if the gate passed.

    What ``params`` leaves unset of the cluster and the planning comes from the deployment the endpoint file
    records, whether or not its server runs now (:func:`flows.release.retraining.retrain_params`; the redeploy
    then starts it again).
    A retrain never switches the endpoint to another cluster than the one recorded unless ``switch_cluster``:
    refused before any work, or (another deploy switched it during the run) not redeployed, saying why.
    ``from_settings`` fills ``analysis`` and ``kubeconfig`` as ``reach deploy`` does.
    """
    from flows.release.selection import cluster_of
    from flows.release.serving import recorded_endpoint

    # the recorded deployment, not only a live one: after `reach down && reach up` its server is down, and the
    # retrain must not fall back to the pipeline's default cluster and switch the endpoint to it
    serving = recorded_endpoint()
    given = set((params or PipelineParams()).model_fields_set)
    params = retrain_params(params, serving)
    cluster = retrained_cluster(params, serving, given)
    if not switch_cluster and (refused := cluster_switch(serving, cluster)):
        raise ValueError(refused)  # before any work
    result = reach_pipeline(params)
    if not result["passed"] or not result["bento"]:
        return {"pipeline": result, "redeploy": None}
    # the files the pipeline trained and evaluated on: with profiles, the ingested workload, not params.workload
    scenario, workload = result["scenario_dir"], result["workload_file"]
    if not switch_cluster and (moved := cluster_switch(recorded_endpoint(), cluster_of(scenario, workload))):
        # another deploy switched the endpoint while the pipeline ran
        print(f"not redeployed: {moved}")
        return {"pipeline": result, "redeploy": None, "reason": f"not redeployed: {moved}"}
    redeployed = reach_redeploy(
        result["bento"], scenario, workload, analysis=analysis, kubeconfig=kubeconfig, from_settings=from_settings
    )
    return {"pipeline": result, "redeploy": redeployed}


__all__ = ["RolledBack", "canary_requests", "reach_redeploy", "reach_retrain"]
