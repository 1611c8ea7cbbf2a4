"""Scenario nodes as kubemark hollow nodes: names, labels, capacities, command lines and host names.

:func:`read_scenario_nodes` reads a REACH scenario with ceenv's loader (the one units parser) and
gives one :class:`HollowNodeSpec` per node, in MODEL.md §1 order, with the node's nominal (largest)
free CPU and memory as its capacity. :func:`hollow_node_argv` is the loopback-only kubemark command
line of one node; :func:`ensure_hosts_entries` makes every node name resolve to 127.0.0.1 without
DNS. Used by :class:`flows.local.cluster.control_plane.LocalCluster`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from ceenv.scenario import load_scenario

LABEL_LAYER = "reach.io/layer"
LABEL_NODE_TYPE = "reach.io/node-type"
LABEL_CPU_TYPE = "reach.io/cpu-type"
HOSTS_MARKER = "# reach-local-cluster"
LOOPBACK = "127.0.0.1"
# Every hollow kubelet of this kubemark build serves its fake runtime on the same
# /tmp/kubelet_remote.sock; nodes started in the same instant can replace each other's socket and
# die ("dial unix /tmp/kubelet_remote.sock: connect: no such file"), so starts are staggered.
HOLLOW_NODE_STAGGER_S = 1.5
# Timing of the hollow kubelets (read by deploy/local/patches/hollow-node-timing.patch and
# hollow-node-pleg.patch; upstream defaults without them): a 20 s lease is renewed every 5 s, so the
# controller manager's 32 s grace period (control_plane.py) detects a failed node within 36 s and
# rides out 5 late renewals. A gracefully deleted pod leaves the API only after the kubelet's PLEG
# has relisted three times (containers exited, containers removed, sandbox removed) and its status
# batch has then sent the final deletion: with upstream's fixed 1 s relist and 10 s batch that is
# about 10 s. Here both run every 0.2 s, so "old pod gone" takes about a second
# (benchmarks/bench_migration.py measures it; docs/migrator.md has the timeline).
# A variable set in the environment of the process that starts the cluster wins (to experiment).
HOLLOW_TIMING_ENV = {
    "REACH_HOLLOW_NODE_LEASE_DURATION_S": "20",
    "REACH_KUBELET_STATUS_SYNC_PERIOD_S": "0.2",
    "REACH_HOLLOW_PLEG_RELIST_S": "0.2",
    "REACH_HOLLOW_SYNC_FREQUENCY_S": "10",
    "REACH_HOLLOW_NODE_STATUS_UPDATE_S": "10",
}
# The patched kubelet ignores a relist period below this (a busy loop) and falls back to 1 s.
MIN_PLEG_RELIST_S = 0.05
# How soon a failed node is declared NotReady: the controller manager's grace period
# (control_plane.py). The default rides out 5 late lease renewals on a busy machine; the experiments
# ask for a faster detection with :func:`failure_detection_env` (a shorter lease and grace together).
NODE_MONITOR_GRACE_ENV = "REACH_NODE_MONITOR_GRACE_S"
DEFAULT_NODE_MONITOR_GRACE_S = 32
LEASE_ENV = "REACH_HOLLOW_NODE_LEASE_DURATION_S"
# A kubelet renews its lease every quarter of the lease's duration (upstream's renew-interval fraction).
LEASE_RENEW_FRACTION = 0.25


def hollow_timing_env() -> dict[str, str]:
    """The timing variables of the hollow kubelets: the defaults above, each overridable from the environment.

    An override must be a positive number of seconds (the patched kubelet would silently fall back to
    upstream's value otherwise); a bad one raises ValueError naming the variable.
    """
    env = {key: os.environ.get(key, value) for key, value in HOLLOW_TIMING_ENV.items()}
    for key, value in env.items():
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        least = MIN_PLEG_RELIST_S if key == "REACH_HOLLOW_PLEG_RELIST_S" else 0.0
        if not (math.isfinite(seconds) and seconds > 0 and seconds >= least):
            raise ValueError(
                f"{key}={value!r}: the hollow kubelets need a number of seconds > 0"
                + (f" and ≥ {least:g}" if least else "")
                + f"; unset it for the local cluster's {HOLLOW_TIMING_ENV[key]}"
            )
    return env


def node_monitor_grace_s() -> int:
    """The grace period after which a node whose lease is not renewed is NotReady, in whole seconds.

    ``$REACH_NODE_MONITOR_GRACE_S`` overrides the default; it must leave room for at least four lease
    renewals of the hollow kubelets (else a busy machine would fail healthy nodes): ValueError naming
    the variables otherwise.
    """
    value = os.environ.get(NODE_MONITOR_GRACE_ENV, str(DEFAULT_NODE_MONITOR_GRACE_S))
    lease_s = float(hollow_timing_env()[LEASE_ENV])
    try:
        grace_s = int(value)
    except ValueError:
        grace_s = 0
    if grace_s <= 0 or grace_s < 4 * LEASE_RENEW_FRACTION * lease_s:
        raise ValueError(
            f"{NODE_MONITOR_GRACE_ENV}={value!r}: the grace period must be whole seconds ≥ the hollow kubelets' "
            f"lease ({LEASE_ENV}={lease_s:g}, renewed every {LEASE_RENEW_FRACTION * lease_s:g} s), so that four "
            f"renewals fit in it; lower {LEASE_ENV} with it (failure_detection_env) or unset both for the local "
            f"cluster's {DEFAULT_NODE_MONITOR_GRACE_S} s"
        )
    return grace_s


def failure_detection_env(grace_s: int) -> dict[str, str]:
    """The environment that makes the local cluster declare a failed node NotReady ``grace_s`` after its last
    lease renewal (at most two node-monitor periods later): the grace period, and a lease of two thirds of
    it, renewed every sixth, so that a node must miss five renewals in a row, as with the defaults."""
    if grace_s < 6:
        raise ValueError(f"failure detection of {grace_s} s: ask for ≥ 6 s (a lease renewed every second at least)")
    return {NODE_MONITOR_GRACE_ENV: str(grace_s), LEASE_ENV: str(max(4, round(grace_s * 2 / 3)))}


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


def read_scenario_nodes(scenario_dir: Path) -> list[HollowNodeSpec]:
    """The scenario's nodes in MODEL.md §1 order, with nominal (largest) free CPU and memory."""
    if not (scenario_dir / "nodes.json").is_file():
        raise FileNotFoundError(
            f"{scenario_dir / 'nodes.json'} is missing: pass a scenario directory such as data/scenarios/7-21"
        )
    specs: list[HollowNodeSpec] = []
    for node in load_scenario(scenario_dir).nodes:
        if node.nominal_cpu_cores != math.floor(node.nominal_cpu_cores):
            raise ValueError(
                f"{scenario_dir / 'nodes.json'}: node type {node.node_type} has a largest cpu_availability of "
                f"{node.nominal_cpu_cores} cores; hollow nodes report whole cores, round it in the scenario"
            )
        specs.append(
            HollowNodeSpec(
                node.name, node.layer, node.node_type, node.cpu_type, int(node.nominal_cpu_cores),
                round(node.nominal_memory_bytes),
            )
        )  # fmt: skip
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


def hollow_node_argv(
    kubemark: str, kubeconfig: Path, node: HollowNodeSpec, ports: tuple[int, int], node_tmp: Path
) -> tuple[list[str], dict[str, str]]:
    """The kubemark command line and environment of one hollow node (kubelet and read-only ports given)."""
    kubelet_port, read_only_port = ports
    labels = ",".join(f"{k}={v}" for k, v in node.labels().items())
    node_tmp.mkdir(parents=True, exist_ok=True)
    argv = [
        kubemark, "--morph=kubelet", f"--name={node.name}", f"--kubeconfig={kubeconfig}",
        f"--kubelet-port={kubelet_port}", f"--kubelet-read-only-port={read_only_port}", f"--node-labels={labels}",
    ]  # fmt: skip
    env = {
        **hollow_timing_env(),
        "TMPDIR": str(node_tmp),
        "REACH_HOLLOW_CPU_CORES": str(node.cpu_cores),
        # Hollow nodes run a stub container manager: allocatable equals this capacity exactly.
        "REACH_HOLLOW_MEMORY_BYTES": str(node.memory_bytes),
    }
    return argv, env
