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
