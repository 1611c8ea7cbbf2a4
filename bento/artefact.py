"""The policy artefact on disk: a directory with the MaskablePPO zip and a JSON metadata file.

``policy.zip`` is the sb3-contrib MaskablePPO model; ``metadata.json`` (:class:`ArtefactMetadata`)
carries what serving needs besides the weights: the node/slot layout (``Layout.to_dict()`` and its
fingerprint), the observation version, the scenario and workload files' raw contents with their
SHA-256, the training config and the evaluation report. :func:`save_artefact` writes it,
:func:`load_artefact` reads it back and refuses, with a message saying what to do, an artefact
whose observation version or layout does not match this code (or the caller's scenario).
:class:`LoadedPolicy.decide` is the deterministic prediction path. Written by the trainer, read by
the evaluation, the BentoML packaging and the service; torch and sb3 are imported only when a
model is saved or loaded, and nothing here imports bentoml.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ceenv.layout import SUPPORTED_OBSERVATION_VERSIONS, Layout

ARTEFACT_FORMAT = 1
POLICY_FILE = "policy.zip"
METADATA_FILE = "metadata.json"
SCENARIO_FILES = ("nodes.json", "services.json")
TRAINING_STATE = (
    "_last_obs",
    "_last_original_obs",
    "_last_episode_starts",
    "ep_info_buffer",
    "ep_success_buffer",
    "rollout_buffer_class",  # a training-side class (flows.training.buffer) that a bento does not carry
    "rollout_buffer_kwargs",
)


class PolicyError(ValueError):
    """A policy (an artefact on disk or a model in the store) is missing, malformed, or does not fit this code
    or the scenario it should act on; the message names the file or model and says the fix. The one error type
    of :func:`check_compatible`, the artefact loader and the service's card check."""


class SourceFile(BaseModel):
    """One input file, kept verbatim so the artefact can be served and re-evaluated without the repo."""

    name: str = Field(description="File name as it was read (nodes.json, services.json, <pattern>_call_patterns.json).")
    sha256: str = Field(description="SHA-256 of the file's bytes.")
    content: Any = Field(description="The parsed JSON contents.")


class PolicyIdentity(BaseModel):
    """What decides whether this code can run a policy: its observation version and node/slot layout.

    Shared by the artefact's ``metadata.json`` (:class:`ArtefactMetadata`) and the model card in
    the BentoML store (:class:`bento.policy.PolicyCard`); :func:`check_compatible` checks it.
    """

    algorithm: str = Field(default="MaskablePPO", description="The sb3-contrib class that loads policy.zip.")
    observation_version: int = Field(description="ceenv.observation version the policy was trained with.")
    layout: dict[str, Any] = Field(description="ceenv.layout.Layout.to_dict() of the training scenario.")
    layout_fingerprint: str = Field(description="Layout.fingerprint() at training time.")


class ArtefactMetadata(PolicyIdentity):
    """``metadata.json`` of a policy artefact."""

    model_config = ConfigDict(extra="forbid")

    artefact_format: int = Field(default=ARTEFACT_FORMAT, description="Version of this metadata layout.")
    created_utc: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    scenario_name: str = Field(description="Scenario name, e.g. 13-29.")
    scenario_files: list[SourceFile] = Field(description="nodes.json and services.json, verbatim.")
    workload_name: str = Field(description="Workload name, e.g. aggregator_sequential.")
    workload_file: SourceFile = Field(description="The call-pattern file, verbatim.")
    step_cost_ms: float = Field(description="Rescheduling cost per migration the policy was trained with, ms.")
    max_steps: int = Field(description="Episode truncation length the policy was trained with.")
    training_config: dict[str, Any] = Field(default_factory=dict, description="TrainConfig.model_dump().")
    training_summary: dict[str, Any] = Field(
        default_factory=dict, description="Steps, wall time, best validation score."
    )
    evaluation_report: dict[str, Any] | None = Field(default=None, description="The evaluation report, once evaluated.")


def source_file(path: str | Path) -> SourceFile:
    """Read a JSON input file into a :class:`SourceFile` (name, hash, contents)."""
    file = Path(path)
    raw = file.read_bytes()
    return SourceFile(name=file.name, sha256=hashlib.sha256(raw).hexdigest(), content=json.loads(raw))


def joined_sha256(files: Sequence[SourceFile]) -> str:
    """The identity hash of several input files (a scenario's nodes.json and services.json): theirs, joined by +."""
    return "+".join(f.sha256 for f in files)


