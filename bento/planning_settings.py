"""Decision-time planning settings: the one place that says their defaults, bounds and meaning.

:class:`PlanningSettings` holds the bento arguments ``plan_k``, ``plan_horizon``, ``plan_width``,
``plan_margin``, ``plan_noise``, ``plan_confidence`` and ``plan_slack`` (:mod:`bento.planning` plays them) as one typed, frozen object with a description
and bounds per field; ``PlanningSettings()`` is the raw policy with the planner's defaults, and
:data:`CHOSEN_PLAN_K` is the ``plan_k`` chosen for the general policy (docs/training.md, planning).
Every place that offers these settings takes its defaults, bounds and help from here: the
service's arguments (:mod:`bento.service`), :class:`bento.policy.Policy` and
:func:`bento.store.load_policy`, ``reach evaluate``/``reach serve``/``reach demo`` (:mod:`flows.cli`), the
pipeline's parameters (:class:`flows.pipeline.PipelineParams`), the evaluation units
(:mod:`flows.evaluation.units`), the demo's stage options (:mod:`flows.loop.stages`) and the benchmarks' options. :func:`gated_planning` reads the
planning an evaluation report played (what the gate judged), so the service and ``reach serve``
can say when a server decides otherwise. Standard library only: the CLI imports it at start-up.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PLANNING_KEYS = ("plan_k", "plan_horizon", "plan_width", "plan_margin", "plan_noise", "plan_confidence", "plan_slack")
# What a report written before a key existed played: planning then charged a fixed margin per move.
LEGACY_VALUES = {"plan_noise": 0.0, "plan_confidence": 0.0}
# Keys a planning record may lack: those of LEGACY_VALUES, and plan_slack (read as NO_MOVE_CAP).
RECORD_MAY_LACK = (*LEGACY_VALUES, "plan_slack")
CHOSEN_PLAN_K = 4  # the plan_k of the shipped general policy's planning rows (docs/training.md, README)
# plan_slack at or above the deepest horizon caps nothing: what a record written before the setting played.
NO_MOVE_CAP = 16


def _spec(default: float, low: float, high: float, description: str) -> Any:
    return field(default=default, metadata={"ge": low, "le": high, "description": description})


@dataclass(frozen=True)
class PlanningSettings:
    """How a general (observation version 4) policy decides at serve time: raw (``plan_k == 0``) or planning."""

    plan_k: int = _spec(
        0,
        0,
        16,
        "Decision-time planning (general policies): a beam search over move sequences on the twin "
        "(bento.planning), seeded by the policy's top plan_k moves and the twin's plan_width best; 0 = the raw "
        "policy.",
    )
    plan_horizon: int = _spec(8, 1, 16, "Planning: moves per searched sequence (depth).")
    plan_width: int = _spec(
        12, 1, 64, "Planning: placements kept per depth (beam width), and the twin's best moves added to the policy's."
    )
    plan_margin: float = _spec(
        1.0,
        1.0,
        20.0,
        "Planning: a sequence must gain more than plan_margin step costs per move, plus its noise charge "
        "(plan_confidence), else STOP.",
    )
    plan_noise: float = _spec(
        0.1,
        0.0,
        1.0,
        "Planning: the relative (log-normal) noise assumed of the known network's delays and bandwidths; the "
        "env trains with 0.1. 0: trust the known network as exact.",
    )
    plan_confidence: float = _spec(
        1.0,
        0.0,
        10.0,
        "Planning: standard deviations of a sequence's gain under plan_noise charged per move (guards against "
        "moves whose gain is within the measurement noise, in the application's own scale). 0: none.",
    )
    plan_slack: int = _spec(
        NO_MOVE_CAP,
        0,
        NO_MOVE_CAP,
        "Planning, fewer migrations: no searched sequence is longer than the moves greedy would make from here "
        "on the twin plus plan_slack (1: about greedy's moves + 1, for less of the latency reduction). "
        f"{NO_MOVE_CAP} (the default, at least plan_horizon): no cap.",
    )

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            low, high = spec.metadata["ge"], spec.metadata["le"]
            whole = spec.type not in (int, "int") or isinstance(value, int)
            if isinstance(value, bool) or not isinstance(value, int | float) or not whole or not low <= value <= high:
                raise ValueError(
                    f"planning setting {spec.name}={value!r} is out of range; give a number in [{low:g}, {high:g}]"
                )

    @property
    def active(self) -> bool:
        """Whether the server plans (``plan_k > 0``) rather than playing the raw policy."""
        return self.plan_k > 0

    def to_dict(self) -> dict[str, Any]:
        """The ``plan_*`` values when planning, {} for the raw policy (the evaluation report's settings)."""
        return dataclasses.asdict(self) if self.active else {}

    def arguments(self) -> dict[str, str]:
        """The bento arguments (``--arg key=value`` strings) that serve these settings; {} for the raw policy.

        Full precision: each string reads back as exactly its value (``2``, ``0.2``, ``0.3333333333333333``),
        so a bento serves the very planning the gate judged (:meth:`PlanningSettings.describe` is the short form for people).
        """
        return {key: _exact_text(value) for key, value in self.to_dict().items()}

    def describe(self) -> str:
        """One phrase: ``the raw policy`` or ``planning (plan_k=4, plan_horizon=8, …, plan_confidence=1)``, with
        ``plan_slack=1`` last when it caps the plans."""
        if not self.active:
            return "the raw policy"
        values = dataclasses.asdict(self)
        if self.move_cap_slack is None:
            values.pop("plan_slack")
        return "planning (" + ", ".join(f"{key}={value:g}" for key, value in values.items()) + ")"

    def same_decisions(self, other: PlanningSettings) -> bool:
        """Whether both decide alike: both raw, or planning with equal values (no noise charge, however it is
        switched off: ``plan_noise`` 0 or ``plan_confidence`` 0, counts as one)."""
        return self._decisions() == other._decisions()

    @property
    def move_cap_slack(self) -> int | None:
        """``plan_slack`` as :func:`bento.planning.plan_action` takes it: None when it caps nothing."""
        return None if self.plan_slack >= self.plan_horizon else self.plan_slack

    def _decisions(self) -> dict[str, Any]:
        values = self.to_dict()
        if values and (self.plan_noise == 0 or self.plan_confidence == 0):
            values.update(LEGACY_VALUES)
        if values and self.move_cap_slack is None:
            values["plan_slack"] = NO_MOVE_CAP
        return values

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PlanningSettings:
        """The settings named in ``values`` (bento arguments, report settings: numbers or strings), defaults for the rest.

        Keys other than ``plan_*`` are ignored; a value that is not a number raises ``ValueError`` naming it.
        """
        chosen: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            raw = values.get(spec.name)
            if raw is None or raw == "":
                continue
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"planning setting {spec.name}={raw!r} is not a number") from None
            if spec.type in (int, "int"):
                if not number.is_integer():
                    raise ValueError(f"planning setting {spec.name}={raw!r} must be a whole number")
                number = int(number)
            chosen[spec.name] = number
        return dataclasses.replace(DEFAULTS, **chosen)

    @classmethod
    def of(cls, holder: Any) -> PlanningSettings:
        """The settings held as attributes ``plan_k`` … ``plan_slack`` of ``holder`` (service arguments, pipeline
        parameters, an evaluation unit)."""
        return cls(**{key: getattr(holder, key) for key in PLANNING_KEYS})

    @classmethod
    def from_recorded(cls, values: Mapping[str, Any]) -> PlanningSettings:
        """The planning a record names (a bento's build arguments, a server's ``/metadata``, a report's settings).

        A planning record that names ``plan_horizon``, ``plan_width`` and ``plan_margin`` but neither
        ``plan_noise`` nor ``plan_confidence`` was written before the noise charge existed and played the
        fixed margin: it reads as :data:`LEGACY_VALUES`, not as today's defaults. One of the two without the
        other raises ``ValueError``. A planning record without ``plan_slack`` was written before the move cap
        existed and capped nothing: it reads as :data:`NO_MOVE_CAP`, whatever today's default.
        """
        if values.get("plan_slack") in (None, ""):
            values = {**values, "plan_slack": NO_MOVE_CAP}
        new = [key for key in LEGACY_VALUES if values.get(key) not in (None, "")]
        if len(new) == 1:
            raise ValueError(f"the planning names {new[0]} but not {set(LEGACY_VALUES) - set(new)}: give both")
        older = all(values.get(key) not in (None, "") for key in PLANNING_KEYS[1:4])
        if not new and older and _plan_k(values) > 0:
            return cls.from_mapping({**values, **LEGACY_VALUES})
        return cls.from_mapping(values)

    @classmethod
    def chosen(cls) -> PlanningSettings:
        """The planning chosen for the general policy: :data:`CHOSEN_PLAN_K` with the other defaults."""
        return dataclasses.replace(DEFAULTS, plan_k=CHOSEN_PLAN_K)


