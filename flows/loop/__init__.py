"""The closed loop on one machine: the local demo, the latency exporter, REACH's experiments, the greedy stand-in.

:mod:`.settings` (what ``reach demo`` takes), :mod:`.demo` (cluster, Prometheus, exporter,
background migrator), :mod:`.run` (one bounded run), :mod:`.experiments` (the demo and the paired
experiments), :mod:`.app` and :mod:`.placement` (the app's Deployments and placements on the live
cluster), :mod:`.exporter`, :mod:`.standin`, :mod:`.policy` (which policy serves) and
:mod:`.report`. Every Kubernetes call goes through the migrator's adapter
(:class:`migrator.kube.ClusterAdmin`). It imports ceenv, migrator, flows.local and flows.release.
"""
