"""The canary's requests: REACH payloads of the cluster a redeploy will serve.

:func:`canary_requests` draws ``count`` requests from random start states of the served scenario
and workload with the simulator (the same payload a cluster would send). With a live cluster
configured (``reach deploy --kubeconfig``, or the migrator's ``REACH_MIGRATOR_KUBECONFIG``),
:func:`live_request` adds the request the migrator itself would send now — its snapshot of the
cluster through :class:`migrator.kube.KubeOps`, :func:`migrator.observe.build_request` and the
migrator's node aliases — so the new policy is checked on the real cluster's state before it
serves it. Used by :mod:`.redeploy` and the demo (:mod:`flows.loop.policy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrator.settings import MigratorSettings
    from migrator.snapshot import ClusterSnapshot


def canary_requests(scenario: str, workload: str, count: int, seed: int = 20_000) -> list[dict[str, Any]]:
    """``count`` REACH requests from random start states of the scenario and workload (dynamic draws)."""
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


def request_of_snapshot(snapshot: ClusterSnapshot, settings: MigratorSettings) -> dict[str, Any]:
    """The request the migrator would send for ``snapshot`` (its fit rules, in the policy's node names)."""
    from migrator.aliases import node_aliases, to_policy_names
    from migrator.observe import FitRules, build_request

    rules = FitRules(layer_label=settings.layer_label, client_layer=settings.client_layer,
                     service_label=settings.service_label)  # fmt: skip
    request = build_request(snapshot, rules)
    if settings.node_name_label:
        request = to_policy_names(request, node_aliases(snapshot, settings.node_name_label))
    return request.model_dump(mode="json")


def live_request(settings: MigratorSettings) -> dict[str, Any]:
    """The live cluster's request now, read with the migrator's settings (kubeconfig, namespace, selector)."""
    from migrator.kube import KubeOps, make_api_client

    ops = KubeOps(make_api_client(settings.kubeconfig), settings.namespace, settings.pod_selector,
                  settings.event_component, settings.api_timeout_s)  # fmt: skip
    return request_of_snapshot(ops.snapshot(), settings)