def scenario_sources(scenario_dir: str | Path) -> list[SourceFile]:
    return [source_file(Path(scenario_dir) / name) for name in SCENARIO_FILES]


def describe(
    layout: Layout,
    scenario_dir: str | Path,
    workload_file: str | Path,
    *,
    step_cost_ms: float,
    max_steps: int,
    **fields: Any,
) -> ArtefactMetadata:
    """The metadata of a policy trained for ``layout`` on these files (other fields via ``fields``)."""
    from ceenv.workload import workload_name

    return ArtefactMetadata(
        observation_version=layout.version,
        layout=layout.to_dict(),
        layout_fingerprint=layout.fingerprint(),
        scenario_name=Path(scenario_dir).name,
        scenario_files=scenario_sources(scenario_dir),
        workload_name=workload_name(Path(workload_file)),
        workload_file=source_file(workload_file),
        step_cost_ms=step_cost_ms,
        max_steps=max_steps,
        **fields,
    )


def save_artefact(directory: str | Path, model: Any, metadata: ArtefactMetadata) -> Path:
    """Write ``model`` (a MaskablePPO) and ``metadata`` into ``directory`` (created; replaced if it exists)."""
    target = Path(directory)
    staging = target.with_name(target.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    # The last rollout's observations and episode buffers are training state, not the policy (they
    # made a 40 x 80 policy's zip 1.9 MB instead of 0.5 MB).
    model.save(str(staging / POLICY_FILE), exclude=list(TRAINING_STATE))
    (staging / METADATA_FILE).write_text(json.dumps(metadata.model_dump(mode="json"), indent=1))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)  # a reader never sees a half-written artefact
    return target


def policy_sha256(directory: str | Path) -> str:
    """SHA-256 of the artefact's ``policy.zip``: which weights an evaluation report judged."""
    return hashlib.sha256((Path(directory) / POLICY_FILE).read_bytes()).hexdigest()


def read_metadata(directory: str | Path) -> ArtefactMetadata:
    """Read and validate ``metadata.json``; raise :class:`PolicyError` naming the file and field."""
    file = Path(directory) / METADATA_FILE
    if not file.is_file():
        raise PolicyError(f"{file}: missing; pass a directory written by `reach train` (policy.zip + metadata.json)")
    try:
        return ArtefactMetadata.model_validate_json(file.read_text())
    except ValidationError as err:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise PolicyError(f"{file}: invalid metadata ({fields}); re-train or re-save the artefact") from None


def write_evaluation(directory: str | Path, report: dict[str, Any]) -> None:
    """Store an evaluation report in the artefact's metadata (the policy file is untouched)."""
    metadata = read_metadata(directory)
    metadata.evaluation_report = report
    target = Path(directory) / METADATA_FILE
    partial = target.with_name(f".{METADATA_FILE}.partial")
    partial.write_text(json.dumps(metadata.model_dump(mode="json"), indent=1))
    os.replace(partial, target)  # a reader (or a crash) never sees half a metadata.json


def check_compatible(identity: PolicyIdentity, where: str, trained_for: str, expected: Layout | None = None) -> Layout:
    """The policy's layout, after checking its observation version, its fingerprint and (optionally) that it
    fits ``expected``, the layout of the scenario it should act on; :class:`PolicyError` names ``where``
    (a file or a model tag) and the fix. ``trained_for`` names the training scenario in messages."""
    version = identity.observation_version
    if version not in SUPPORTED_OBSERVATION_VERSIONS:
        raise PolicyError(
            f"{where}: observation_version is {version}, but this code builds observation versions "
            f"{list(SUPPORTED_OBSERVATION_VERSIONS)}; use the reach version the policy was trained with, or retrain it"
        )
    try:
        layout = Layout.from_dict(identity.layout)
    except (KeyError, TypeError, ValueError) as err:
        raise PolicyError(
            f"{where}: its layout cannot be read by this code ({type(err).__name__}: {err}); retrain the policy"
        ) from None
    if layout.version != version:
        raise PolicyError(
            f"{where}: layout version {layout.version} differs from observation_version {version}; "
            "the metadata was edited, retrain or re-package the policy"
        )
    if layout.fingerprint() != identity.layout_fingerprint:
        raise PolicyError(
            f"{where}: layout_fingerprint is {identity.layout_fingerprint} but the stored layout hashes to "
            f"{layout.fingerprint()}: the encoder changed or the metadata was edited; retrain the policy"
        )
    if expected is not None and layout.padded:
        # Version 4 is size-agnostic: any cluster within the artefact's limits is served as itself.
        try:
            return dataclasses.replace(
                expected, version=layout.version, max_nodes=layout.max_nodes, max_slots=layout.max_slots
            )
        except ValueError as err:
            raise PolicyError(f"{where}: {err}") from None
    if expected is not None:
        # The cluster must match; the observation version is the policy's own choice.
        expected = dataclasses.replace(expected, version=layout.version)
    if expected is not None and expected.fingerprint() != layout.fingerprint():
        raise PolicyError(
            f"{where}: the policy was trained for layout {layout.fingerprint()} ({layout.node_count} nodes, "
            f"{layout.slot_count} slots, scenario {trained_for!r}) but the scenario given has layout "
            f"{expected.fingerprint()} ({expected.node_count} nodes, {expected.slot_count} slots); evaluate or serve it "
            "with the scenario it was trained on, or train a policy for this scenario"
        )
    return layout


