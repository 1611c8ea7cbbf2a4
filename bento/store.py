"""Save a policy artefact into the BentoML model store and load it back as a checked :class:`Policy`.

:func:`save_policy` copies an artefact directory written by the trainer (:mod:`bento.artefact`:
``policy.zip`` + ``metadata.json``) into one BentoML model (default name ``reach-policy``) whose
metadata is a :class:`bento.policy.PolicyCard` (layout, scenario/workload identity, observation
version, evaluation report, gate verdict) and whose labels name the scenario, workload and gate.
The artefact is loaded and checked first, so a bad one is refused before anything is written.
:func:`load_policy` resolves a tag or a stored model, checks the card against this code, loads the
artefact on the CPU and checks it against the card. Used by the packaging step of the flows and by
:mod:`bento.service`.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import bentoml

from bento.artefact import METADATA_FILE, POLICY_FILE, PolicyError, load_artefact
from bento.policy import GateVerdict, NominalLatency, Policy, PolicyCard, check_card

MODEL_NAME = "reach-policy"


def save_policy(
    artefact_dir: str | Path,
    *,
    gate: GateVerdict,
    name: str = MODEL_NAME,
    labels: Mapping[str, str] | None = None,
) -> bentoml.Model:
    """Store the artefact in ``artefact_dir`` as a BentoML model; return the stored model.

    Raises :class:`bento.artefact.PolicyError` (naming the file and the fix) when the artefact is
    incomplete or does not match this code; nothing is written then.
    """
    source = Path(artefact_dir)
    loaded = load_artefact(source)
    card = PolicyCard.from_artefact(loaded.metadata, gate)
    model_labels = {
        "scenario": card.scenario.name,
        "workload": card.workload.name,
        "gate": "passed" if gate.passed else "refused",
        "observation_version": str(card.observation_version),
    }
    model_labels.update(labels or {})
    with bentoml.models.create(name, labels=model_labels, metadata=card.model_dump(mode="json")) as model:
        for file in (POLICY_FILE, METADATA_FILE):
            shutil.copyfile(source / file, Path(model.path) / file)
    return model


def load_policy(model: bentoml.Model | str) -> Policy:
    """A stored model (or its tag, e.g. ``reach-policy:latest``) as a checked :class:`Policy`.

    Raises :class:`PolicyError`, naming the model and the fix, when the card's observation
    version or layout does not match this code, or when the stored artefact is missing, broken or
    disagrees with the card.
    """
    stored = bentoml.models.get(model) if isinstance(model, str) else model
    tag = str(stored.tag)
    card, layout = check_card(stored.info.metadata, tag)
    try:
        loaded = load_artefact(stored.path, expected_layout=layout)
    except PolicyError as err:
        raise PolicyError(f"model {tag}: {err}") from None
    if loaded.metadata.observation_version != card.observation_version:
        raise PolicyError(
            f"model {tag}: its card says observation version {card.observation_version} but the stored artefact "
            f"says {loaded.metadata.observation_version}; re-package the artefact with bento.store.save_policy"
        )
    return Policy(loaded, card, layout, tag, NominalLatency.from_artefact(loaded.metadata))
