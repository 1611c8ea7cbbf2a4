"""Plain-data builders for the migrator's unit tests: a small cloud/edge/client cluster and its pods."""

from __future__ import annotations

from migrator.snapshot import ClusterSnapshot, NodeInfo, PodInfo

GIB = 2**30


def node(name: str, layer: str, cpu_m: float = 4000, mem_gib: float = 8, **kw: object) -> NodeInfo:
    return NodeInfo(name, cpu_m, mem_gib * GIB, labels={"reach.io/layer": layer}, **kw)  # type: ignore[arg-type]


def pod(name: str, service: str, node_name: str, cpu_m: float = 500, mem_gib: float = 0.5, **kw: object) -> PodInfo:
    defaults: dict[str, object] = {
        "labels": {"app": service, "reach.io/app": "demo", "pod-template-hash": "abc"},
        "owner_kind": "ReplicaSet",
        "owner_name": f"{service}-abc",
    }
    defaults.update(kw)
    return PodInfo(
        name, "default", node_name, cpu_request_millicores=cpu_m, memory_request_bytes=mem_gib * GIB, **defaults
    )  # type: ignore[arg-type]


def cluster(*pods: PodInfo, nodes: tuple[NodeInfo, ...] | None = None, **kw: object) -> ClusterSnapshot:
    nodes = nodes or (
        node("cloud-1", "cloud"),
        node("cloud-2", "cloud"),
        node("edge-1", "edge"),
        node("client-1", "client"),
    )
    return ClusterSnapshot(nodes, tuple(pods), tuple(pods), **kw)  # type: ignore[arg-type]
