"""Fixtures of the migrator's e2e tests: one local cluster per session, the demo app per test, a fake policy.

The cluster gets its own state directory (under pytest's temporary directory, outside the
repository) and its own loopback ports (:func:`e2e_ports`: a block that is free, shifted when another
session holds one), so it never collides with a cluster a developer started with ``reach cluster up``
or with another test session. Without the cached Kubernetes binaries the e2e tests are skipped with the
reason, unless ``REACH_REQUIRE_CLUSTER`` is set (CI), in which case they fail.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .e2e_support import APP_REPLICAS, SCENARIO, FakePolicy, cluster_requirement, uncordon_every_node

E2E_PORTS = {
    "etcd_client": 23790,
    "etcd_peer": 23800,
    "apiserver": 16443,
    "controller_manager": 20257,
    "scheduler": 20259,
    "kubelet_base": 20300,
}
KUBELET_PORTS = 80  # two per hollow node: room for 40 nodes
PORT_SHIFTS = range(0, 10_000, 1000)  # another test session (or anything else) holds a port: try the next block


def _free(port: int) -> bool:
    with socket.socket() as probe:
        # As the servers bind (Go sets SO_REUSEADDR): a port in TIME_WAIT after an earlier run is free, a listener not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def e2e_ports() -> dict[str, int]:
    """:data:`E2E_PORTS`, shifted by the first of :data:`PORT_SHIFTS` whose ports are all free on 127.0.0.1.

    The cluster's ports are fixed per session (the kubeconfig, the hollow nodes); a second test session on
    one machine would otherwise fail to start its cluster, or talk to the first one's.
    """
    for shift in PORT_SHIFTS:
        ports = {name: port + shift for name, port in E2E_PORTS.items()}
        kubelets = range(ports["kubelet_base"], ports["kubelet_base"] + KUBELET_PORTS)
        wanted = [port for name, port in ports.items() if name != "kubelet_base"] + list(kubelets)
        if all(_free(port) for port in wanted):
            return ports
    raise RuntimeError(f"no free block of ports for the e2e cluster on 127.0.0.1 (tried {E2E_PORTS} + {PORT_SHIFTS})")


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    run, why = cluster_requirement()
    if not run:
        pytest.skip(why)
    from flows.local.cluster import LocalCluster, Ports

    cluster = LocalCluster(tmp_path_factory.mktemp("reach-cluster"), ports=Ports(**e2e_ports()))
    cluster.up(SCENARIO)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def kubeconfig(local_cluster: Any) -> str:
    return str(local_cluster.kubeconfig_path)


@pytest.fixture(scope="session")
def api_client(kubeconfig: str) -> Any:
    from migrator.kube import make_api_client

    return make_api_client(kubeconfig)


@pytest.fixture(scope="session")
def admin(api_client: Any) -> Any:
    """The migrator's adapter for everything but migrations (the app's Deployments, cordons, evictions)."""
    from migrator.kube import ClusterAdmin

    return ClusterAdmin(api_client)


@pytest.fixture
def core(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture
def demo_app(admin: Any, core: Any) -> Iterator[Any]:
    """The 7-21 scenario's services (aggregator ×3, db ×2, others ×1), Ready; removed afterwards."""
    from flows.loop import app

    app.deploy(admin, SCENARIO, replicas=APP_REPLICAS)
    app.wait_ready(admin)
    yield app
    app.delete(admin)
    uncordon_every_node(core)


@pytest.fixture
def fake_policy() -> Iterator[FakePolicy]:
    policy = FakePolicy()
    yield policy
    policy.close()


@pytest.fixture
def settings_for(kubeconfig: str, tmp_path: Path) -> Any:
    from migrator.settings import MigratorSettings

    def make(policy_url: str, **overrides: object) -> MigratorSettings:
        values: dict[str, object] = {
            "kubeconfig": kubeconfig, "policy_url": policy_url, "pod_cooldown_s": 0.0, "return_hold_down_s": 0.0,
            "max_migrations_per_window": 100, "policy_timeout_s": 2.0, "policy_retries": 1,
            "policy_backoff_s": 0.1, "migration_deadline_s": 30.0,
            "episode_csv": str(tmp_path / "episode.csv"), "distribution_csv": str(tmp_path / "dist.csv"),
        }  # fmt: skip
        values.update(overrides)
        return MigratorSettings(_env_file=None, **values)  # type: ignore[call-arg]

    return make
