"""Kubernetes Events are records, never a reason to stop: an API server that is gone does not crash the migrator."""

from __future__ import annotations

import socket

from kubernetes import client

from migrator.kube import KubeOps


def test_an_event_for_an_api_server_that_refuses_connections_is_dropped_quietly() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = client.Configuration(host=f"https://127.0.0.1:{port}")
    configuration.verify_ssl = False
    configuration.retries = 0
    ops = KubeOps(client.ApiClient(configuration), "default", "reach.io/app=demo", "reach-migrator")
    ops.emit_event("agg-1", "Migrated", "moved agg-1 to edge-1")  # must not raise


def test_every_api_call_gives_up_on_a_server_that_accepts_and_never_answers() -> None:
    """A half-open connection (the API server hung mid-request) fails after api_timeout_s instead of hanging a migration."""
    import threading

    with socket.socket() as silent:  # listens (the kernel completes the handshake) but never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        configuration = client.Configuration(host=f"http://127.0.0.1:{silent.getsockname()[1]}")
        configuration.retries = 0
        ops = KubeOps(client.ApiClient(configuration), "default", "reach.io/app=demo", "reach-migrator", 0.2)
        calls = {
            "snapshot": ops.snapshot,
            "pdbs": ops.pdbs,  # the dynamic client's discovery first
            "get_pod": lambda: ops.get_pod("agg-1"),
            "list_pods": lambda: ops.list_pods({"app": "agg"}),
            "replicaset_selector": lambda: ops.replicaset_selector("agg-abc"),
            "replicaset_replicas": lambda: ops.replicaset_replicas("agg-abc"),
            "patch_pod_metadata": lambda: ops.patch_pod_metadata("agg-1", {"a": "b"}, {}),
            "list_nodes": ops.list_nodes,
            "cordon": lambda: ops.cordon(["edge-1"], "m1"),
            "lift_cordon": lambda: ops.lift_cordon(None, None),
            "delete_pod": lambda: ops.delete_pod("agg-1"),
            "force_delete_pod": lambda: ops.force_delete_pod("agg-1"),
        }
        outcomes: dict[str, str] = {}

        def run_all() -> None:
            for name, call in calls.items():
                try:
                    call()
                    outcomes[name] = "answered"
                except Exception as exc:  # the timeout, as urllib3 raises it
                    outcomes[name] = type(exc).__name__

        worker = threading.Thread(target=run_all, daemon=True)
        worker.start()
        worker.join(timeout=60)  # a liveness bound: without timeouts the first call never returns
        assert not worker.is_alive(), f"a call hung; finished: {outcomes}"
    assert set(outcomes) == set(calls) and "answered" not in outcomes.values(), outcomes
