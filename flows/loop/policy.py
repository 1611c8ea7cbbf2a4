"""Which policy drives ``reach demo`` and its experiments, and how it is served on 127.0.0.1.

:func:`policy_url` resolves ``DemoSettings.policy`` for one workload: ``greedy-standin`` starts the
clearly named greedy stand-in (:mod:`flows.loop.standin`, not the learned policy); a bento tag is
served blue/green (the machinery of ``reach deploy``) when it can serve this scenario and workload;
``auto`` serves the bento that already serves when it was deployed for this scenario and workload
(names and file contents: :meth:`flows.release.serving.Endpoint.serves`), else the newest bento
labelled ``gate=passed`` that can serve them (:mod:`flows.release.selection`: trained for them, or
general within its limits), else — when ``train_missing`` is on (``reach demo``) — trains one with
the quickstart pipeline, and otherwise falls back to the greedy stand-in. The experiments do not
come here: their learned arm is :func:`flows.loop.arms.learned_policy` (the newest gated bento,
else the shipped general policy, gated and packaged; never the stand-in). A policy the gate
refuses raises :class:`GateRefused` with the verdict, so the CLI can say what happened.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flows.local.paths import repo_root
from flows.loop.demo import restart
from flows.loop.settings import STANDIN, STANDIN_LABEL, DemoSettings

QUICKSTART_PARAMS = repo_root() / "data" / "pipeline" / "quickstart.json"


class GateRefused(RuntimeError):
    """The quickstart pipeline trained a policy, but the gate refused it: nothing was deployed."""

    def __init__(self, scenario: str, workload: str, verdict: str, run_dir: str) -> None:
        self.verdict, self.run_dir = verdict, run_dir
        super().__init__(
            f"the gate refused the policy the quickstart pipeline trained for {scenario} / {workload} ({verdict}); "
            f"nothing was deployed. Evaluation and verdict: {run_dir}. Train again (`reach demo` reruns the "
            "pipeline; the quick budget varies between runs), or run the loop with the greedy stand-in: "
            "`reach demo --policy greedy-standin`"
        )


def start_standin(settings: DemoSettings, workload: str) -> tuple[str, str]:
    """The greedy stand-in on a free loopback port; (URL, label saying it is not the learned policy)."""
    from flows.local import processes

    port = processes.free_port()
    argv = [sys.executable, "-m", "flows.loop.standin", "--scenario", settings.scenario, "--workload", workload,
            "--port", str(port)]  # fmt: skip
    record = restart(STANDIN, argv, port, "/readyz")
    return record.url, f"{STANDIN_LABEL} (not the learned policy)"


def gated_bento_for(scenario: str, workload: str) -> str | None:
    """The newest gated bento that can serve this scenario and workload (:mod:`flows.release.selection`), or None."""
    from flows.release.packaging import gated_bento_for as newest_for
    from flows.release.selection import cluster_of

    return newest_for(cluster_of(scenario, workload))


def train_gated_bento(settings: DemoSettings, workload: str) -> str:
    """Run the quickstart pipeline for the scenario and workload; the gated bento's tag, or :class:`GateRefused`."""
    from flows.pipeline import PipelineParams, reach_pipeline

    params = PipelineParams.model_validate_json(QUICKSTART_PARAMS.read_text())
    result = reach_pipeline(params.model_copy(update={"scenario": settings.scenario, "workload": workload}))
    if not result.get("passed") or not result.get("bento"):
        raise GateRefused(Path(settings.scenario).name, workload, str(result.get("gate")), str(result.get("run_dir")))
    return str(result["bento"])


def serve_bento(settings: DemoSettings, workload: str, wanted: str | None) -> tuple[str, str]:
    """Serve ``wanted`` (or a freshly trained gated bento) blue/green, reusing it when it already serves."""
    from flows.release.packaging import bento_labels
    from flows.release.redeploy import canary_requests
    from flows.release.selection import check_servable, cluster_of, serve_arguments
    from flows.release.serving import current_endpoint, redeploy

    cluster = cluster_of(settings.scenario, workload)
    serving = current_endpoint()
    if serving is not None and wanted is not None and serving.bento == wanted and serving.serves(cluster):
        return serving.url, serving.bento
    bento = wanted or train_gated_bento(settings, workload)
    labels = bento_labels(bento)
    check_servable(bento, labels, cluster)
    requests = canary_requests(settings.scenario, workload, 8)
    endpoint = redeploy(bento, requests, cluster=cluster, arguments=serve_arguments(bento, labels, cluster)).endpoint
    return endpoint.url, endpoint.bento


def resolve_auto(scenario: str, workload: str) -> str | None:
    """``auto``: the serving bento when it was deployed for this scenario and workload (a directory or a name
    under data/, and a workload name or file: the cluster of these files), else the newest gated one."""
    from flows.release.selection import cluster_of
    from flows.release.serving import current_endpoint

    serving = current_endpoint()
    if serving is not None and serving.serves(cluster_of(scenario, workload)):
        return serving.bento
    return gated_bento_for(scenario, workload)


def policy_url(settings: DemoSettings, workload: str) -> tuple[str, str]:
    """(URL of the policy service, what it is) for ``workload``; see the module docstring."""
    if settings.policy == STANDIN_LABEL:
        return start_standin(settings, workload)
    if settings.policy != "auto":
        return serve_bento(settings, workload, settings.policy)
    wanted = resolve_auto(settings.scenario, workload)  # the folder given, not another of its name under data/
    if wanted is None and not settings.train_missing:
        return start_standin(settings, workload)
    return serve_bento(settings, workload, wanted)
