"""Release of policies: packaging as bentos, blue/green serving, the redeploy and retrain flows, Prefect deployments.

:mod:`.packaging` saves a gated artefact into the BentoML store and builds its bento (labelled
``gate=passed|refused`` and with the cluster it serves); :mod:`.selection` says which bento may
serve which (scenario, workload); :mod:`.serving` runs bentos blue/green on loopback behind the
endpoint file the migrator follows; :mod:`.redeploy` holds the ``reach-redeploy`` and
``reach-retrain`` flows, whose analysis rule is :mod:`.analysis` and whose canary requests come
from :mod:`.canary`; :mod:`.deployments` serves the Prefect deployments (``reach up``);
:mod:`.images` builds the OCI images of the policy service and the migrator with buildah (``reach
images build``). It imports ceenv, bento, flows.evaluation, flows.local, the pipeline flow and the
migrator's adapters (Prometheus reads, the live cluster's request for the canary); never
flows.loop or the CLI.
"""
