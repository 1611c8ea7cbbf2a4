"""Tests of the BentoML policy service (bento/): in-process, ASGI, bentoml serve, contract, packaging."""
