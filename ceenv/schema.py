"""The wire payload of ``POST /get_action`` (MODEL.md §4), shared by the service and the migrator.

Pydantic only, no numpy: the migrator imports this module and nothing else of :mod:`ceenv`.
Extra fields are allowed in both directions (REACH clients send their own metadata); the fields
below keep REACH's meaning. Units: free CPU in millicores, free memory in GiB. Numbers must be
finite (JSON has no infinity, but Python's parser reads ``Infinity`` and ``NaN``). Numbers and flags
are strict: ``true`` is not 1 millicore, ``"12"`` is not a number and ``1`` is not ``true``, so a
client's type mistake is an error, not a guess. Names are at most :data:`MAX_NAME_CHARS` characters
(Kubernetes' own limit), so an error that quotes one is short.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 1
BYTES_PER_GIB = 2**30  # memory_availability is in GiB on the wire
MAX_NAME_CHARS = 253  # a Kubernetes object name (DNS subdomain) is at most 253 characters
# The optional ``measured`` block (MODEL.md §4): its own version, so that it can grow without
# touching REACH's fields. Version 1 is the payload without it.
MEASURED_SCHEMA_VERSION = 2
MAX_MEASURED_DELAY_MS = 600_000.0  # ten minutes: anything longer is a broken probe, not a delay
MAX_MEASURED_BANDWIDTH_MBPS = 1e7  # 10 Tbit/s
MIN_MEASURED_BANDWIDTH_MBPS = 1e-3  # 1 kbit/s: below it the transfer costs overflow (a broken probe, not a link)

Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]
DelayMs = Annotated[float, Field(ge=0, le=MAX_MEASURED_DELAY_MS, allow_inf_nan=False, strict=True)]
# Inclusive bounds only: OpenAPI 3.0 (the service's document) has no numeric exclusiveMaximum. A NIC
# measured fully busy counts as MAX_MEASURED_UTILIZATION busy (ceenv.payload), not as no bandwidth at all.
MAX_MEASURED_UTILIZATION = 0.999
Utilization = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
BandwidthMbps = Annotated[
    float, Field(ge=MIN_MEASURED_BANDWIDTH_MBPS, le=MAX_MEASURED_BANDWIDTH_MBPS, allow_inf_nan=False, strict=True)
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class NodeState(_Open):
    """Free resources of one node as the cluster reports them."""

    node_name: Name = Field(description="The node's name; must match the key it is listed under.")
    cpu_availability: float = Field(ge=0, allow_inf_nan=False, strict=True, description="Free CPU in millicores.")
    memory_availability: float = Field(
        ge=0, allow_inf_nan=False, strict=True, description="Free memory in GiB (2^30 bytes)."
    )
    available: bool = Field(
        default=True,
        strict=True,
        description="False for a node that failed (NotReady or unreachable): its pods are listed so that they "
        "can be moved off, it is never a target, and its pods are evacuated before any other move. "
        "An optional reach extension; REACH clients that omit it mean true.",
    )


class PodRef(_Open):
    """A running pod and the node it runs on."""

    pod_name: Name = Field(min_length=1)
    node_name: Name = Field(min_length=1)


class ServiceState(_Open):
    """The pods of one service."""

    service_name: Name
    pods: list[PodRef] = Field(default_factory=list)


class ClusterState(_Open):
    """Nodes and services keyed by name, as REACH's pod-migrator sends them."""

    nodes: dict[Name, NodeState]
    services: dict[Name, ServiceState]


class MeasuredConditions(_Open):
    """Measured network conditions (optional; REACH's clients omit it and the nominal values apply).

    Every map is partial: a node or node pair it does not list keeps the nominal value of the
    scenario the policy was trained with (MODEL.md §1).
    """

    schema_version: int = Field(
        MEASURED_SCHEMA_VERSION,
        ge=MEASURED_SCHEMA_VERSION,
        le=MEASURED_SCHEMA_VERSION,
        strict=True,  # a JSON integer (MODEL.md §4: "schema_version": 2), not "2" or 2.0, like every number here
        description=f"Version of this block; this reach reads version {MEASURED_SCHEMA_VERSION}.",
    )
    node_delay_ms: dict[Name, dict[Name, DelayMs]] = Field(
        default_factory=dict,
        description="One-way delay from node (outer key) to node (inner key), ms; the diagonal is ignored (0).",
    )
    node_utilization: dict[Name, Utilization] = Field(
        default_factory=dict,
        description="Fraction of each node's NIC bandwidth used by background traffic, in [0, 1] "
        f"(above {MAX_MEASURED_UTILIZATION} counts as {MAX_MEASURED_UTILIZATION}).",
    )
    bandwidth_mbps: dict[Name, BandwidthMbps] = Field(
        default_factory=dict, description="Each node's NIC bandwidth, Mbit/s (replaces the node type's bandwidth)."
    )


class ActionRequest(_Open):
    """Request body of ``POST /get_action``."""

    cluster_state: ClusterState
    pod_deployable: dict[Name, list[Name]] = Field(
        default_factory=dict, description="For each pod, the nodes where it would fit now."
    )
    measured: MeasuredConditions | None = Field(
        None, description="Optional measured network conditions; absent = the nominal network (MODEL.md §4)."
    )


class ActionResponse(_Open):
    """Response of ``POST /get_action``: a move, or ``is_stop`` to keep the placement."""

    pod_name: str = ""
    target_node: str = ""
    is_stop: bool = Field(False, strict=True)

    @classmethod
    def stop(cls, **extra: object) -> ActionResponse:
        return cls(pod_name="", target_node="", is_stop=True, **extra)
