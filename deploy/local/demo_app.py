"""Deploy a scenario's services as Deployments on the local cluster: the app the migrator moves.

Used by the e2e tests, the benchmark and ``reach cluster up --app``. One Deployment per service in
``services.json`` (labels ``app=<service>`` and ``reach.io/app=demo``; CPU and memory requests from
the file; a service with ``layer`` gets a node selector on ``reach.io/layer``). Hollow nodes run no
containers, so the image is never pulled. Requires the ``kubernetes`` client.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kubernetes import client

APP_LABEL = "reach.io/app"
APP_NAME = "demo"
LAYER_LABEL = "reach.io/layer"
PAUSE_IMAGE = "registry.k8s.io/pause:3.2"


def read_services(scenario_dir: Path) -> dict[str, dict[str, Any]]:
    path = scenario_dir / "services.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: pass a scenario directory such as data/scenarios/7-21")
    services: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return services


def deployment_manifest(name: str, spec: dict[str, Any], replicas: int) -> dict[str, Any]:
    labels = {"app": name, APP_LABEL: APP_NAME}
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": name,
                "image": PAUSE_IMAGE,
                "resources": {"requests": {"cpu": spec["cpu-requests"], "memory": spec["memory-requests"]}},
            }
        ],
        "terminationGracePeriodSeconds": 1,
    }
    if spec.get("layer"):
        pod_spec["nodeSelector"] = {LAYER_LABEL: spec["layer"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name, APP_LABEL: APP_NAME}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def deploy(
    api_client: client.ApiClient, scenario_dir: Path, namespace: str = "default", replicas: dict[str, int] | None = None
) -> list[str]:
    """Create (or replace) the scenario's Deployments; returns their names."""
    apps = client.AppsV1Api(api_client)
    names = []
    for name, spec in read_services(scenario_dir).items():
        count = (replicas or {}).get(name, 1)
        body = deployment_manifest(name, spec, count)
        try:
            apps.create_namespaced_deployment(namespace, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            apps.replace_namespaced_deployment(name, namespace, body)
        names.append(name)
    return names


def wait_ready(api_client: client.ApiClient, namespace: str = "default", timeout_s: float = 60.0) -> None:
    """Wait until every demo Deployment has all its replicas Ready and no surplus pod."""
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        deployments = apps.list_namespaced_deployment(namespace, label_selector=f"{APP_LABEL}={APP_NAME}").items
        pods = core.list_namespaced_pod(namespace, label_selector=f"{APP_LABEL}={APP_NAME}").items
        wanted = sum(d.spec.replicas for d in deployments)
        ready = all((d.status.ready_replicas or 0) == d.spec.replicas for d in deployments)
        settled = not any(p.metadata.deletion_timestamp for p in pods)
        if ready and settled and len(pods) == wanted:
            return
        time.sleep(0.3)
    raise TimeoutError(f"demo Deployments in {namespace} not Ready within {timeout_s:.0f} s")


def delete(api_client: client.ApiClient, namespace: str = "default", timeout_s: float = 90.0) -> None:
    """Remove the demo Deployments, their ReplicaSets and pods, and wait until all are gone.

    ReplicaSets go first (foreground deletion), so that no ReplicaSet recreates a pod that was just
    removed; the remaining pods are then deleted without grace (hollow nodes run nothing).
    """
    selector = f"{APP_LABEL}={APP_NAME}"
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    apps.delete_collection_namespaced_deployment(namespace, label_selector=selector, propagation_policy="Foreground")
    apps.delete_collection_namespaced_replica_set(namespace, label_selector=selector, propagation_policy="Foreground")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = len(apps.list_namespaced_replica_set(namespace, label_selector=selector).items)
        left += len(apps.list_namespaced_deployment(namespace, label_selector=selector).items)
        if not left:
            break
        time.sleep(0.3)
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        if not pods:
            return
        core.delete_collection_namespaced_pod(namespace, label_selector=selector, grace_period_seconds=0)
        time.sleep(0.3)
    raise TimeoutError(f"demo app in {namespace} not gone within {timeout_s:.0f} s: inspect its pods and ReplicaSets")
