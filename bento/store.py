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

from bento.artefact import METADATA_FILE, POLICY_FILE, PolicyError, check_compatible, joined_sha256, load_artefact
from bento.planning_settings import DEFAULTS, PlanningSettings
from bento.policy import FileIdentity, GateVerdict, NominalLatency, Policy, PolicyCard, check_card
from ceenv.layout import Layout

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
    NominalLatency.from_artefact(loaded.metadata)  # the carried scenario and workload must build: refused here
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


def load_policy(
    model: bentoml.Model | str,
    scenario_dir: str | None = None,
    workload_file: str | None = None,
    planning: PlanningSettings = DEFAULTS,
) -> Policy:
    """A stored model (or its tag, e.g. ``reach-policy:latest``) as a checked :class:`Policy`.

    ``scenario_dir``/``workload_file`` name the cluster a general policy serves (default: the one it
    was trained on); ``planning`` how it decides (default: the raw policy).
    Raises :class:`PolicyError`, naming the model and the fix, when the card's observation
    version or layout does not match this code, or when the stored artefact is missing, broken or
    disagrees with the card.
    """
    stored = bentoml.models.get(model) if isinstance(model, str) else model
    tag = str(stored.tag)
    card, layout = check_card(stored.info.metadata, tag)
    latency: NominalLatency | None = None
    served: tuple[FileIdentity, FileIdentity] | None = None
    if scenario_dir is not None or workload_file is not None:
        latency, layout, served = _serve_time_cluster(card, tag, scenario_dir, workload_file)
    try:
        loaded = load_artefact(stored.path, expected_layout=layout)
    except PolicyError as err:
        raise PolicyError(f"model {tag}: {err}") from None
    stored_identity = {
        "observation version": (card.observation_version, loaded.metadata.observation_version),
        "layout fingerprint": (card.layout_fingerprint, loaded.metadata.layout_fingerprint),
        "scenario files": (card.scenario.sha256, joined_sha256(loaded.metadata.scenario_files)),
        "workload file": (card.workload.sha256, loaded.metadata.workload_file.sha256),
    }
    for what, (on_card, in_artefact) in stored_identity.items():
        if on_card != in_artefact:
            raise PolicyError(
                f"model {tag}: its card says {what} {on_card} but the stored artefact says {in_artefact}; "
                "re-package the artefact with bento.store.save_policy"
            )
    try:
        nominal = NominalLatency.from_artefact(loaded.metadata)
    except PolicyError as err:
        raise PolicyError(f"model {tag}: {err}") from None
    if planning.active and not layout.padded:
        raise PolicyError(f"model {tag}: planning (plan_k > 0) needs a general (observation version 4) policy")
    latency = latency or nominal
    return Policy(loaded, card, layout, tag, latency, planning, served)


def _serve_time_cluster(
    card: PolicyCard, tag: str, scenario_dir: str | None, workload_file: str | None
) -> tuple[NominalLatency, Layout, tuple[FileIdentity, FileIdentity]]:
    """The cluster and application named at serve time, checked against a size-agnostic card's limits,
    and the identity (name, SHA-256) of their files."""
    from bento.served import cluster_identity
    from ceenv.layout import layout_from_scenario
    from ceenv.validation import ScenarioError

    if card.observation_version < 4:
        raise PolicyError(
            f"model {tag}: observation version {card.observation_version} serves only the cluster it was trained on "
            f"({card.scenario.name}); drop the scenario/workload arguments or serve a version-4 (general) policy"
        )
    if scenario_dir is None or workload_file is None:
        raise PolicyError(f"model {tag}: give both the scenario directory and the workload file, or neither")
    try:
        latency = NominalLatency.from_files(scenario_dir, workload_file)
    except (ScenarioError, OSError, ValueError) as err:
        raise PolicyError(
            f"model {tag}: cannot serve scenario {scenario_dir} with workload {workload_file}: {err}"
        ) from None
    # The card's limits decide: a cluster larger than them is refused with the fix.
    expected = layout_from_scenario(latency.model.scenario, 3)  # unpadded; the card's limits pad it
    layout = check_compatible(card, f"model {tag}", card.scenario.name, expected)
    scenario, workload = cluster_identity(
        latency.model.scenario.name, scenario_dir, latency.model.workload.name, workload_file
    )
    return latency, layout, (FileIdentity.model_validate(scenario), FileIdentity.model_validate(workload))
