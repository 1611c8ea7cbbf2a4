"""The migrator's only contact with the Kubernetes API: reads snapshots, patches, deletes, emits Events.

``KubeOps`` implements the actuator's ``ClusterOps`` protocol with the official ``kubernetes``
client and converts API objects into :mod:`migrator.snapshot` dataclasses (with the scheduling
constraints :mod:`migrator.fit` judges: required node affinity and pod anti-affinity, topology
spread, host ports, the node's allocatable pods), so that no other module
of the migrator imports ``kubernetes``. PodDisruptionBudgets are read through the dynamic client:
``policy/v1`` where the server has it, else ``policy/v1beta1`` (Kubernetes 1.20). API failures are
left as they are (the server away, 5xx, 429, a timeout: the next cycle tries again), except a 401 or
403 on a read or a write, which does not pass by itself: it becomes
:class:`migrator.snapshot.ClusterAccessDenied` naming the call, the server's words and the fix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.utils import parse_quantity

from migrator.lease import LeaseConflict, LeaseRecord
from migrator.snapshot import (
    ANNOTATION_TEMPORARY_CORDON,
    TAINT_TEMPORARY_CORDON,
    ClusterAccessDenied,
    ClusterSnapshot,
    HostPort,
    LabelSelector,
    NodeInfo,
    NodeSelectorTerm,
    PdbInfo,
    PodAffinityTerm,
    PodInfo,
    SelectorRequirement,
    SpreadConstraint,
    Taint,
    Toleration,
    temporary_cordons,
)

DEFAULT_REQUEST_TIMEOUT_S = 15.0  # MigratorSettings.api_timeout_s
TAINT_WRITE_ATTEMPTS = 5  # a node written by someone else between our read and our write: read again


def make_api_client(kubeconfig: str | None) -> client.ApiClient:
    """An API client from a kubeconfig file, or from the in-cluster service account when None."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


ACCESS_DENIED_STATUSES = (401, 403)


def _server_message(exc: ApiException) -> str:
    """The API server's own words of a refusal (its Status ``message``: RBAC's, or an admission webhook's)."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        return ""


@contextlib.contextmanager
def _access_checked(what: str, namespace: str = "") -> Iterator[None]:
    """Turn a 401/403 into :class:`ClusterAccessDenied` naming the call, the server's words and the fix.

    Everything else (the server away, 5xx, 429, a timeout) is left as it is: it may pass by itself.
    """
    try:
        yield
    except ApiException as exc:
        if exc.status not in ACCESS_DENIED_STATUSES:
            raise
        where = f" in namespace {namespace}" if namespace else " (cluster-wide)"
        said = _server_message(exc)
        fix = (
            "the kubeconfig's credentials are not accepted; renew them"
            if exc.status == 401
            else "grant the migrator's ServiceAccount this permission (deploy/k8s/rbac.yaml: its Role must be in "
            "the application's namespace) or use a kubeconfig that has it; if an admission policy refused it (the "
            "server's words say which), the cluster does not allow this migration"
        )
        detail = f"{exc.status} {exc.reason}" + (f": {said}" if said else "")
        raise ClusterAccessDenied(f"the API server refused to {what}{where} ({detail}): {fix}") from exc


def _parse_quantity(text: str) -> Any:
    """The client's exact Decimal parser (the kubernetes package has no type hints)."""
    return parse_quantity(text)  # type: ignore[no-untyped-call]


def _millicores(quantity: object) -> float:
    return float(_parse_quantity(str(quantity)) * 1000) if quantity is not None else 0.0


def _bytes(quantity: object) -> float:
    return float(_parse_quantity(str(quantity))) if quantity is not None else 0.0


def _condition_true(conditions: list[Any] | None, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in conditions or [])


def node_info(node: Any) -> NodeInfo:
    allocatable = node.status.allocatable or {}
    taints = tuple(Taint(t.key, t.value or "", t.effect) for t in node.spec.taints or [])
    return NodeInfo(
        name=node.metadata.name,
        allocatable_cpu_millicores=_millicores(allocatable.get("cpu")),
        allocatable_memory_bytes=_bytes(allocatable.get("memory")),
        labels=dict(node.metadata.labels or {}),
        unschedulable=bool(node.spec.unschedulable),
        ready=_condition_true(node.status.conditions, "Ready"),
        taints=taints,
        annotations=dict(node.metadata.annotations or {}),
        allocatable_pods=int(_parse_quantity(str(allocatable["pods"]))) if allocatable.get("pods") else None,
    )


