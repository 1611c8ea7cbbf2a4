"""Fixtures of the release tests: bentos a test builds as gated are deleted when it ends.

A gated bento left in the session's BentoML store is the incumbent of every later test that
gates a policy for a cluster it can serve (a general bento serves every cluster), so a test
that packages a passing bento hands its tags to :func:`removed_afterwards`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def removed_afterwards() -> Iterator[list[str]]:
    """Bento tags to delete, with the models they alone use, when the test ends (the store is left as found)."""
    import bentoml

    models_before = {str(model.tag) for model in bentoml.models.list()}
    tags: list[str] = []
    yield tags
    for tag in tags:
        model_tag = bentoml.bentos.get(tag).info.labels["model"]
        bentoml.bentos.delete(tag)
        still_used = any(b.info.labels.get("model") == model_tag for b in bentoml.bentos.list())
        if model_tag not in models_before and not still_used:
            bentoml.models.delete(model_tag)
