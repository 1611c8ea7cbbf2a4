"""migrator.kube reads the scheduling constraints of API objects into snapshot dataclasses (no server needed)."""

from __future__ import annotations

from kubernetes import client

from migrator.kube import node_info, pod_info
from migrator.snapshot import HostPort, SelectorRequirement


def test_a_pods_scheduling_constraints_are_read() -> None:
    selector = client.V1LabelSelector(match_labels={"app": "db"})
    spec = client.V1PodSpec(
        node_name="edge-1",
        containers=[
            client.V1Container(
                name="c",
                ports=[
                    client.V1ContainerPort(container_port=80, host_port=8080),
                    client.V1ContainerPort(container_port=81),
                ],
            )
        ],
        affinity=client.V1Affinity(
            node_affinity=client.V1NodeAffinity(
                required_during_scheduling_ignored_during_execution=client.V1NodeSelector(
                    node_selector_terms=[
                        client.V1NodeSelectorTerm(
                            match_expressions=[
                                client.V1NodeSelectorRequirement(key="zone", operator="In", values=["a"])
                            ],
                            match_fields=[
                                client.V1NodeSelectorRequirement(key="metadata.name", operator="NotIn", values=["x"])
                            ],
                        )
                    ]
                )
            ),
            pod_anti_affinity=client.V1PodAntiAffinity(
                required_during_scheduling_ignored_during_execution=[
                    client.V1PodAffinityTerm(label_selector=selector, topology_key="kubernetes.io/hostname")
                ]
            ),
        ),
        topology_spread_constraints=[
            client.V1TopologySpreadConstraint(
                label_selector=selector, max_skew=1, topology_key="zone", when_unsatisfiable="DoNotSchedule"
            )
        ],
    )
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="db-1", namespace="default", labels={"app": "db"}), spec=spec)
    info = pod_info(pod)
    [term] = info.required_node_affinity
    assert term.match_expressions == (SelectorRequirement("zone", "In", ("a",)),)
    assert term.match_fields == (SelectorRequirement("metadata.name", "NotIn", ("x",)),)
    [anti] = info.required_anti_affinity
    assert anti.topology_key == "kubernetes.io/hostname" and anti.selector.matches({"app": "db"})
    [spread] = info.topology_spread
    assert (spread.max_skew, spread.topology_key, spread.when_unsatisfiable) == (1, "zone", "DoNotSchedule")
    assert info.host_ports == (HostPort(8080, "TCP", ""),)


def test_a_nodes_pod_limit_is_read_from_allocatable() -> None:
    node = client.V1Node(
        metadata=client.V1ObjectMeta(name="edge-1"),
        spec=client.V1NodeSpec(),
        status=client.V1NodeStatus(allocatable={"cpu": "2", "memory": "4Gi", "pods": "110"}),
    )
    assert node_info(node).allocatable_pods == 110