def _requirements(items: list[Any] | None) -> tuple[SelectorRequirement, ...]:
    return tuple(SelectorRequirement(r.key, r.operator, tuple(r.values or ())) for r in items or [])


def _model_selector(selector: Any) -> LabelSelector:
    """A V1LabelSelector; a missing one selects no pod, as in the scheduler."""
    if selector is None:
        return LabelSelector({}, (SelectorRequirement("", "In", ()),))
    return LabelSelector(dict(selector.match_labels or {}), _requirements(selector.match_expressions))


def _scheduling_constraints(spec: Any) -> dict[str, Any]:
    """Required node affinity, required pod anti-affinity, topology spread and host ports of a pod spec."""
    affinity = spec.affinity
    node_aff = affinity.node_affinity if affinity else None
    required = node_aff.required_during_scheduling_ignored_during_execution if node_aff else None
    terms = tuple(
        NodeSelectorTerm(_requirements(t.match_expressions), _requirements(t.match_fields))
        for t in (required.node_selector_terms if required else None) or []
    )
    anti = affinity.pod_anti_affinity if affinity else None
    anti_terms = tuple(
        PodAffinityTerm(_model_selector(t.label_selector), t.topology_key, tuple(t.namespaces or ()))
        for t in (anti.required_during_scheduling_ignored_during_execution if anti else None) or []
    )
    spread = tuple(
        SpreadConstraint(int(c.max_skew), c.topology_key, c.when_unsatisfiable, _model_selector(c.label_selector))
        for c in spec.topology_spread_constraints or []
    )
    ports = tuple(
        HostPort(int(p.host_port), p.protocol or "TCP", p.host_ip or "")
        for c in spec.containers or []
        for p in c.ports or []
        if p.host_port
    )
    return {
        "required_node_affinity": terms,
        "required_anti_affinity": anti_terms,
        "topology_spread": spread,
        "host_ports": ports,
    }


def pod_info(pod: Any) -> PodInfo:
    cpu_m = mem_b = 0.0
    for container in pod.spec.containers or []:
        requests = (container.resources.requests if container.resources else None) or {}
        cpu_m += _millicores(requests.get("cpu"))
        mem_b += _bytes(requests.get("memory"))
    owner = next((o for o in pod.metadata.owner_references or [] if o.controller), None)
    tolerations = tuple(
        Toleration(t.key or "", t.operator or "Equal", t.value or "", t.effect or "")
        for t in pod.spec.tolerations or []
    )
    created = pod.metadata.creation_timestamp
    return PodInfo(
        name=pod.metadata.name,
        namespace=pod.metadata.namespace,
        node_name=pod.spec.node_name or "",
        labels=dict(pod.metadata.labels or {}),
        cpu_request_millicores=cpu_m,
        memory_request_bytes=mem_b,
        ready=_condition_true(pod.status.conditions if pod.status else None, "Ready"),
        terminating=pod.metadata.deletion_timestamp is not None,
        phase=(pod.status.phase if pod.status else None) or "Pending",
        owner_kind=owner.kind if owner else "",
        owner_name=owner.name if owner else "",
        node_selector=dict(pod.spec.node_selector or {}),
        tolerations=tolerations,
        annotations=dict(pod.metadata.annotations or {}),
        created_at_s=created.timestamp() if created else 0.0,
        **_scheduling_constraints(pod.spec),
    )


def patch_cordon(
    core: client.CoreV1Api, node_name: str, mark: str | None, value: str | None, timeout_s: float | None = None
) -> None:
    """The one cordon implementation: cordon ``node_name`` (``value`` set) or lift it (``None``).

    ``mark`` names the annotation that records who cordoned the node and why, so that whoever lifts
    it (or cleans up after a crash) touches only its own cordons.
    """
    annotations = {mark: value} if mark else {}
    core.patch_node(
        node_name,
        {"metadata": {"annotations": annotations}, "spec": {"unschedulable": True if value else None}},
        _request_timeout=timeout_s,
    )


