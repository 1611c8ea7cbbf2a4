"""The reach policy service package: the policy artefact, its BentoML model store entry, the BentoML service.

See docs/service.md. Modules: ``artefact`` (policy on disk), ``policy`` (model card, compatibility check,
decision), ``store`` (save to / load from the BentoML model store), ``service`` (the ``@bentoml.service``).
Importing the package does nothing else.
"""
