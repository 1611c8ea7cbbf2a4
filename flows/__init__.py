"""The flows of reach: everything a user runs, one package per stage, and the pipeline flow that chains them.

``pipeline.py`` (the only module at this level) is the ``reach-pipeline`` Prefect flow: ingest →
validate → train → evaluate → gate → package. The stages: :mod:`flows.profiles` (profile
ingestion), :mod:`flows.training`, :mod:`flows.evaluation` (held-out evaluation and the gate),
:mod:`flows.release` (packaging, serving, blue/green redeploy, Prefect deployments),
:mod:`flows.loop` (the closed loop on one machine), :mod:`flows.local` (process registry, local
cluster, paths) and :mod:`flows.cli` (the ``reach`` command line, which only the console script
imports). flows composes ceenv, bento and migrator; it never imports the Kubernetes or
Prometheus clients itself (the migrator's adapter does).
"""
