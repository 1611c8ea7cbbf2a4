"""KubeOps: a 401/403 on a read or a write becomes ClusterAccessDenied with the server's words; others stay as they are."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from migrator.kube import KubeOps
from migrator.snapshot import ClusterAccessDenied


def _refusing(status: int, message: str) -> Any:
    error = ApiException(status=status, reason="Forbidden" if status == 403 else "Unauthorized")
    error.body = json.dumps({"kind": "Status", "message": message, "code": status})

    class Core:
        def __getattr__(self, name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                raise error

            return call

    return Core()


def _ops(core: Any) -> KubeOps:
    ops = KubeOps(client.ApiClient(), "shop", "app=shop", "reach-migrator")
    ops.core = core
    return ops


def test_a_refused_write_names_the_call_the_namespace_and_the_server_s_words() -> None:
    words = 'admission webhook "pods.policy.example" denied the request: no label changes'
    ops = _ops(_refusing(403, words))
    with pytest.raises(
        ClusterAccessDenied, match=r"refused to patch pods in namespace shop \(403 Forbidden: admission"
    ):
        ops.patch_pod_metadata("agg-1", {"a": "b"}, {})
    with pytest.raises(ClusterAccessDenied, match=r"refused to list nodes \(cluster-wide\)"):
        ops.cordon(["edge-1"], "m1")
    with pytest.raises(ClusterAccessDenied, match=r"refused to delete pods in namespace shop"):
        ops.force_delete_pod("agg-1")
    with pytest.raises(ClusterAccessDenied, match="credentials are not accepted"):
        _ops(_refusing(401, "Unauthorized")).delete_pod("agg-1")


def test_a_missing_pod_or_a_server_error_is_not_an_access_denial() -> None:
    _ops(_refusing(404, "not found")).delete_pod("gone")  # already gone: nothing to do
    with pytest.raises(ApiException) as caught:
        _ops(_refusing(503, "etcd leader changed")).patch_pod_metadata("agg-1", {"a": "b"}, {})
    assert not isinstance(caught.value, ClusterAccessDenied) and caught.value.status == 503
