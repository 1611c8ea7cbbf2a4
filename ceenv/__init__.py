"""ceenv: the pure cloud-edge simulator core of reach (numpy, gymnasium and pydantic only).

Importing the package registers the Gymnasium environment ``ceenv/CloudEdge-v0``, the way
Gymnasium's own packages register theirs; nothing else happens at import time.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENV_ID = "ceenv/CloudEdge-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="ceenv.env:CloudEdgeEnv")

__all__ = ["ENV_ID"]