DEFAULTS = PlanningSettings()


def _exact_text(value: float) -> str:
    """``value`` as the shortest text that reads back as exactly it: ``:g`` when that is exact, else ``repr``."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def _plan_k(values: Mapping[str, Any]) -> float:
    """The recorded ``plan_k`` as a number (0 when absent); ``ValueError`` for text or a non-finite number."""
    raw = values.get("plan_k") or 0
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ValueError(
            f"planning setting plan_k={raw!r} is not a number; give a whole number in {list(bounds('plan_k'))}"
        ) from None
    if not math.isfinite(number):
        raise ValueError(
            f"planning setting plan_k={raw!r} is not finite; give a whole number in {list(bounds('plan_k'))}"
        )
    return number


def default(name: str) -> Any:
    """The default of setting ``name`` (e.g. ``plan_horizon``)."""
    return getattr(DEFAULTS, name)


def description(name: str) -> str:
    """The description of setting ``name`` (help text of every option that offers it)."""
    return str(_field(name).metadata["description"])


def bounds(name: str) -> tuple[Any, Any]:
    """``(lowest, highest)`` allowed value of setting ``name``."""
    metadata = _field(name).metadata
    return metadata["ge"], metadata["le"]


def _field(name: str) -> dataclasses.Field[Any]:
    for spec in dataclasses.fields(PlanningSettings):
        if spec.name == name:
            return spec
    raise KeyError(f"no planning setting {name!r}; the settings are {list(PLANNING_KEYS)}")


def pydantic_field(name: str, description_text: str | None = None, default_value: Any = None) -> Any:
    """A pydantic ``Field`` of setting ``name``: its default (or ``default_value``, e.g. :data:`CHOSEN_PLAN_K`),
    bounds and description (for settings models)."""
    from pydantic import Field

    low, high = bounds(name)
    chosen = default(name) if default_value is None else default_value
    return Field(default=chosen, ge=low, le=high, description=description_text or description(name))


def settings_planning(settings: Mapping[str, Any]) -> PlanningSettings:
    """The planning an evaluation report's ``settings`` say its policy played (raw when ``plan_k`` is 0 or absent).

    ``ValueError`` when ``plan_k`` is set but another ``plan_*`` value is missing, or a value is not a
    finite number (a hand-edited report).
    """
    if _plan_k(settings) <= 0:
        return PlanningSettings()
    missing = [key for key in PLANNING_KEYS if key not in settings and key not in RECORD_MAY_LACK]
    if missing:
        raise ValueError(f"the evaluation report says plan_k={settings['plan_k']} but not {', '.join(missing)}")
    return PlanningSettings.from_recorded(settings)


def readable_gated_planning(evaluation: Mapping[str, Any] | None) -> PlanningSettings | None:
    """:func:`gated_planning`, or None when the report names ``plan_k`` without its other settings (packaging
    refuses such a report, so a stored policy carries one only if written by hand): what a server reports."""
    try:
        return gated_planning(evaluation)
    except ValueError:
        return None


def gated_planning_error(evaluation: Mapping[str, Any] | None) -> str | None:
    """Why :func:`gated_planning` cannot read the report's planning (e.g. ``plan_k`` "inf"), None when it can.

    What a server says instead of "without a stored evaluation" when :func:`readable_gated_planning` is None
    for a report that exists but is malformed.
    """
    try:
        gated_planning(evaluation)
    except ValueError as err:
        return str(err)
    return None


def gated_planning(evaluation: Mapping[str, Any] | None) -> PlanningSettings | None:
    """The planning an evaluation report played, i.e. what a gate on it judged; None when there is no report.

    A report without groups (a policy packaged unevaluated) judged no decisions at all.
    """
    if not evaluation or not evaluation.get("groups"):
        return None
    return settings_planning(evaluation.get("settings") or {})
