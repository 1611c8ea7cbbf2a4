"""What a retrain trains: the cluster and the planning of the deployment the endpoint file records.

The ``reach-retrain`` flow (:mod:`.redeploy`) retrains the cluster being served. The endpoint file
(:func:`flows.release.serving.recorded_endpoint`) says which one, also while its server is down
(after ``reach down && reach up``): a retrain must not fall back to the pipeline's default cluster
then. :func:`retrain_params` fills what the pipeline parameters leave unset of the cluster (the
recorded files, while they exist) and of the planning (what the bento serves with);
:func:`retrained_cluster` and :func:`cluster_switch` refuse, before any work, a retrain that would
switch the endpoint to another cluster or to other files of the same names, saying why and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bento.planning_settings import PLANNING_KEYS
from flows.pipeline import PipelineParams

if TYPE_CHECKING:
    from flows.release.selection import Cluster
    from flows.release.serving import Endpoint


def recorded_file_exists(path: str) -> bool:
    """Whether a file or folder an endpoint record names (``""`` when it recorded none) is still there."""
    return bool(path) and Path(path).exists()


def served_planning(serving: Endpoint) -> dict[str, Any]:
    """The planning the serving bento decides with (its build arguments under its serve-time ones), as pipeline
    parameters ``plan_*``; ``ValueError`` naming the fix when the bento is no longer in the store."""
    import dataclasses

    import bentoml

    from bento.planning_settings import PlanningSettings

    try:
        built = dict(bentoml.bentos.get(serving.bento).info.args)
    except bentoml.exceptions.NotFound:
        raise ValueError(
            f"the serving bento {serving.bento} is not in the BentoML store, so the planning it serves with is "
            "unknown; give the retrain's params.plan_k (0 = the raw policy) and the other plan_* explicitly"
        ) from None
    return dataclasses.asdict(PlanningSettings.from_recorded({**built, **serving.arguments}))


def retrain_params(params: PipelineParams | None, serving: Endpoint | None) -> PipelineParams:
    """The pipeline's parameters of a retrain: those set in ``params``; the cluster (``scenario``/``workload``: the
    files the serving deployment recorded, while they exist) and the planning (``plan_*``) left unset come from
    the deployment the endpoint file records (``serving``: whether or not its server runs now), the defaults when
    none is recorded."""
    params = params or PipelineParams()
    if serving is None or not serving.scenario:
        return params
    given = params.model_fields_set
    served: dict[str, Any] = {}
    if not given & {"scenario", "workload"}:
        served["scenario"] = serving.scenario_dir if recorded_file_exists(serving.scenario_dir) else serving.scenario
        served["workload"] = serving.workload_file if recorded_file_exists(serving.workload_file) else serving.workload
    if not given & set(PLANNING_KEYS):
        served.update(served_planning(serving))
    return PipelineParams.model_validate({**params.model_dump(exclude_unset=True), **served})


def cluster_switch(serving: Endpoint | None, cluster: Cluster) -> str | None:
    """Why a retrain for ``cluster`` may not redeploy without ``switch_cluster``; None when nothing serves or it is
    the cluster serving: the same scenario and workload names and scenario files (the workload file may differ:
    new profiles re-measure the same workload)."""
    if serving is None or not serving.scenario:
        return None
    recorded, known = serving.scenario_sha256, cluster.scenario_sha256
    same_files = recorded == known or not (recorded and known)  # a hash unknown on either side: the names decide
    same_names = (serving.scenario, serving.workload) == (cluster.scenario, cluster.workload)
    if same_names and same_files:
        return None
    if same_names:  # the names match, the files do not: leaving params unset cannot help, restoring them can
        return _other_files(serving, cluster)
    return (
        f"{serving.bento} serves {serving.scenario} / {serving.workload}, not {cluster}: a retrain does not switch "
        "the endpoint to another cluster; leave params.scenario and params.workload unset to retrain the served "
        "cluster, or pass switch_cluster=true to serve this one instead"
    )


def _other_files(serving: Endpoint, cluster: Cluster) -> str:
    """Why the files of ``cluster`` are not the ones ``serving`` serves though their names are, and the fix."""
    recorded = serving.scenario_dir or "(not recorded)"
    if serving.scenario_dir and not recorded_file_exists(serving.scenario_dir):
        why = f"the scenario folder it recorded, {recorded}, is gone, and {cluster.scenario_dir} holds other files"
        fix = f"restore {recorded} to retrain the served cluster"
    elif serving.scenario_dir and Path(serving.scenario_dir).resolve() == Path(cluster.scenario_dir or ".").resolve():
        why = f"the files of {recorded} (nodes.json, services.json) changed since it was deployed"
        fix = "restore them to retrain the served cluster"
    else:
        why = f"its scenario files ({recorded}) differ from {cluster.scenario_dir or cluster.scenario}'s"
        fix = "leave params.scenario and params.workload unset to retrain the recorded files"
    return (
        f"{serving.bento} serves {serving.scenario} / {serving.workload}, but {why}: a retrain does not switch the "
        f"endpoint to other files; {fix}, or pass switch_cluster=true to serve {cluster.scenario_dir or cluster} "
        "instead (or other files, named by params.scenario and params.workload)"
    )


def retrained_cluster(params: PipelineParams, serving: Endpoint | None, given: set[str]) -> Cluster:
    """The cluster the retrain trains on; a ``ValueError`` naming the recorded files and the fix when the names the
    served cluster fell back to (its recorded files gone) name nothing here."""
    from ceenv.validation import ScenarioError
    from flows.release.selection import cluster_of

    try:
        return cluster_of(params.scenario, params.workload)
    except ScenarioError as exc:
        if serving is None or not serving.scenario or given & {"scenario", "workload"}:
            raise
        raise ValueError(
            f"the retrain retrains the served cluster {serving.scenario} / {serving.workload} ({serving.bento}), "
            f"but its recorded files ({serving.scenario_dir or '?'}, {serving.workload_file or '?'}) are gone and its "
            f"names resolve to nothing here ({exc}); restore those files, or pass params.scenario and "
            "params.workload with switch_cluster=true to serve another cluster"
        ) from exc
