"""Local operations: the process registry, up/down/status of reach's servers, paths, and the local Kubernetes cluster.

:mod:`.processes` records every background process reach starts (stopped by PID, never by name);
:mod:`.ops` starts and stops the Prefect server and the deployment runner; :mod:`.paths` resolves
the data and output folders; :mod:`.cluster` runs a Kubernetes 1.20 control plane with hollow
nodes on loopback. It imports ceenv and (for the cluster's readiness) the migrator's adapter.
"""
