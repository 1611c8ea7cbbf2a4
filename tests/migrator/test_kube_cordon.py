"""KubeOps' temporary cordons: a taint of our own, written only over the node as it was read.

The node's taint list is replaced whole by a patch, so a write that ignored someone else's change
between our read and our write would drop their taint (the node lifecycle controller's
``unreachable``, an admin's ``NoExecute``). These tests drive ``KubeOps`` with an in-memory
``CoreV1Api`` stand-in that keeps one node with a resourceVersion, as the API server does.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from migrator.kube import TAINT_WRITE_ATTEMPTS, KubeOps
from migrator.snapshot import ANNOTATION_TEMPORARY_CORDON, TAINT_TEMPORARY_CORDON

UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2026-11-30T10:00:00+00:00"}


class OneNode:
    """A CoreV1Api stand-in with one node: reads return copies, a patch with a stale resourceVersion is a 409."""

    def __init__(self, taints: list[dict[str, Any]], annotations: dict[str, str] | None = None) -> None:
        self.node = client.V1Node(
            metadata=client.V1ObjectMeta(name="edge-1", resource_version="1", annotations=annotations),
            spec=client.V1NodeSpec(taints=[_taint(t) for t in taints]),
        )
        self.before_next_patch: list[dict[str, Any]] = []  # taints someone else adds between our read and our write
        self.patches: list[dict[str, Any]] = []

    def read_node(self, name: str, **_: Any) -> client.V1Node:
        return client.ApiClient()._ApiClient__deserialize(  # type: ignore[attr-defined]
            client.ApiClient().sanitize_for_serialization(self.node), "V1Node"
        )

    def patch_node(self, name: str, body: dict[str, Any], **_: Any) -> None:
        self.patches.append(body)
        if self.before_next_patch:
            self._write(taints=[*self._taints(), *self.before_next_patch])
            self.before_next_patch = []
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != self.node.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        spec = body.get("spec") or {}
        annotations = dict(self.node.metadata.annotations or {})
        for key, value in ((body.get("metadata") or {}).get("annotations") or {}).items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        self._write(taints=spec.get("taints", self._taints()), annotations=annotations)
        if "unschedulable" in spec:
            self.node.spec.unschedulable = spec["unschedulable"]

    def taints(self) -> list[dict[str, Any]]:
        return self._taints()

    def _taints(self) -> list[dict[str, Any]]:
        return [client.ApiClient().sanitize_for_serialization(t) for t in self.node.spec.taints or []]

    def _write(self, taints: list[dict[str, Any]], annotations: dict[str, str] | None = None) -> None:
        self.node.spec.taints = [_taint(t) for t in taints]
        if annotations is not None:
            self.node.metadata.annotations = annotations
        self.node.metadata.resource_version = str(int(self.node.metadata.resource_version) + 1)


def _taint(raw: dict[str, Any]) -> client.V1Taint:
    return client.V1Taint(key=raw["key"], value=raw.get("value"), effect=raw["effect"], time_added=raw.get("timeAdded"))


def _ops(core: OneNode) -> KubeOps:
    ops = KubeOps(client.ApiClient(), "shop", "app=shop", "reach-migrator")
    ops.core = core
    return ops


def hold(migration_id: str) -> dict[str, str]:
    return {"key": TAINT_TEMPORARY_CORDON, "value": migration_id, "effect": "NoSchedule"}


def test_a_cordon_is_a_taint_of_ours_beside_the_node_s_own_and_lifting_it_leaves_theirs() -> None:
    core = OneNode([UNREACHABLE])
    ops = _ops(core)
    ops.cordon("edge-1", "m1")
    assert core.taints() == [UNREACHABLE, hold("m1")]
    assert not core.node.spec.unschedulable, "the cordon flag is the admin's alone"
    ops.lift_cordon("edge-1", "m1")
    assert core.taints() == [UNREACHABLE]


def test_a_taint_written_between_our_read_and_our_write_is_kept() -> None:
    core = OneNode([])
    core.before_next_patch = [UNREACHABLE]
    _ops(core).cordon("edge-1", "m1")
    assert core.taints() == [UNREACHABLE, hold("m1")]
    assert len(core.patches) == 2, "the first write met a newer node (409) and was made again on a fresh read"


def test_lifting_one_migration_s_cordon_keeps_another_s_and_none_lifts_every_one_of_ours() -> None:
    core = OneNode([hold("m1"), hold("m2")])
    ops = _ops(core)
    ops.lift_cordon("edge-1", "m1")
    assert core.taints() == [hold("m2")]
    ops.lift_cordon("edge-1", None)
    assert core.taints() == []


def test_a_cordon_twice_or_a_lift_of_nothing_writes_nothing() -> None:
    core = OneNode([hold("m1")])
    ops = _ops(core)
    ops.cordon("edge-1", "m1")
    ops.lift_cordon("edge-1", "m9")
    assert core.patches == []


def test_a_cordon_left_by_a_migrator_before_the_taint_is_lifted_the_way_it_was_set() -> None:
    core = OneNode([], annotations={ANNOTATION_TEMPORARY_CORDON: "old-run", "team": "edge"})
    core.node.spec.unschedulable = True
    _ops(core).lift_cordon("edge-1", None)
    assert not core.node.spec.unschedulable
    assert core.node.metadata.annotations == {"team": "edge"}


def test_a_node_that_keeps_changing_is_an_error_not_an_overwrite() -> None:
    class Busy(OneNode):
        def patch_node(self, name: str, body: dict[str, Any], **kwargs: Any) -> None:
            self.before_next_patch = [{"key": f"busy-{len(self.patches)}", "effect": "NoSchedule"}]
            super().patch_node(name, body, **kwargs)

    core = Busy([])
    try:
        _ops(core).cordon("edge-1", "m1")
    except RuntimeError as exc:
        assert "changed under every one" in str(exc)
    else:
        raise AssertionError("a node that changed before every write was overwritten")
    assert len(core.patches) == TAINT_WRITE_ATTEMPTS
    assert all(t["key"].startswith("busy-") for t in core.taints()), "nobody's taint was dropped"
