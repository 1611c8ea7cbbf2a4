"""Fixtures of the release tests: bentos a test builds as gated are deleted when it (or its module) ends.

A gated bento left in the session's BentoML store is the incumbent of every later test that
gates a policy for a cluster it can serve (a general bento serves every cluster), so a test
that packages a passing bento hands its tags to :func:`removed_afterwards`, and a module-scoped
fixture that packages some hands them to :func:`removed_after_the_module`. Tests of other
packages that leave bentos call :func:`remove_bentos` themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import pytest


def stored_models() -> set[str]:
    """The tags of the models in the (possibly patched) BentoML store now."""
    import bentoml

    return {str(model.tag) for model in bentoml.models.list()}


def remove_bentos(tags: Iterable[str], models_before: set[str]) -> None:
    """Delete the bentos, then each one's model unless it was stored before (``models_before``) or a bento that
    stays still uses it. A bento or model already gone (a test deleted it, a label names no stored model) is fine."""
    import bentoml
    from bentoml.exceptions import NotFound

    for tag in tags:
        try:
            model_tag = bentoml.bentos.get(tag).info.labels.get("model")
        except NotFound:
            continue
        bentoml.bentos.delete(tag)
        if model_tag is None or model_tag in models_before:
            continue
        if not any(b.info.labels.get("model") == model_tag for b in bentoml.bentos.list()):
            with contextlib.suppress(NotFound):
                bentoml.models.delete(model_tag)


@pytest.fixture
def removed_afterwards() -> Iterator[list[str]]:
    """Bento tags to delete, with the models they alone use, when the test ends (the store is left as found)."""
    models_before = stored_models()
    tags: list[str] = []
    yield tags
    remove_bentos(tags, models_before)


@pytest.fixture(scope="module")
def removed_after_the_module() -> Iterator[list[str]]:
    """Bento tags to delete, with the models they alone use, when the module ends: for module-scoped fixtures
    that package bentos (request it before packaging, so that it is torn down after them)."""
    models_before = stored_models()
    tags: list[str] = []
    yield tags
    remove_bentos(tags, models_before)
