"""ceenv: the pure cloud-edge simulator core of reach (numpy, numba, gymnasium and pydantic only).

Importing the package registers the Gymnasium environments ``ceenv/CloudEdge-v1`` (observation
version 3, the default), ``ceenv/CloudEdge-v2`` (observation version 4: size-agnostic node, pod
and pair rows padded to declared limits, for the pod×node policy of :mod:`bento.pod_node`) and
``ceenv/CloudEdge-v0`` (REACH's observation, version 1), the way
Gymnasium's own packages register theirs; nothing else happens at import time. Both run REACH's
13-29 cluster with ``aggregator_sequential`` when ``gym.make`` gets no other scenario.
"""

from __future__ import annotations

from importlib.util import find_spec

ENV_ID = "ceenv/CloudEdge-v1"
ENV_ID_REACH_OBSERVATION = "ceenv/CloudEdge-v0"
ENV_ID_POD_NODE = "ceenv/CloudEdge-v2"

# The migrator's image carries ceenv.schema without gymnasium (and numpy): nothing to register there.
if find_spec("gymnasium") is not None:
    from gymnasium.envs.registration import register, registry

    if ENV_ID not in registry:
        register(id=ENV_ID, entry_point="ceenv.env:CloudEdgeEnv", kwargs={"observation_version": 3})
    if ENV_ID_REACH_OBSERVATION not in registry:
        register(id=ENV_ID_REACH_OBSERVATION, entry_point="ceenv.env:CloudEdgeEnv", kwargs={"observation_version": 1})
    if ENV_ID_POD_NODE not in registry:
        register(id=ENV_ID_POD_NODE, entry_point="ceenv.env:CloudEdgeEnv", kwargs={"observation_version": 4})

__all__ = ["ENV_ID", "ENV_ID_POD_NODE", "ENV_ID_REACH_OBSERVATION"]
