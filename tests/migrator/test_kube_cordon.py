"""KubeOps' temporary cordons: a taint of our own, written only over the node as it was read.

The node's taint list is replaced whole by a patch, so a write that ignored someone else's change
between our read and our write would drop their taint (the node lifecycle controller's
``unreachable``, an admin's ``NoExecute``). These tests drive ``KubeOps`` with an in-memory
``CoreV1Api`` stand-in that keeps nodes with a resourceVersion and, like the API server, refuses a
node with two taints of one key and effect (422).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from migrator.kube import TAINT_WRITE_ATTEMPTS, KubeOps
from migrator.snapshot import ANNOTATION_TEMPORARY_CORDON, TAINT_TEMPORARY_CORDON, ClusterAccessDenied

UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2026-11-30T10:00:00+00:00"}
_API = client.ApiClient()


def _copy(node: client.V1Node) -> client.V1Node:
    return _API._ApiClient__deserialize(_API.sanitize_for_serialization(node), "V1Node")  # type: ignore[attr-defined]


def _taint(raw: dict[str, Any]) -> client.V1Taint:
    return client.V1Taint(key=raw["key"], value=raw.get("value"), effect=raw["effect"], time_added=raw.get("timeAdded"))


class Nodes:
    """A CoreV1Api stand-in: reads return copies; a patch over a stale resourceVersion is a 409, a taint list
    with two taints of one key and effect a 422; ``before_next_patch`` adds taints someone else writes
    between our read and our write; ``refuse`` names nodes whose patches are refused (403)."""

    def __init__(self, **taints: list[dict[str, Any]]) -> None:
        self.nodes = {
            name: client.V1Node(
                metadata=client.V1ObjectMeta(name=name, resource_version="1", annotations={}),
                spec=client.V1NodeSpec(taints=[_taint(t) for t in node_taints]),
            )
            for name, node_taints in taints.items()
        }
        self.before_next_patch: list[dict[str, Any]] = []
        self.refuse: set[str] = set()
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.api_client = _API

    def list_node(self, **_: Any) -> Any:
        return client.V1NodeList(items=[_copy(n) for n in self.nodes.values()])

    def read_node(self, name: str, **_: Any) -> client.V1Node:
        return _copy(self.nodes[name])

    def patch_node(self, name: str, body: dict[str, Any], **_: Any) -> None:
        self.patches.append((name, body))
        if name in self.refuse:
            raise ApiException(status=403, reason="Forbidden")
        if self.before_next_patch:
            self._write(name, [*self.taints(name), *self.before_next_patch])
            self.before_next_patch = []
        node = self.nodes[name]
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != node.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        spec = body.get("spec") or {}
        for key, value in ((body.get("metadata") or {}).get("annotations") or {}).items():
            if value is None:
                node.metadata.annotations.pop(key, None)
            else:
                node.metadata.annotations[key] = value
        if "unschedulable" in spec:
            node.spec.unschedulable = spec["unschedulable"]
        self._write(name, spec.get("taints", self.taints(name)))

    def taints(self, name: str = "edge-1") -> list[dict[str, Any]]:
        return [_API.sanitize_for_serialization(t) for t in self.nodes[name].spec.taints or []]

    def _write(self, name: str, taints: list[dict[str, Any]]) -> None:
        pairs = [(t["key"], t["effect"]) for t in taints]
        if len(pairs) != len(set(pairs)):
            raise ApiException(status=422, reason="Unprocessable Entity: taints must be unique by key and effect")
        node = self.nodes[name]
        node.spec.taints = [_taint(t) for t in taints]
        node.metadata.resource_version = str(int(node.metadata.resource_version) + 1)


def _ops(core: Nodes) -> KubeOps:
    ops = KubeOps(client.ApiClient(), "shop", "app=shop", "reach-migrator")
    ops.core = core  # type: ignore[assignment]
    return ops


def hold(migration_id: str) -> dict[str, str]:
    return {"key": TAINT_TEMPORARY_CORDON, "value": migration_id, "effect": "NoSchedule"}


def test_a_cordon_is_a_taint_of_ours_beside_the_node_s_own_and_lifting_it_leaves_theirs() -> None:
    core = Nodes(**{"edge-1": [UNREACHABLE]})
    ops = _ops(core)
    ops.cordon(["edge-1"], "m1")
    assert core.taints() == [UNREACHABLE, hold("m1")]
    assert not core.nodes["edge-1"].spec.unschedulable, "the cordon flag is the admin's alone"
    ops.lift_cordon(None, "m1")
    assert core.taints() == [UNREACHABLE]


def test_a_taint_written_between_our_read_and_our_write_is_kept() -> None:
    core = Nodes(**{"edge-1": []})
    core.before_next_patch = [UNREACHABLE]
    _ops(core).cordon(["edge-1"], "m1")
    assert core.taints() == [UNREACHABLE, hold("m1")]
    assert len(core.patches) == 2, "the first write met a newer node (409) and was made again on a fresh read"


def test_a_cordon_over_a_leftover_of_ours_takes_it_over_the_server_allows_one_per_key_and_effect() -> None:
    core = Nodes(**{"edge-1": [hold("crashed")]})
    _ops(core).cordon(["edge-1"], "m1")
    assert core.taints() == [hold("m1")]


def test_lifting_another_migration_s_cordon_keeps_ours_and_none_lifts_any_of_ours() -> None:
    core = Nodes(**{"edge-1": [hold("m2")], "edge-2": [hold("m1")]})
    ops = _ops(core)
    ops.lift_cordon(None, "m1")
    assert (core.taints("edge-1"), core.taints("edge-2")) == ([hold("m2")], [])
    ops.lift_cordon(["edge-1"], None)
    assert core.taints("edge-1") == []


def test_a_cordon_twice_or_a_lift_of_nothing_writes_nothing() -> None:
    core = Nodes(**{"edge-1": [hold("m1")], "edge-2": []})
    ops = _ops(core)
    ops.cordon(["edge-1"], "m1")
    ops.lift_cordon(None, "m9")
    assert core.patches == []


def test_one_node_that_refuses_the_lift_leaves_no_other_node_cordoned_and_the_refusal_is_raised() -> None:
    core = Nodes(**{"a": [hold("m1")], "b": [hold("m1")], "c": [hold("m1")]})
    core.refuse = {"b"}
    with pytest.raises(ClusterAccessDenied, match="patch nodes"):
        _ops(core).lift_cordon(None, "m1")
    assert (core.taints("a"), core.taints("b"), core.taints("c")) == ([], [hold("m1")], [])


def test_a_cordon_left_by_a_migrator_before_the_taint_is_lifted_the_way_it_was_set() -> None:
    core = Nodes(**{"edge-1": []})
    core.nodes["edge-1"].metadata.annotations = {ANNOTATION_TEMPORARY_CORDON: "old-run", "team": "edge"}
    core.nodes["edge-1"].spec.unschedulable = True
    _ops(core).lift_cordon(None, None)
    assert not core.nodes["edge-1"].spec.unschedulable
    assert core.nodes["edge-1"].metadata.annotations == {"team": "edge"}


def test_a_node_that_keeps_changing_is_an_error_not_an_overwrite() -> None:
    class Busy(Nodes):
        def patch_node(self, name: str, body: dict[str, Any], **kwargs: Any) -> None:
            self.before_next_patch = [{"key": f"busy-{len(self.patches)}", "effect": "NoSchedule"}]
            super().patch_node(name, body, **kwargs)

    core = Busy(**{"edge-1": []})
    with pytest.raises(RuntimeError, match="changed under every one"):
        _ops(core).cordon(["edge-1"], "m1")
    assert len(core.patches) == TAINT_WRITE_ATTEMPTS
    assert all(t["key"].startswith("busy-") for t in core.taints()), "nobody's taint was dropped"
