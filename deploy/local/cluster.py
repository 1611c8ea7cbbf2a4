"""Bring a local Kubernetes 1.20 control plane with kubemark hollow nodes up and down, on loopback only.

Used by ``reach cluster up|down``, by the migrator's e2e tests and by the benchmark. ``up`` reads a
REACH scenario directory (``nodes.json``) and starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and one hollow node per scenario node, named like the scenario's nodes, labelled
with layer / node type / CPU type, with capacity taken from the node's nominal (largest) free CPU
and memory. Every process binds to 127.0.0.1; the PIDs, logs, certificates, kubeconfig and etcd
data live in a state directory outside the repository (``$REACH_CLUSTER_STATE`` or
``~/.local/state/reach/cluster``). ``down`` stops exactly the recorded PIDs, never by name. The
binaries come from ``deploy/local/install.sh`` (``~/.cache/reach/k8s-v1.20.2``). Standard library
only, so that it runs before any project dependency is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = "v1.20.2"
LABEL_LAYER = "reach.io/layer"
LABEL_NODE_TYPE = "reach.io/node-type"
LABEL_CPU_TYPE = "reach.io/cpu-type"
HOSTS_MARKER = "# reach-local-cluster"
LOOPBACK = "127.0.0.1"
_MEMORY_SUFFIX_BYTES = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


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


@dataclass(frozen=True)
class HollowNodeSpec:
    """One scenario node as a hollow node: name, labels and capacity."""

    name: str
    layer: str
    node_type: str
    cpu_type: int
    cpu_cores: int
    memory_bytes: int

    def labels(self) -> dict[str, str]:
        return {LABEL_LAYER: self.layer, LABEL_NODE_TYPE: self.node_type, LABEL_CPU_TYPE: str(self.cpu_type)}


def parse_cpu_cores(text: str) -> float:
    """A Kubernetes CPU quantity (``700m``, ``2``, ``1.5``) in cores."""
    value = str(text).strip()
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def parse_memory_bytes(text: str) -> int:
    """A Kubernetes memory quantity (``700M``, ``27.68G``, ``512Mi``) in bytes."""
    match = re.fullmatch(r"([0-9.]+)\s*([KMGT]i?)?", str(text).strip())
    if not match:
        raise ValueError(f"memory quantity {text!r} is not of the form 700M, 2G or 512Mi")
    return round(float(match.group(1)) * _MEMORY_SUFFIX_BYTES[match.group(2) or ""])


def read_scenario_nodes(scenario_dir: Path) -> list[HollowNodeSpec]:
    """The scenario's nodes in MODEL.md §1 order, with nominal (largest) free CPU and memory."""
    path = scenario_dir / "nodes.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: pass a scenario directory such as data/scenarios/7-21")
    doc = json.loads(path.read_text())
    specs: list[HollowNodeSpec] = []
    for layer, types in doc["cluster_setup"].items():
        for node_type, setup in types.items():
            cpu_cores = max(parse_cpu_cores(v) for v in setup["cpu_availability"])
            if cpu_cores != math.floor(cpu_cores):
                raise ValueError(
                    f"{path}: cluster_setup.{layer}.{node_type}.cpu_availability max {cpu_cores} is not a whole "
                    "number of cores; hollow nodes report whole cores, round it in the scenario"
                )
            memory_bytes = max(parse_memory_bytes(v) for v in setup["memory_availability"])
            cpu_type = int(doc["node_type"][node_type]["cpu_type"])
            for i in range(1, int(setup["count"]) + 1):
                specs.append(
                    HollowNodeSpec(f"{node_type}-{i}", layer, node_type, cpu_type, int(cpu_cores), memory_bytes)
                )
    return specs