TaintChange = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def change_taints(
    core: client.CoreV1Api, node_name: str, change: TaintChange, timeout_s: float | None, node: Any = None
) -> None:
    """Change a node's taints, written only over the node as read: nobody's taint written meanwhile is lost.

    A patch replaces a node's taint list whole, so the write carries the ``resourceVersion`` of the
    node it changed (``node`` when the caller listed it already, else a fresh read). When the node
    lifecycle controller or an admin wrote the node in between (409 Conflict), the node is read
    again and the change made again, up to :data:`TAINT_WRITE_ATTEMPTS` times. No write when
    nothing changes.
    """
    for _ in range(TAINT_WRITE_ATTEMPTS):
        if node is None:
            with _access_checked("get nodes"):
                node = core.read_node(node_name, _request_timeout=timeout_s)
        taints = [core.api_client.sanitize_for_serialization(t) for t in node.spec.taints or []]
        changed = change(taints)
        if changed == taints:
            return
        body = {"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": changed}}
        try:
            with _access_checked("patch nodes"):
                core.patch_node(node_name, body, _request_timeout=timeout_s)
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
        node = None  # written meanwhile: read it again
    raise RuntimeError(
        f"node {node_name} changed under every one of {TAINT_WRITE_ATTEMPTS} attempts to write its taints; "
        "the next cycle tries again"
    )


def _is_ours(taint: Mapping[str, Any]) -> bool:
    return taint.get("key") == TAINT_TEMPORARY_CORDON and taint.get("effect") == "NoSchedule"


def _ours_set(migration_id: str) -> TaintChange:
    """The taint list with our cordon for ``migration_id`` (the server allows one taint per key and effect)."""
    hold = {"key": TAINT_TEMPORARY_CORDON, "value": migration_id, "effect": "NoSchedule"}
    return lambda taints: taints if hold in taints else [*(t for t in taints if not _is_ours(t)), hold]


def _ours_removed(migration_id: str | None) -> TaintChange:
    """The taint list without our cordon (``migration_id`` None: whatever its id)."""
    return lambda taints: [t for t in taints if not (_is_ours(t) and migration_id in (None, t.get("value")))]


def lift_temporary_cordon(core: client.CoreV1Api, node: Any, migration_id: str | None, timeout_s: float | None) -> None:
    """Lift the migrator's cordon from ``node`` (an API object as listed): its taint (``migration_id`` None: any of
    ours), and a pre-taint cordon (``spec.unschedulable`` plus the annotation ``reach.io/temporary-cordon``)."""
    change_taints(core, node.metadata.name, _ours_removed(migration_id), timeout_s, node)
    if ANNOTATION_TEMPORARY_CORDON in (node.metadata.annotations or {}):
        with _access_checked("patch nodes"):
            patch_cordon(core, node.metadata.name, ANNOTATION_TEMPORARY_CORDON, None, timeout_s)


def label_selector(raw: Mapping[str, Any] | None) -> LabelSelector:
    raw = raw or {}
    expressions = tuple(
        SelectorRequirement(e["key"], e["operator"], tuple(e.get("values") or ()))
        for e in raw.get("matchExpressions") or []
    )
    return LabelSelector(dict(raw.get("matchLabels") or {}), expressions)


def selector_string(match_labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


class _TimedCalls:
    """An API client whose calls without a timeout get ``timeout_s`` (for the dynamic client's discovery)."""

    def __init__(self, api_client: client.ApiClient, timeout_s: float | None) -> None:
        self._api_client = api_client
        self._timeout_s = timeout_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api_client, name)

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("_request_timeout"):
            kwargs["_request_timeout"] = self._timeout_s
        return self._api_client.call_api(*args, **kwargs)


