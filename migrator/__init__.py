"""The REACH migrator: a Kubernetes controller that observes, asks the policy, guards and migrates pods.

Layers (docs/migrator.md): ``snapshot`` (plain data), ``observe`` (REACH request), ``policy`` (HTTP
client), ``guards`` (typed refusals), ``actuator`` (make-before-break), ``controller`` (the loop and
modes), ``kube`` (the only module importing ``kubernetes``), ``metrics`` (the only module importing
``prometheus_api_client``), ``settings`` and ``app`` (wiring). Of the core it imports only
``ceenv.schema``.
"""
