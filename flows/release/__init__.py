"""Release of policies: packaging as bentos, blue/green serving, the redeploy and retrain flows, Prefect deployments.

:mod:`.packaging` saves a gated artefact into the BentoML store and builds its bento (labelled
``gate=passed|refused``); :mod:`.serving` runs bentos blue/green on loopback behind the endpoint
file the migrator follows; :mod:`.redeploy` holds the ``reach-redeploy`` and ``reach-retrain``
flows; :mod:`.deployments` serves the Prefect deployments (``reach up``). It imports ceenv, bento,
flows.evaluation, flows.local and the pipeline flow; never flows.loop or the CLI.
"""
