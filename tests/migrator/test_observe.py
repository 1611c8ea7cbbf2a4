"""Observe: free resources, grouping by service, and pod_deployable from real fit (MODEL.md §4)."""

from __future__ import annotations

import pytest

from ceenv.schema import ActionRequest
from migrator.observe import FitRules, build_request, free_resources, pod_deployable, pods_per_node
from migrator.snapshot import MeasurementUnavailable, Taint, Toleration

from .builders import GIB, cluster, node, pod

RULES = FitRules()


def test_free_resources_are_allocatable_minus_requests_of_bound_pods() -> None:
    snap = cluster(pod("a", "agg", "cloud-1", cpu_m=700, mem_gib=1), pod("b", "db", "cloud-1", cpu_m=300, mem_gib=2))
    free = free_resources(snap)
    assert free["cloud-1"].cpu_millicores == 3000
    assert free["cloud-1"].memory_bytes == 5 * GIB
    assert free["cloud-2"].cpu_millicores == 4000


def test_finished_pods_do_not_hold_resources() -> None:
    snap = cluster(pod("a", "agg", "cloud-1", cpu_m=700, phase="Succeeded"))
    assert free_resources(snap)["cloud-1"].cpu_millicores == 4000


def test_request_has_units_of_the_wire_payload_and_pods_grouped_by_service() -> None:
    snap = cluster(pod("a1", "agg", "cloud-1", cpu_m=700), pod("a2", "agg", "edge-1"), pod("d", "db", "cloud-2"))
    request = build_request(snap, RULES)
    ActionRequest.model_validate(request.model_dump())
    assert request.cluster_state.nodes["cloud-1"].cpu_availability == 3300.0
    assert request.cluster_state.nodes["cloud-1"].memory_availability == 7.5
    assert [p.pod_name for p in request.cluster_state.services["agg"].pods] == ["a1", "a2"]
    assert request.cluster_state.services["db"].pods[0].node_name == "cloud-2"


def test_unpinned_pods_avoid_the_client_layer_and_their_own_node() -> None:
    snap = cluster(pod("a", "agg", "cloud-1"))
    assert pod_deployable(snap, RULES)["a"] == ["cloud-2", "edge-1"]


def test_pinned_pods_fit_only_their_layer() -> None:
    nodes = (node("client-1", "client"), node("client-2", "client"), node("cloud-1", "cloud"))
    snap = cluster(pod("c", "client", "client-1", node_selector={"reach.io/layer": "client"}), nodes=nodes)
    assert pod_deployable(snap, RULES)["c"] == ["client-2"]


def test_full_cordoned_notready_and_tainted_nodes_are_not_deployable() -> None:
    nodes = (
        node("cloud-1", "cloud"),
        node("full", "cloud", cpu_m=400),
        node("cordoned", "cloud", unschedulable=True),
        node("down", "edge", ready=False),
        node("tainted", "edge", taints=(Taint("dedicated", "gpu", "NoSchedule"),)),
        node("soft-taint", "edge", taints=(Taint("x", "y", "PreferNoSchedule"),)),
    )
    snap = cluster(pod("a", "agg", "cloud-1", cpu_m=500), nodes=nodes)
    assert pod_deployable(snap, RULES)["a"] == ["soft-taint"]


def test_a_matching_toleration_makes_a_tainted_node_deployable() -> None:
    nodes = (node("cloud-1", "cloud"), node("tainted", "edge", taints=(Taint("dedicated", "gpu", "NoSchedule"),)))
    tolerant = pod("a", "agg", "cloud-1", tolerations=(Toleration("dedicated", "Equal", "gpu", "NoSchedule"),))
    assert pod_deployable(cluster(tolerant, nodes=nodes), RULES)["a"] == ["tainted"]


def test_notready_nodes_without_application_pods_are_left_out_of_the_request() -> None:
    nodes = (node("cloud-1", "cloud"), node("down", "edge", ready=False))
    request = build_request(cluster(pod("a", "agg", "cloud-1"), nodes=nodes), RULES)
    assert set(request.cluster_state.nodes) == {"cloud-1"}


def test_a_notready_node_with_pods_is_listed_unavailable_with_its_pods_and_never_a_target() -> None:
    nodes = (node("cloud-1", "cloud"), node("cloud-2", "cloud"), node("down", "edge", ready=False))
    snap = cluster(pod("a1", "agg", "down", ready=False), pod("a2", "agg", "cloud-1"), nodes=nodes)
    request = build_request(snap, RULES)
    down = request.cluster_state.nodes["down"]
    assert (down.available, down.cpu_availability, down.memory_availability) == (False, 0.0, 0.0)
    assert request.cluster_state.nodes["cloud-1"].available
    assert [(p.pod_name, p.node_name) for p in request.cluster_state.services["agg"].pods] == [
        ("a1", "down"),
        ("a2", "cloud-1"),
    ]
    assert request.pod_deployable["a1"] == ["cloud-1", "cloud-2"]
    assert "down" not in request.pod_deployable["a2"]
    assert '"available":false' in request.model_dump_json()


def test_pods_per_node_counts_pods_of_each_service() -> None:
    snap = cluster(pod("a1", "agg", "cloud-1"), pod("a2", "agg", "cloud-1"), pod("d", "db", "edge-1"))
    assert pods_per_node(snap, RULES) == {"agg": {"cloud-1": 2}, "db": {"edge-1": 1}}


def test_the_measured_block_is_restricted_to_the_nodes_the_request_lists() -> None:
    from ceenv.schema import MeasuredConditions

    snap = cluster(pod("a", "agg", "cloud-1"))
    measured = MeasuredConditions(
        node_delay_ms={"cloud-1": {"edge-1": 60.0, "gone": 1.0}, "gone": {"cloud-1": 2.0}},
        node_utilization={"cloud-2": 0.3, "gone": 0.1},
    )
    request = build_request(snap, RULES, measured)
    assert request.measured is not None
    assert request.measured.node_delay_ms == {"cloud-1": {"edge-1": 60.0}}
    assert request.measured.node_utilization == {"cloud-2": 0.3}
    assert build_request(snap, RULES).measured is None
    only_gone = MeasuredConditions(node_utilization={"gone": 0.2})  # matches no listed node: unavailable, not None
    with pytest.raises(MeasurementUnavailable, match=r"node_utilization_query.*gone"):
        build_request(snap, RULES, only_gone)
