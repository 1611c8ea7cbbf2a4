"""Node aliases: talk to the policy in the scenario's node names when the cluster's names differ.

A policy is trained on a scenario whose nodes are named ``<node_type>-<i>`` (MODEL.md §1) and
refuses a node it does not know. A real cluster's nodes have names of their own
(``ip-10-0-1-23.ec2.internal``). With ``node_name_label`` set (e.g. ``reach.io/node-name``), each
node carries its scenario name in that label: the controller sends the policy the request in those
names (:func:`to_policy_names`) and maps the chosen target back (:func:`from_policy_name`); the
guards, the actuator and every record keep the Kubernetes names. Pure functions; used by the
controller.
"""

from __future__ import annotations

from collections.abc import Mapping

from ceenv.schema import ActionRequest
from migrator.snapshot import ClusterSnapshot


class AliasError(ValueError):
    """Two nodes carry the same alias: the policy's answer could not be mapped back."""


def node_aliases(snapshot: ClusterSnapshot, label: str) -> dict[str, str]:
    """Kubernetes node name → the policy's name (the label's value; a node without the label keeps its name)."""
    aliases = {node.name: node.labels.get(label) or node.name for node in snapshot.nodes}
    owners: dict[str, str] = {}
    for node, alias in sorted(aliases.items()):
        if alias in owners:
            raise AliasError(
                f"nodes {owners[alias]} and {node} both map to {alias!r} (label {label}): "
                f"give each node its own scenario name, e.g. kubectl label node {node} {label}=<name> --overwrite"
            )
        owners[alias] = node
    return aliases


def to_policy_names(request: ActionRequest, aliases: Mapping[str, str]) -> ActionRequest:
    """The same request with every node name (keys, fields, pods' nodes, deployable targets) replaced by its alias."""

    def alias(name: str) -> str:
        return aliases.get(name, name)

    nodes = {
        alias(k): v.model_copy(update={"node_name": alias(v.node_name)}) for k, v in request.cluster_state.nodes.items()
    }
    services = {
        name: service.model_copy(
            update={"pods": [p.model_copy(update={"node_name": alias(p.node_name)}) for p in service.pods]}
        )
        for name, service in request.cluster_state.services.items()
    }
    deployable = {pod: [alias(n) for n in targets] for pod, targets in request.pod_deployable.items()}
    state = request.cluster_state.model_copy(update={"nodes": nodes, "services": services})
    update: dict[str, object] = {"cluster_state": state, "pod_deployable": deployable}
    if request.measured is not None:
        m = request.measured
        update["measured"] = m.model_copy(
            update={
                "node_delay_ms": {
                    alias(a): {alias(b): v for b, v in row.items()} for a, row in m.node_delay_ms.items()
                },
                "node_utilization": {alias(n): v for n, v in m.node_utilization.items()},
                "bandwidth_mbps": {alias(n): v for n, v in m.bandwidth_mbps.items()},
            }
        )
    return request.model_copy(update=update)


def from_policy_name(target: str, aliases: Mapping[str, str]) -> str | None:
    """The Kubernetes node behind the policy's ``target``; None when no node has that alias.

    A name the policy was not sent is no answer, even when a Kubernetes node has that name: the
    policy was asked in the aliases, so a node's own name from it is a mistake, not a choice.
    """
    return next((node for node, alias in aliases.items() if alias == target), None)
