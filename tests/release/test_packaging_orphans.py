"""A failed packaging leaves no model in the BentoML store: whatever fails after the model was saved deletes it.

The store is stood in for (``save_policy`` and ``bentoml.models.delete`` record what happens): what is
tested is that a refusal after the save (labels of a general policy without limits, a ValueError) does
not leave an orphan model that every retry of the packaging task would add to.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    import bento.store
    from flows.release import packaging

    seen: dict[str, list[str]] = {"saved": [], "deleted": []}

    def save_policy(artefact_dir: Any, **_: Any) -> Any:
        seen["saved"].append("reach-policy:orphan")
        return SimpleNamespace(tag="reach-policy:orphan", info=SimpleNamespace(labels={"scenario": "*"}, metadata={}))

    monkeypatch.setattr(packaging, "check_gated_as_served", lambda artefact_dir, planning: None)
    monkeypatch.setattr(bento.store, "save_policy", save_policy)
    models = importlib.import_module("bentoml.models")  # the module, not bentoml's lazy loader of it
    monkeypatch.setattr(models, "delete", lambda tag: seen["deleted"].append(str(tag)))
    return seen


def test_labels_refused_after_the_save_delete_the_saved_model(store: dict[str, list[str]], tmp_path: Path) -> None:
    from flows.release.packaging import package

    with pytest.raises(ValueError, match="declares no max_nodes/max_slots"):
        package(tmp_path, True, "passed")  # scenario=* without limits: release_labels refuses
    assert store["saved"] == store["deleted"] == ["reach-policy:orphan"]
