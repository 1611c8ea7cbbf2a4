"""The wire payload of ``POST /get_action`` (MODEL.md §4), shared by the service and the migrator.

Pydantic only, no numpy: the migrator imports this module and nothing else of :mod:`ceenv`.
Extra fields are allowed in both directions (REACH clients send their own metadata); the fields
below keep REACH's meaning. Units: free CPU in millicores, free memory in GiB. Numbers must be
finite (JSON has no infinity, but Python's parser reads ``Infinity`` and ``NaN``), and names are at
most :data:`MAX_NAME_CHARS` characters (Kubernetes' own limit), so an error that quotes one is short.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 1
BYTES_PER_GIB = 2**30  # memory_availability is in GiB on the wire
MAX_NAME_CHARS = 253  # a Kubernetes object name (DNS subdomain) is at most 253 characters

Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class NodeState(_Open):
    """Free resources of one node as the cluster reports them."""

    node_name: Name = Field(description="The node's name; must match the key it is listed under.")
    cpu_availability: float = Field(ge=0, allow_inf_nan=False, description="Free CPU in millicores.")
    memory_availability: float = Field(ge=0, allow_inf_nan=False, description="Free memory in GiB (2^30 bytes).")


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


class ActionRequest(_Open):
    """Request body of ``POST /get_action``."""

    cluster_state: ClusterState
    pod_deployable: dict[Name, list[Name]] = Field(
        default_factory=dict, description="For each pod, the nodes where it would fit now."
    )


class ActionResponse(_Open):
    """Response of ``POST /get_action``: a move, or ``is_stop`` to keep the placement."""

    pod_name: str = ""
    target_node: str = ""
    is_stop: bool = False

    @classmethod
    def stop(cls, **extra: object) -> ActionResponse:
        return cls(pod_name="", target_node="", is_stop=True, **extra)
