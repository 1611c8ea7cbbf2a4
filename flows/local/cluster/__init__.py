"""The local Kubernetes 1.20 control plane with hollow nodes, importable from the installed package.

Modules: :mod:`~flows.local.cluster.control_plane` (``LocalCluster``: etcd, API server,
controllers, hollow nodes, up/down), :mod:`~flows.local.cluster.hollow` (scenario nodes as
kubemark hollow nodes), :mod:`~flows.local.cluster.credentials` (keys, token, kubeconfig) and
:mod:`~flows.local.cluster.supervisor` (processes by PID, logs). The binaries are built by
``deploy/local/install.sh``. Only the migrator's adapter talks to the API server.
"""

from __future__ import annotations

from flows.local.cluster.control_plane import LocalCluster, Ports, default_bin_dir, default_state_dir
from flows.local.cluster.hollow import HollowNodeSpec, read_scenario_nodes

__all__ = ["HollowNodeSpec", "LocalCluster", "Ports", "default_bin_dir", "default_state_dir", "read_scenario_nodes"]