@dataclass(frozen=True)
class LoadedPolicy:
    """A checked artefact: the model, its metadata and layout, and the deterministic decision."""

    model: Any
    metadata: ArtefactMetadata
    layout: Layout
    directory: Path

    def decide(self, observation: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> int:
        """The action index the policy picks (deterministic: the most likely valid action)."""
        action, _ = self.model.predict(observation, action_masks=mask, deterministic=True)
        return int(np.asarray(action).reshape(-1)[0])


def load_artefact(directory: str | Path, expected_layout: Layout | None = None) -> LoadedPolicy:
    """Load and check an artefact; ``expected_layout`` is the layout of the scenario it will act on."""
    root = Path(directory)
    metadata = read_metadata(root)
    layout = check_compatible(metadata, str(root / METADATA_FILE), metadata.scenario_name, expected_layout)
    policy_file = root / POLICY_FILE
    if not policy_file.is_file():
        raise PolicyError(f"{policy_file}: missing; the artefact is incomplete, re-train or copy it again")
    from sb3_contrib import MaskablePPO  # heavy: only when a model is really loaded

    try:
        model: Any = MaskablePPO.load(str(policy_file), device="cpu")
    except Exception as err:  # a truncated zip, missing or foreign weights: never a torch hint to unpickle unsafely
        raise PolicyError(
            f"{policy_file}: cannot be loaded ({type(err).__name__}); the artefact is corrupt, re-train it or copy "
            "it again"
        ) from None
    if (
        tuple(model.observation_space.shape) != (layout.observation_size,)
        or int(model.action_space.n) != layout.action_count
    ):
        raise PolicyError(
            f"{policy_file}: the network takes {tuple(model.observation_space.shape)} observations and "
            f"{model.action_space.n} actions, but the layout needs ({layout.observation_size},) and "
            f"{layout.action_count}; the artefact is inconsistent, retrain it"
        )
    return LoadedPolicy(model, metadata, layout, root)


def retarget_artefact(
    source: str | Path, scenario_dir: str | Path, workload_file: str | Path, target: str | Path
) -> Path:
    """A size-agnostic (observation 4) artefact re-labelled for another cluster: same weights, new cluster.

    The copy's metadata names ``scenario_dir`` and ``workload_file`` (verbatim, with their hashes)
    and their layout within the source's limits, so evaluation, the gate, packaging and serving
    treat it as a policy for that cluster. Raises :class:`PolicyError` for an older observation
    version (its weights fit one layout only) or a cluster beyond the limits.
    """
    from ceenv.layout import layout_from_scenario
    from ceenv.scenario import load_scenario

    loaded = load_artefact(source)
    if not loaded.layout.padded:
        raise PolicyError(
            f"{source}: observation version {loaded.layout.version} fits only the cluster it was trained on; "
            "retarget a general (observation version 4) policy, or train one for this cluster"
        )
    layout = check_compatible(
        loaded.metadata, str(Path(source) / METADATA_FILE), loaded.metadata.scenario_name,
        layout_from_scenario(load_scenario(scenario_dir), 3),
    )  # fmt: skip
    summary = {**loaded.metadata.training_summary, "retargeted_from": str(source)}
    metadata = describe(
        layout,
        scenario_dir,
        workload_file,
        step_cost_ms=loaded.metadata.step_cost_ms,
        max_steps=loaded.metadata.max_steps,
        training_config=loaded.metadata.training_config,
        training_summary=summary,
    )
    return save_artefact(target, loaded.model, metadata)
