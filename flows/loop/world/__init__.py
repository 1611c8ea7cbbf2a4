"""The world: a request-level SimPy emulation of the application on a placement, the twin's counterpart.

The core is pure (SimPy and numpy; see the import contract in pyproject.toml): :mod:`.model` (the
cluster, the pods, the options), :mod:`.draws` (seeded randomness), :mod:`.emulator` (the SimPy
processes), :mod:`.metrics` (Istio- and Goldpinger-shaped counters), :mod:`.traces` (Jaeger JSON)
and :mod:`.measure` (``reach world measure``). The live adapter, which runs the world in real time
on the placement read from the API server, lives outside the core in :mod:`flows.loop`.
"""
