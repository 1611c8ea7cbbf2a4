"""The wire payload of ``POST /get_action`` (MODEL.md §4), shared by the service and the migrator.

Pydantic only, no numpy: the migrator imports this module and nothing else of :mod:`ceenv`.
Extra fields are allowed in both directions (REACH clients send their own metadata); the fields
below keep REACH's meaning. Units: free CPU in millicores, free memory in GiB.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
BYTES_PER_GIB = 2**30  # memory_availability is in GiB on the wire


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class NodeState(_Open):
    """Free resources of one node as the cluster reports them."""

    node_name: str = Field(description="The node's name; must match the key it is listed under.")
    cpu_availability: float = Field(ge=0, description="Free CPU in millicores.")
    memory_availability: float = Field(ge=0, description="Free memory in GiB (2^30 bytes).")


class PodRef(_Open):
    """A running pod and the node it runs on."""

    pod_name: str = Field(min_length=1)
    node_name: str = Field(min_length=1)


class ServiceState(_Open):
    """The pods of one service."""

    service_name: str
    pods: list[PodRef] = Field(default_factory=list)


class ClusterState(_Open):
    """Nodes and services keyed by name, as REACH's pod-migrator sends them."""

    nodes: dict[str, NodeState]
    services: dict[str, ServiceState]


class ActionRequest(_Open):
    """Request body of ``POST /get_action``."""

    cluster_state: ClusterState
    pod_deployable: dict[str, list[str]] = Field(
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