def ensure_hosts_entries(names: list[str], hosts_path: Path = Path("/etc/hosts")) -> None:
    """Make every node name resolve to 127.0.0.1 without DNS; adds only the missing names."""
    present: set[str] = set()
    for line in hosts_path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0] == LOOPBACK:
            present.update(fields[1:])
    missing = [n for n in names if n not in present]
    if not missing:
        return
    line = f"{LOOPBACK} {' '.join(missing)} {HOSTS_MARKER}\n"
    try:
        with hosts_path.open("a") as hosts:
            hosts.write(line)
    except PermissionError as exc:
        raise PermissionError(
            f"cannot append to {hosts_path}: add this line as root and rerun: {line.strip()}"
        ) from exc


def loopback_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: no proxies, no cloud metadata lookups."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}}
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra or {})
    return env


class LocalCluster:
    """The processes and files of one local cluster, addressed by its state directory."""

    def __init__(self, state_dir: Path | None = None, bin_dir: Path | None = None, ports: Ports | None = None):
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.bin_dir = bin_dir or default_bin_dir()
        self.ports = ports or Ports()

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pids_path(self) -> Path:
        return self.state_dir / "pids.json"

    def binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(f"{path} is missing: run deploy/local/install.sh first (it builds and caches it)")
        return str(path)

    # ---- process bookkeeping -------------------------------------------------------------
    def recorded(self) -> dict[str, dict[str, object]]:
        """name → {"pid": int, "exe": argv[0]} of every process this cluster started."""
        if not self.pids_path.is_file():
            return {}
        return dict(json.loads(self.pids_path.read_text()))

    def recorded_pids(self) -> dict[str, int]:
        return {name: int(str(entry["pid"])) for name, entry in self.recorded().items()}

    def _record_pid(self, name: str, pid: int, exe: str) -> None:
        entries = self.recorded()
        entries[name] = {"pid": pid, "exe": exe}
        self.pids_path.write_text(json.dumps(entries, indent=1))

    def is_running(self) -> bool:
        entries = self.recorded()
        return bool(entries) and all(_is_our_process(int(str(e["pid"])), str(e["exe"])) for e in entries.values())

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start one component in its own session, log to logs/<name>.log, record its PID."""
        log_dir = self.state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=loopback_env(env), start_new_session=True,
            )  # fmt: skip
        self._record_pid(name, proc.pid, argv[0])
        return proc

    # ---- files ---------------------------------------------------------------------------
    def write_credentials(self) -> str:
        """Service-account keys, a static admin token and a kubeconfig; returns the token."""
        pki = self.state_dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        if not (pki / "sa.key").is_file():
            subprocess.run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True)
            subprocess.run(
                ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
                check=True, capture_output=True,
            )  # fmt: skip
        token = secrets.token_hex(16)
        (self.state_dir / "tokens.csv").write_text(f'{token},reach-admin,reach-admin,"system:masters"\n')
        self.kubeconfig_path.write_text(_kubeconfig_text(self.ports.apiserver, token, self.ca_path))
        self.kubeconfig_path.chmod(0o600)
        return token

    @property
    def ca_path(self) -> Path:
        """The apiserver's self-signed certificate (written by it at start), trusted by the kubeconfig."""
        return self.state_dir / "pki" / "apiserver.crt"

    def token(self) -> str:
        return (self.state_dir / "tokens.csv").read_text().split(",", 1)[0]

    # ---- components ----------------------------------------------------------------------
    def start_etcd(self) -> None:
        p = self.ports
        self.spawn("etcd", [
            "etcd", "--name=reach", f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls=http://{LOOPBACK}:{p.etcd_client}",
            f"--advertise-client-urls=http://{LOOPBACK}:{p.etcd_client}",
            f"--listen-peer-urls=http://{LOOPBACK}:{p.etcd_peer}",
            f"--initial-advertise-peer-urls=http://{LOOPBACK}:{p.etcd_peer}",
            f"--initial-cluster=reach=http://{LOOPBACK}:{p.etcd_peer}", "--unsafe-no-fsync",
        ])  # fmt: skip
        _wait_for(lambda: _http_ok(f"http://{LOOPBACK}:{p.etcd_client}/health"), 30, "etcd /health")

    def start_apiserver(self) -> None:
        pki, p = self.state_dir / "pki", self.ports
        self.spawn("kube-apiserver", [
            self.binary("kube-apiserver"), f"--etcd-servers=http://{LOOPBACK}:{p.etcd_client}",
            f"--bind-address={LOOPBACK}", f"--advertise-address={LOOPBACK}", f"--secure-port={p.apiserver}",
            "--insecure-port=0", f"--cert-dir={pki}", f"--token-auth-file={self.state_dir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC", f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--disable-admission-plugins=ServiceAccount", "--service-cluster-ip-range=10.96.0.0/16",
            "--endpoint-reconciler-type=none", "--allow-privileged=true",
        ])  # fmt: skip
        _wait_for(lambda: self.api_get("/readyz") is not None, 60, "kube-apiserver /readyz")

    def start_controllers(self) -> None:
        kubeconfig, p = str(self.kubeconfig_path), self.ports
        common = [f"--kubeconfig={kubeconfig}", "--leader-elect=false", f"--bind-address={LOOPBACK}", "--port=0"]
        auth = [f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}"]
        self.spawn("kube-controller-manager", [
            self.binary("kube-controller-manager"), *common, *auth, f"--secure-port={p.controller_manager}",
            f"--service-account-private-key-file={self.state_dir / 'pki' / 'sa.key'}",
            "--use-service-account-credentials=false",
            # On 2 busy cores a hollow kubelet's status update can be late; the default 40 s grace
            # would flip its node NotReady and its pods with it, mid-migration.
            "--node-monitor-grace-period=120s",
        ])  # fmt: skip
        self.spawn("kube-scheduler", [
            self.binary("kube-scheduler"), *common, *auth, f"--secure-port={p.scheduler}",
        ])  # fmt: skip

    def hollow_node_argv(self, node: HollowNodeSpec, index: int) -> tuple[list[str], dict[str, str]]:
        """The kubemark command line and environment of one hollow node."""
        kubelet_port, read_only_port = self.ports.kubelet(index)
        labels = ",".join(f"{k}={v}" for k, v in node.labels().items())
        node_tmp = self.state_dir / "nodes" / node.name
        node_tmp.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary("kubemark"), "--morph=kubelet", f"--name={node.name}",
            f"--kubeconfig={self.kubeconfig_path}", f"--kubelet-port={kubelet_port}",
            f"--kubelet-read-only-port={read_only_port}", f"--node-labels={labels}",
        ]  # fmt: skip
        env = {
            "TMPDIR": str(node_tmp),
            "REACH_HOLLOW_CPU_CORES": str(node.cpu_cores),
            # Hollow nodes run a stub container manager: allocatable equals this capacity exactly.
            "REACH_HOLLOW_MEMORY_BYTES": str(node.memory_bytes),
        }
        return argv, env

    def start_hollow_nodes(self, nodes: list[HollowNodeSpec]) -> None:
        ensure_hosts_entries([n.name for n in nodes])
        for index, node in enumerate(nodes):
            argv, env = self.hollow_node_argv(node, index)
            self.spawn(f"node-{node.name}", argv, env)
            # Every hollow kubelet of this kubemark build serves its fake runtime on the same
            # /tmp/kubelet_remote.sock; nodes started in the same instant can replace each other's
            # socket and die ("dial unix /tmp/kubelet_remote.sock: connect: no such file").
            time.sleep(HOLLOW_NODE_STAGGER_S)
        names = {n.name for n in nodes}
        try:
            _wait_for(lambda: names <= self.ready_node_names(), 240, f"{len(names)} hollow nodes Ready")
        except TimeoutError as err:
            missing = sorted(names - self.ready_node_names())
            tails = {name: self.log_tail(f"node-{name}") for name in missing[:2]}
            detail = "; ".join(f"{name}: {tail}" for name, tail in tails.items())
            raise TimeoutError(f"{err}; not Ready: {missing}; last log lines: {detail}") from None

    def log_tail(self, name: str, lines: int = 3) -> str:
        """The last lines of a component's log (for error messages), or a note that there is none."""
        log = self.state_dir / "logs" / f"{name}.log"
        if not log.is_file():
            return "(no log)"
        text = log.read_text(errors="replace").strip().splitlines()
        return " | ".join(line[:200] for line in text[-lines:])

    # ---- API reads (stdlib HTTP, loopback only) ------------------------------------------
    def api_get(self, path: str) -> dict[str, object] | None:
        url = f"https://{LOOPBACK}:{self.ports.apiserver}{path}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token()}"})
        if not self.ca_path.is_file():
            return None
        context = ssl.create_default_context(cafile=str(self.ca_path))
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                body = response.read()
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return None
        try:
            parsed = json.loads(body)
        except ValueError:
            return {"text": body.decode(errors="replace")}
        return parsed if isinstance(parsed, dict) else {"value": parsed}

    def ready_node_names(self) -> set[str]:
        nodes = self.api_get("/api/v1/nodes") or {}
        ready: set[str] = set()
        for item in nodes.get("items", []):  # type: ignore[union-attr]
            conditions = item.get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                ready.add(item["metadata"]["name"])
        return ready

    # ---- lifecycle -----------------------------------------------------------------------
    def up(self, scenario_dir: Path) -> Path:
        """Start the whole cluster for a scenario; a no-op when it already runs. Returns the kubeconfig."""
        nodes = read_scenario_nodes(scenario_dir)
        if self.is_running():
            print(f"cluster already running (state {self.state_dir}); kubeconfig {self.kubeconfig_path}")
            return self.kubeconfig_path
        if self.recorded_pids():
            self.down()
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubemark"):
            self.binary(name)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "scenario").write_text(str(scenario_dir.resolve()))
        started_s = time.monotonic()
        try:
            self.write_credentials()
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
        entries = self.recorded()
        for name in sorted(entries, key=_stop_rank):
            pid, exe = int(str(entries[name]["pid"])), str(entries[name]["exe"])
            if _is_our_process(pid, exe):
                _stop_pid(pid)
        if keep_state or not self.state_dir.exists():
            return
        for child in ("etcd", "nodes", "pki", "logs"):
            subprocess.run(["rm", "-rf", str(self.state_dir / child)], check=False)
        for child in ("pids.json", "tokens.csv", "kubeconfig", "scenario"):
            (self.state_dir / child).unlink(missing_ok=True)
        print(f"cluster down: stopped {len(entries)} processes")


