"""The scenario's services as Deployments on a cluster: the app that the migrator moves in the demo and the tests.

One Deployment per service of ``services.json`` (labels ``app=<service>`` and ``reach.io/app=demo``;
CPU and memory requests from the file, read by ceenv's one parser; a service pinned to a layer gets
a node selector on ``reach.io/layer``). Hollow nodes run no containers, so the image is never
pulled. The manifests are built here (pure); every API call goes through the migrator's adapter,
:class:`migrator.kube.ClusterAdmin`. Used by ``reach demo``, ``reach cluster up --app``, the e2e
tests and the migration benchmark.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceenv.scenario import Service, load_scenario
from ceenv.units import cpu_millicores

if TYPE_CHECKING:
    from migrator.kube import ClusterAdmin

APP_LABEL = "reach.io/app"
APP_NAME = "demo"
APP_SELECTOR = f"{APP_LABEL}={APP_NAME}"
LAYER_LABEL = "reach.io/layer"
PAUSE_IMAGE = "registry.k8s.io/pause:3.2"


def deployment_manifest(service: Service, replicas: int) -> dict[str, Any]:
    """The Deployment of one service with ``replicas`` pods."""
    labels = {"app": service.name, APP_LABEL: APP_NAME}
    requests = {"cpu": f"{cpu_millicores(service.cpu_cores)}m", "memory": str(round(service.memory_bytes))}
    pod_spec: dict[str, Any] = {
        "containers": [{"name": service.name, "image": PAUSE_IMAGE, "resources": {"requests": requests}}],
        "terminationGracePeriodSeconds": 1,
    }
    if service.layer:
        pod_spec["nodeSelector"] = {LAYER_LABEL: service.layer}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": service.name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": service.name, APP_LABEL: APP_NAME}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def deploy(
    admin: ClusterAdmin, scenario_dir: Path, namespace: str = "default", replicas: dict[str, int] | None = None
) -> list[str]:
    """Create (or replace) the scenario's Deployments (one replica each unless ``replicas`` says otherwise)."""
    names = []
    for service in load_scenario(scenario_dir).services:
        admin.apply_deployment(namespace, deployment_manifest(service, (replicas or {}).get(service.name, 1)))
        names.append(service.name)
    return names


def wait_ready(admin: ClusterAdmin, namespace: str = "default", timeout_s: float = 60.0) -> None:
    """Wait until every demo Deployment has all its replicas Ready and no surplus or terminating pod."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if admin.deployments_settled(namespace, APP_SELECTOR):
            return
        time.sleep(0.3)
    raise TimeoutError(f"demo Deployments in {namespace} not Ready within {timeout_s:.0f} s")


def delete(admin: ClusterAdmin, namespace: str = "default", timeout_s: float = 90.0) -> None:
    """Remove the demo Deployments, their ReplicaSets and pods, and wait until all are gone.

    ReplicaSets go first (foreground deletion), so that no ReplicaSet recreates a pod that was just
    removed; the remaining pods are then deleted without grace (hollow nodes run nothing).
    """
    admin.delete_deployments(namespace, APP_SELECTOR)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and admin.controllers_left(namespace, APP_SELECTOR):
        time.sleep(0.3)
    while time.monotonic() < deadline:
        if not admin.pods(namespace, APP_SELECTOR):
            return
        admin.delete_pods_now(namespace, APP_SELECTOR)
        time.sleep(0.3)
    raise TimeoutError(f"demo app in {namespace} not gone within {timeout_s:.0f} s: inspect its pods and ReplicaSets")
