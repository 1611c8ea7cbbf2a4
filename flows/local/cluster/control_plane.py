"""Bring a local Kubernetes 1.20 control plane with kubemark hollow nodes up and down, on loopback only.

Used by ``reach cluster up|down``, ``reach demo``, the migrator's e2e tests and the migration
benchmark. :meth:`LocalCluster.up` reads a REACH scenario directory and starts etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and one hollow node per scenario node
(:mod:`flows.local.cluster.hollow`), named like the scenario's nodes, labelled with layer / node
type / CPU type, with the node's nominal free CPU and memory as capacity. Every process binds to
127.0.0.1; PIDs, logs, certificates, kubeconfig and etcd data live in a state directory outside
the repository (``$REACH_CLUSTER_STATE`` or ``~/.local/state/reach/cluster``).
:meth:`LocalCluster.down` stops exactly the recorded PIDs, never by name. The binaries come from
``deploy/local/install.sh`` (``~/.cache/reach/k8s-v1.20.2``). Readiness is read through the
migrator's Kubernetes adapter (:class:`migrator.kube.ClusterAdmin`), like every other API call.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.local.cluster.credentials import LOOPBACK, ca_path, write_credentials
from flows.local.cluster.hollow import (
    HOLLOW_NODE_STAGGER_S,
    LEASE_ENV,
    HollowNodeSpec,
    ensure_hosts_entries,
    hollow_node_argv,
    hollow_timing_env,
    node_monitor_grace_s,
    read_scenario_nodes,
)
from flows.local.cluster.supervisor import ProcessTable, wait_for

K8S_VERSION = "v1.20.2"
NODE_MONITOR_PERIOD_S = 2  # how often the node lifecycle controller checks
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubemark")


def default_bin_dir() -> Path:
    return Path(os.environ.get("REACH_K8S_CACHE", Path.home() / ".cache" / "reach" / f"k8s-{K8S_VERSION}"))


def default_state_dir() -> Path:
    return Path(os.environ.get("REACH_CLUSTER_STATE", Path.home() / ".local" / "state" / "reach" / "cluster"))


@dataclass(frozen=True)
class Ports:
    """Loopback ports of one local cluster; change them to run two clusters side by side."""

    etcd_client: int = 2379
    etcd_peer: int = 2380
    apiserver: int = 6443
    controller_manager: int = 10257
    scheduler: int = 10259
    kubelet_base: int = 10300

    def kubelet(self, index: int) -> tuple[int, int]:
        """(kubelet port, read-only port) of the hollow node with this index."""
        return self.kubelet_base + 2 * index, self.kubelet_base + 2 * index + 1


class LocalCluster:
    """The processes and files of one local cluster, addressed by its state directory."""

    def __init__(self, state_dir: Path | None = None, bin_dir: Path | None = None, ports: Ports | None = None):
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.bin_dir = bin_dir or default_bin_dir()
        self.ports = ports or Ports()
        self.processes = ProcessTable(self.state_dir)
        self._admin: Any = None

    @property
    def node_monitor_grace_s(self) -> int:
        return node_monitor_grace_s()

    def failure_detection(self) -> dict[str, float]:
        """The timing that decides how soon a failed node is NotReady, as this process would start it."""
        return {"node_monitor_grace_s": node_monitor_grace_s(), "lease_s": float(hollow_timing_env()[LEASE_ENV])}

    def recorded_failure_detection(self) -> dict[str, float] | None:
        """The timing the running cluster was started with (None: started before it was recorded)."""
        path = self.state_dir / "failure-detection.json"
        return dict(json.loads(path.read_text())) if path.is_file() else None

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_path(self) -> Path:
        return ca_path(self.state_dir)

    def binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(f"{path} is missing: run deploy/local/install.sh first (it builds and caches it)")
        return str(path)

    def recorded_pids(self) -> dict[str, int]:
        return self.processes.recorded_pids()

    def is_running(self) -> bool:
        return self.processes.all_running()

    # ---- the API, through the migrator's adapter -------------------------------------------
    def admin(self) -> Any:
        """A :class:`migrator.kube.ClusterAdmin` on this cluster (once the API server wrote its certificate)."""
        if self._admin is None:
            from migrator.kube import ClusterAdmin, make_api_client

            self._admin = ClusterAdmin(make_api_client(str(self.kubeconfig_path)))
        return self._admin

    def api_ready(self) -> bool:
        if not self.ca_path.is_file():
            return False
        try:
            return bool(self.admin().api_ready())
        except Exception:
            self._admin = None
            return False

    def ready_node_names(self) -> set[str]:
        try:
            return set(self.admin().ready_node_names())
        except Exception:
            return set()

    # ---- components ----------------------------------------------------------------------
    def start_etcd(self) -> None:
        p = self.ports
        self.processes.spawn("etcd", [
            "etcd", "--name=reach", f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls=http://{LOOPBACK}:{p.etcd_client}",
            f"--advertise-client-urls=http://{LOOPBACK}:{p.etcd_client}",
            f"--listen-peer-urls=http://{LOOPBACK}:{p.etcd_peer}",
            f"--initial-advertise-peer-urls=http://{LOOPBACK}:{p.etcd_peer}",
            f"--initial-cluster=reach=http://{LOOPBACK}:{p.etcd_peer}", "--unsafe-no-fsync",
        ])  # fmt: skip
        wait_for(lambda: _http_ok(f"http://{LOOPBACK}:{p.etcd_client}/health"), 30, "etcd /health")

    def start_apiserver(self) -> None:
        pki, p = self.state_dir / "pki", self.ports
        self.processes.spawn("kube-apiserver", [
            self.binary("kube-apiserver"), f"--etcd-servers=http://{LOOPBACK}:{p.etcd_client}",
            f"--bind-address={LOOPBACK}", f"--advertise-address={LOOPBACK}", f"--secure-port={p.apiserver}",
            "--insecure-port=0", f"--cert-dir={pki}", f"--token-auth-file={self.state_dir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC", f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--disable-admission-plugins=ServiceAccount", "--service-cluster-ip-range=10.96.0.0/16",
            "--endpoint-reconciler-type=none", "--allow-privileged=true",
        ])  # fmt: skip
        wait_for(self.api_ready, 60, "kube-apiserver /readyz")

    def start_controllers(self) -> None:
        kubeconfig, p = str(self.kubeconfig_path), self.ports
        common = [f"--kubeconfig={kubeconfig}", "--leader-elect=false", f"--bind-address={LOOPBACK}", "--port=0"]
        auth = [f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}"]
        self.processes.spawn("kube-controller-manager", [
            self.binary("kube-controller-manager"), *common, *auth, f"--secure-port={p.controller_manager}",
            f"--service-account-private-key-file={self.state_dir / 'pki' / 'sa.key'}",
            "--use-service-account-credentials=false",
            # A failed node is NotReady ≤ grace + 2 periods after its last lease renewal (36 s by default;
            # hollow.py): hollow kubelets renew every 5 s, so a node must miss 6 renewals in a row to be
            # declared failed; busy 2-core CI machines miss one or two.
            f"--node-monitor-grace-period={self.node_monitor_grace_s}s",
            f"--node-monitor-period={NODE_MONITOR_PERIOD_S}s",
        ])  # fmt: skip
        self.processes.spawn("kube-scheduler", [
            self.binary("kube-scheduler"), *common, *auth, f"--secure-port={p.scheduler}",
        ])  # fmt: skip

    def hollow_node_argv(self, node: HollowNodeSpec, index: int) -> tuple[list[str], dict[str, str]]:
        """The kubemark command line and environment of one hollow node."""
        return hollow_node_argv(
            self.binary("kubemark"), self.kubeconfig_path, node, self.ports.kubelet(index),
            self.state_dir / "nodes" / node.name,
        )  # fmt: skip

    def start_hollow_nodes(self, nodes: list[HollowNodeSpec]) -> None:
        ensure_hosts_entries([n.name for n in nodes])
        for index, node in enumerate(nodes):
            argv, env = self.hollow_node_argv(node, index)
            self.processes.spawn(f"node-{node.name}", argv, env)
            time.sleep(HOLLOW_NODE_STAGGER_S)
        names = {n.name for n in nodes}
        try:
            wait_for(lambda: names <= self.ready_node_names(), 240, f"{len(names)} hollow nodes Ready")
        except TimeoutError as err:
            missing = sorted(names - self.ready_node_names())
            tails = {name: self.processes.log_tail(f"node-{name}") for name in missing[:2]}
            detail = "; ".join(f"{name}: {tail}" for name, tail in tails.items())
            raise TimeoutError(f"{err}; not Ready: {missing}; last log lines: {detail}") from None

    def log_tail(self, name: str, lines: int = 3) -> str:
        return self.processes.log_tail(name, lines)

    def restart(self, name: str, timeout_s: float = 240.0) -> int:
        """Start one recorded component again as it was started (``node-<name>`` for a hollow node), keeping
        the cluster and its workloads; a hollow node is waited for until Ready. Returns the new PID."""
        proc = self.processes.restart(name)
        if name.startswith("node-"):
            node = name.removeprefix("node-")
            wait_for(lambda: node in self.ready_node_names(), timeout_s, f"hollow node {node} Ready again")
        return proc.pid

    # ---- lifecycle -----------------------------------------------------------------------
    def up(self, scenario_dir: Path) -> Path:
        """Start the whole cluster for a scenario; a no-op when it already runs. Returns the kubeconfig."""
        nodes = read_scenario_nodes(scenario_dir)
        if self.is_running():
            print(f"cluster already running (state {self.state_dir}); kubeconfig {self.kubeconfig_path}")
            return self.kubeconfig_path
        if self.recorded_pids():
            self.down()
        for name in BINARIES:
            self.binary(name)
        detection = self.failure_detection()  # a bad timing override is refused before anything starts
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "scenario").write_text(str(scenario_dir.resolve()))
        (self.state_dir / "failure-detection.json").write_text(json.dumps(detection))
        started_s = time.monotonic()
        try:
            write_credentials(self.state_dir, self.ports.apiserver)
            self._admin = None
            self.start_etcd()
            self.start_apiserver()
            self.start_controllers()
            self.start_hollow_nodes(nodes)
        except BaseException:
            self.down(keep_state=True)  # stop what started, keep the logs for the error's reader
            raise
        print(
            f"cluster up in {time.monotonic() - started_s:.1f} s: {len(nodes)} nodes Ready; "
            f"export KUBECONFIG={self.kubeconfig_path}"
        )
        return self.kubeconfig_path

    def down(self, keep_state: bool = False) -> None:
        """Stop the recorded PIDs (hollow nodes first, etcd last) and remove the state directory."""
        stopped = self.processes.stop_all()
        self._admin = None
        if keep_state or not self.state_dir.exists():
            return
        for child in ("etcd", "nodes", "pki", "logs"):
            subprocess.run(["rm", "-rf", str(self.state_dir / child)], check=False)
        for child in ("pids.json", "tokens.csv", "kubeconfig", "scenario", "failure-detection.json"):
            (self.state_dir / child).unlink(missing_ok=True)
        print(f"cluster down: stopped {stopped} processes")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