def _stop_rank(name: str) -> int:
    ranks = {"kube-scheduler": 1, "kube-controller-manager": 1, "kube-apiserver": 2, "etcd": 3}
    return ranks.get(name, 0)


def _is_our_process(pid: int, exe: str) -> bool:
    """The PID is alive and still runs the binary we started (guards against PID reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return False
    return Path(argv0).name == Path(exe).name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[-1].startswith("Z"))


def _stop_pid(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM one recorded PID, SIGKILL it after the grace period; a gone PID is fine."""
    if not _pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


HOLLOW_NODE_STAGGER_S = 1.5


def _wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not reached within {timeout_s:.0f} s: see the logs under the cluster state directory")


def _kubeconfig_text(apiserver_port: int, token: str, ca_path: Path) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: reach-local
  cluster:
    server: https://{LOOPBACK}:{apiserver_port}
    certificate-authority: {ca_path}
users:
- name: reach-admin
  user:
    token: {token}
contexts:
- name: reach-local
  context:
    cluster: reach-local
    user: reach-admin
current-context: reach-local
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--scenario", type=Path, default=Path("data/scenarios/7-21"), help="scenario directory")
    parser.add_argument("--state-dir", type=Path, default=None, help="state directory (PIDs, logs, kubeconfig)")
    parser.add_argument("--bin-dir", type=Path, default=None, help="directory of the cached Kubernetes binaries")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.state_dir, args.bin_dir)
    if args.action == "up":
        cluster.up(args.scenario)
    elif args.action == "down":
        cluster.down()
    else:
        running = cluster.is_running()
        print(json.dumps({"running": running, "kubeconfig": str(cluster.kubeconfig_path), **cluster.recorded_pids()}))
        return 0 if running else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