class KubeOps:
    """Kubernetes operations of the migrator in one namespace (see ``migrator.actuator.ClusterOps``)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        pod_selector: str,
        event_component: str,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    ):
        self.timeout = request_timeout_s  # every call: a half-open connection must not hang a migration
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.api_client = api_client
        self.namespace = namespace
        self.pod_selector = pod_selector
        self.event_component = event_component
        self._pdb_resource: Any = None

    # ---- reads ------------------------------------------------------------------------------
    def snapshot(self) -> ClusterSnapshot:
        with _access_checked("list nodes"):
            nodes = tuple(node_info(n) for n in self.core.list_node(_request_timeout=self.timeout).items)
        with _access_checked("list pods"):
            every = self.core.list_pod_for_all_namespaces(_request_timeout=self.timeout).items
        pods = tuple(pod_info(p) for p in every)
        with _access_checked("list pods", self.namespace):
            app = self.core.list_namespaced_pod(
                self.namespace, label_selector=self.pod_selector, _request_timeout=self.timeout
            ).items
        with _access_checked("list poddisruptionbudgets", self.namespace):
            pdbs = tuple(self.pdbs())
        return ClusterSnapshot(nodes, pods, tuple(pod_info(p) for p in app), pdbs)

    def get_pod(self, name: str) -> PodInfo | None:
        try:
            with _access_checked("get pods", self.namespace):
                return pod_info(self.core.read_namespaced_pod(name, self.namespace, _request_timeout=self.timeout))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_pods(self, match_labels: Mapping[str, str]) -> list[PodInfo]:
        with _access_checked("list pods", self.namespace):
            items = self.core.list_namespaced_pod(
                self.namespace, label_selector=selector_string(match_labels), _request_timeout=self.timeout
            ).items
        return [pod_info(p) for p in items]

    def replicaset_selector(self, name: str) -> dict[str, str]:
        with _access_checked("get replicasets", self.namespace):
            rs = self.apps.read_namespaced_replica_set(name, self.namespace, _request_timeout=self.timeout)
        return dict(rs.spec.selector.match_labels or {})

    def replicaset_replicas(self, name: str) -> int | None:
        """The ReplicaSet's wanted replicas; None when it does not exist (404), a 401/403 is ClusterAccessDenied."""
        try:
            with _access_checked("get replicasets", self.namespace):
                rs = self.apps.read_namespaced_replica_set(name, self.namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return int(rs.spec.replicas or 0)

    def _pdb_api(self) -> tuple[Any, bool]:
        """The PDB resource of the newest policy group the server serves, and whether it is v1."""
        if self._pdb_resource is None:
            # Its discovery requests take no timeout of their own: give every call the migrator's.
            dynamic = DynamicClient(_TimedCalls(self.api_client, self.timeout))  # type: ignore[no-untyped-call]
            for version in ("policy/v1", "policy/v1beta1"):
                try:
                    self._pdb_resource = (
                        dynamic.resources.get(api_version=version, kind="PodDisruptionBudget"),
                        version,
                    )
                    break
                except ResourceNotFoundError:
                    continue
            else:
                raise RuntimeError("the server serves PodDisruptionBudget in neither policy/v1 nor policy/v1beta1")
        resource, version = self._pdb_resource
        return resource, version == "policy/v1"

    def pdbs(self) -> list[PdbInfo]:
        resource, is_v1 = self._pdb_api()
        result = []
        for item in resource.get(namespace=self.namespace, _request_timeout=self.timeout).to_dict().get("items", []):
            status = item.get("status") or {}
            result.append(
                PdbInfo(
                    name=item["metadata"]["name"],
                    namespace=item["metadata"]["namespace"],
                    selector=label_selector((item.get("spec") or {}).get("selector")),
                    disruptions_allowed=int(status.get("disruptionsAllowed") or 0),
                    empty_selector_matches_all=is_v1,
                )
            )
        return result

    # ---- writes -----------------------------------------------------------------------------
    def patch_pod_metadata(
        self, name: str, labels: Mapping[str, str | None], annotations: Mapping[str, str | None]
    ) -> None:
        metadata: dict[str, Any] = {}
        if labels:
            metadata["labels"] = dict(labels)
        if annotations:
            metadata["annotations"] = dict(annotations)
        if metadata:
            with _access_checked("patch pods", self.namespace):
                self.core.patch_namespaced_pod(
                    name, self.namespace, {"metadata": metadata}, _request_timeout=self.timeout
                )

    def list_nodes(self) -> list[NodeInfo]:
        """Every node (one list call: no pods, no PDBs)."""
        return [node_info(n) for n in self._node_objects()]

    def _node_objects(self) -> list[Any]:
        with _access_checked("list nodes"):
            return list(self.core.list_node(_request_timeout=self.timeout).items)

    def cordon(self, node_names: Sequence[str], migration_id: str) -> None:
        """Give each node this migration's temporary cordon, a ``reach.io/temporary-cordon=<id>:NoSchedule`` taint.

        One list call, then a patch per node that lacks it, written over the listed ``resourceVersion``
        (:func:`change_taints`). The API server allows one taint per key and effect, so a cordon of
        ours with another id (a leftover) is taken over, not doubled. Stops at the first failure
        (the migration then rolls back, lifting what it cordoned).
        """
        listed = {n.metadata.name: n for n in self._node_objects()}
        for name in node_names:
            change_taints(self.core, name, _ours_set(migration_id), self.timeout, listed.get(name))

    def lift_cordon(self, node_names: Sequence[str] | None, migration_id: str | None) -> None:
        """Remove this migration's cordon (``migration_id`` None: any of ours) from the named nodes (None: every node).

        One list call, then a patch per node that carries it; a pre-taint cordon (``spec.unschedulable``
        plus the annotation ``reach.io/temporary-cordon``) is lifted the way it was set. Every node is
        tried; then the failures, if any, are raised together (a refusal as
        :class:`ClusterAccessDenied`), so that one node that cannot be written leaves no other one cordoned.
        """
        failures: list[tuple[str, Exception]] = []
        for node in self._node_objects():
            name = node.metadata.name
            if node_names is not None and name not in node_names:
                continue
            try:
                lift_temporary_cordon(self.core, node, migration_id, self.timeout)
            except Exception as exc:  # the others must still be lifted
                failures.append((name, exc))
        if failures:
            denied = next((exc for _, exc in failures if isinstance(exc, ClusterAccessDenied)), None)
            detail = "; ".join(f"node {name}: {exc}" for name, exc in failures)
            raise denied if denied is not None else RuntimeError(f"cordons not lifted: {detail}")

    def delete_pod(self, name: str) -> None:
        try:
            with _access_checked("delete pods", self.namespace):
                self.core.delete_namespaced_pod(name, self.namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def force_delete_pod(self, name: str) -> None:
        """Remove a pod from the API at once (grace period 0): only for a pod whose node is not Ready."""
        try:
            with _access_checked("delete pods", self.namespace):
                self.core.delete_namespaced_pod(
                    name, self.namespace, grace_period_seconds=0, _request_timeout=self.timeout
                )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def emit_event(self, pod_name: str, reason: str, message: str, warning: bool = False) -> None:
        """A Kubernetes Event on the pod; failures to record it never stop the migrator."""
        now = dt.datetime.now(dt.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{pod_name}.reach-"),
            involved_object=client.V1ObjectReference(kind="Pod", name=pod_name, namespace=self.namespace),
            reason=reason,
            message=message[:1000],
            type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=self.event_component),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        # An API server that refuses or drops the connection (urllib3's HTTPError, OSError) is no reason to stop.
        with contextlib.suppress(ApiException, urllib3.exceptions.HTTPError, OSError):
            self.core.create_namespaced_event(self.namespace, event, _request_timeout=5)

    def server_version(self) -> str:
        return str(client.VersionApi(self.api_client).get_code().git_version)


class ClusterAdmin:
    """What the closed loop and the local demo do to a cluster besides migrating: the app's Deployments,
    scaling, cordons, evictions (a drain), and the nodes' readiness. Pods and nodes come back as
    :mod:`migrator.snapshot` data, so no caller outside this module touches a Kubernetes object."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    # ---- reads ------------------------------------------------------------------------------
    def api_ready(self) -> bool:
        """The API server answers ``/readyz`` with 200 (etcd reachable, post-start hooks done)."""
        method, url, headers, body, post = self.api_client.param_serialize(
            "GET", "/readyz", auth_settings=["BearerToken"]
        )
        response = self.api_client.call_api(method, url, headers, body, post, _request_timeout=5)
        return bool(response.status == 200)

    def nodes(self) -> list[NodeInfo]:
        return [node_info(n) for n in self.core.list_node().items]

    def lease_renewed_s(self, node_name: str) -> float | None:
        """When the node's kubelet last renewed its Lease in ``kube-node-lease`` (unix s); None when unknown.

        The node's Ready condition lags a restarted kubelet (a node killed and restarted before it was
        declared NotReady still reads Ready from the dead one); a renewal after the restart does not."""
        status, document = _raw_json(self.api_client, "GET", _lease_path("kube-node-lease", node_name), timeout_s=5)
        return _lease_record(document).renewed_at_s if status == 200 else None

    def ready_node_names(self) -> set[str]:
        return {n.name for n in self.nodes() if n.ready}

    def pods(self, namespace: str, selector: str) -> list[PodInfo]:
        return [pod_info(p) for p in self.core.list_namespaced_pod(namespace, label_selector=selector).items]

    # ---- writes -----------------------------------------------------------------------------
    def set_cordon(self, node_name: str, cordoned: bool, mark: str | None = None) -> None:
        patch_cordon(self.core, node_name, mark, "true" if cordoned else None)

    def lift_migrator_cordons(self) -> list[str]:
        """Remove every temporary cordon a migrator left (its taint, or a pre-taint cordon); the nodes it was on.

        The demo and the experiments reset the cluster between arms with it: a migrator killed (or
        interrupted) mid-migration leaves its taint on every node but the target, and an arm without
        a migrator (the default scheduler's) would never clean it up.
        """
        lifted = []
        for node in self.core.list_node().items:
            info = node_info(node)
            if temporary_cordons(info):
                lift_temporary_cordon(self.core, node, None, None)
                lifted.append(info.name)
        return lifted

    def evict(self, pod_name: str, namespace: str) -> None:
        """An Eviction (``policy/v1beta1`` body, served by Kubernetes 1.20 and later): PDBs are honoured."""
        body: Any = {
            "apiVersion": "policy/v1beta1",
            "kind": "Eviction",
            "metadata": {"name": pod_name, "namespace": namespace},
        }
        self.core.create_namespaced_pod_eviction(pod_name, namespace, body)

    def apply_deployment(self, namespace: str, manifest: Any) -> None:
        """Create a Deployment, or replace the one of that name."""
        try:
            self.apps.create_namespaced_deployment(namespace, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.apps.replace_namespaced_deployment(manifest["metadata"]["name"], namespace, manifest)

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})

    def deployments_settled(self, namespace: str, selector: str) -> bool:
        """Every selected Deployment has all its replicas Ready and no pod is terminating or surplus."""
        deployments = self.apps.list_namespaced_deployment(namespace, label_selector=selector).items
        pods = self.pods(namespace, selector)
        wanted: int = 0
        for d in deployments:
            wanted += int(d.spec.replicas or 0) if d.spec else 0
        ready = all(
            d.spec is not None and ((d.status.ready_replicas if d.status else None) or 0) == d.spec.replicas
            for d in deployments
        )
        return ready and not any(p.terminating for p in pods) and len(pods) == wanted

    def delete_deployments(self, namespace: str, selector: str) -> None:
        """Delete the selected Deployments and their ReplicaSets (foreground: no ReplicaSet recreates a pod)."""
        self.apps.delete_collection_namespaced_deployment(
            namespace, label_selector=selector, propagation_policy="Foreground"
        )
        self.apps.delete_collection_namespaced_replica_set(
            namespace, label_selector=selector, propagation_policy="Foreground"
        )

    def controllers_left(self, namespace: str, selector: str) -> int:
        """Deployments plus ReplicaSets still matching ``selector``."""
        left = len(self.apps.list_namespaced_replica_set(namespace, label_selector=selector).items)
        return left + len(self.apps.list_namespaced_deployment(namespace, label_selector=selector).items)

    def delete_pods_now(self, namespace: str, selector: str) -> None:
        """Delete the selected pods without grace (hollow nodes run nothing to stop)."""
        self.core.delete_collection_namespaced_pod(namespace, label_selector=selector, grace_period_seconds=0)


def _json_or_message(raw: bytes | str | None) -> dict[str, Any]:
    """A response body as JSON, or (a proxy's HTML page, an empty body) as a ``message`` naming what came back."""
    if not raw:
        return {}
    try:
        document = json.loads(raw)
    except ValueError:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        return {"message": f"a body that is not JSON: {text[:200]!r}"}
    return document if isinstance(document, dict) else {"message": str(document)[:200]}


def _micro_time(unix_s: float) -> str:
    """A Kubernetes ``MicroTime`` (RFC 3339 with exactly six fractional digits, UTC), as the API server parses it."""
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _raw_json(
    api_client: client.ApiClient, method: str, path: str, body: Mapping[str, Any] | None = None, timeout_s: float = 5
) -> tuple[int, dict[str, Any]]:
    """One request by path with a JSON body, bypassing the typed client: the status and the body (never raises for
    an HTTP status; a body that is not JSON comes back as a ``message``)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"} if body is not None else None
    serialized = api_client.param_serialize(
        method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
    )
    request_method, url, header_params, request_body, post = serialized
    try:
        response = api_client.call_api(
            request_method, url, header_params, request_body, post, _request_timeout=timeout_s
        )
    except ApiException as exc:
        return int(exc.status or 0), _json_or_message(exc.body)
    return int(response.status), _json_or_message(response.read())  # type: ignore[no-untyped-call]


def _lease_path(namespace: str, name: str = "") -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases" + (f"/{name}" if name else "")


def _lease_record(document: Mapping[str, Any]) -> LeaseRecord:
    spec = document.get("spec") or {}
    renewed = spec.get("renewTime")
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_s=float(spec.get("leaseDurationSeconds") or 0),
        version=str((document.get("metadata") or {}).get("resourceVersion") or ""),
        renewed_at_s=dt.datetime.fromisoformat(str(renewed)).timestamp() if renewed else None,
        transitions=int(spec.get("leaseTransitions") or 0),
        acquired=str(spec.get("acquireTime") or ""),
    )


class KubeLeaseStore:
    """The migrators' Lease (:mod:`migrator.lease`) in ``coordination.k8s.io/v1``, written as JSON.

    Raw requests, not the typed client: the client writes a ``datetime`` with ``isoformat()``, which drops the
    fraction at a whole second, and the API server's ``MicroTime`` then refuses the Lease.
    """

    def __init__(
        self, api_client: client.ApiClient, namespace: str, name: str, timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        wall_s: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.api_client = api_client
        self.namespace = namespace
        self.name = name
        self.timeout_s = timeout_s
        self.wall_s = wall_s
        self.where = f"{namespace}/{name}"

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        return _raw_json(self.api_client, method, path, body, self.timeout_s)

    def _checked(self, what: str, status: int, document: Mapping[str, Any]) -> None:
        """A refusal that will not pass by itself names the fix; any other failure is left to the next turn."""
        if status in ACCESS_DENIED_STATUSES:
            said = str(document.get("message") or "")
            raise ClusterAccessDenied(
                f"the API server refused to {what} the migrators' Lease {self.where} ({status}"
                + (f": {said}" if said else "")
                + "): grant the migrator's ServiceAccount get, create and update on leases (coordination.k8s.io) in "
                f"namespace {self.namespace} (deploy/k8s/rbac.yaml's Role reach-migrator-lease), or set "
                "REACH_MIGRATOR_LEASE_NAMESPACE to a namespace where it may; only with no other migrator on the "
                "cluster, REACH_MIGRATOR_LEADER_ELECTION=false"
            )
        raise RuntimeError(
            f"could not {what} the migrators' Lease {self.where}: HTTP {status} {document.get('message') or ''}".strip()
        )

    def _spec(self, holder: str, duration_s: float, acquired: str | None, transitions: int) -> dict[str, Any]:
        """The Lease's spec renewed now; ``acquired`` None: acquired now, else the acquireTime to keep."""
        now = _micro_time(self.wall_s())
        spec: dict[str, Any] = {
            "holderIdentity": holder or None,
            "leaseDurationSeconds": max(1, math.ceil(duration_s)),  # never shorter than the settings ask
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        if acquired is None or acquired:
            spec["acquireTime"] = now if acquired is None else acquired
        return spec

    def _metadata(self, version: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.name, "namespace": self.namespace, "labels": {"app.kubernetes.io/name": "reach-migrator"}
        }  # fmt: skip
        if version is not None:
            metadata["resourceVersion"] = version
        return metadata

    @property
    def _path(self) -> str:
        return _lease_path(self.namespace, self.name)

    def read(self) -> LeaseRecord | None:
        status, document = self._call("GET", self._path)
        if status == 404:
            return None
        if status != 200:
            self._checked("read", status, document)
        return _lease_record(document)

    def create(self, holder: str, duration_s: float) -> LeaseRecord:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": self._metadata(),
            "spec": self._spec(holder, duration_s, acquired=None, transitions=0),
        }
        status, document = self._call("POST", _lease_path(self.namespace), body)
        if status == 409:
            raise LeaseConflict(f"the Lease {self.where} was created by another migrator first")
        if status not in (200, 201):
            self._checked("create", status, document)
        return _lease_record(document)

    def write(self, current: LeaseRecord, holder: str, duration_s: float) -> LeaseRecord:
        taken = holder != current.holder and bool(holder)
        body = {  # a PUT replaces the whole object: what is not changed is written as it was
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": self._metadata(current.version),
            "spec": self._spec(
                holder,
                duration_s,
                acquired=None if taken else current.acquired,
                transitions=current.transitions + taken,
            ),
        }
        status, document = self._call("PUT", self._path, body)
        if status in (404, 409):  # written (or deleted) by someone else since our read
            raise LeaseConflict(f"the Lease {self.where} changed since it was read")
        if status != 200:
            self._checked("write", status, document)
        return _lease_record(document)
