"""The planning settings have one source (``bento.planning_settings``): every place that offers them follows it.

The service's bento arguments, ``reach evaluate``'s and ``reach demo``'s ``--help``, the pipeline's parameters, the
evaluation units, :func:`bento.planning.plan_action` and the benchmarks' options must show the
source's defaults. The strongest check changes the source's defaults in a fresh interpreter and
reads every place again: a number typed anywhere instead of taken from the source makes it fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bento.planning_settings import (
    CHOSEN_PLAN_K,
    DEFAULTS,
    PLANNING_KEYS,
    PlanningSettings,
    description,
    gated_planning,
)

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {
    "plan_k": "--plan-k",
    "plan_horizon": "--plan-horizon",
    "plan_width": "--plan-width",
    "plan_margin": "--plan-margin",
    "plan_noise": "--plan-noise",
    "plan_confidence": "--plan-confidence",
    "plan_slack": "--plan-slack",
}


def _help_default(help_text: str, option: str) -> float:
    """``[default: X]`` of ``option`` in a typer ``--help`` rendered one option per line."""
    line = next((row for row in help_text.splitlines() if re.search(rf"{option}\s", row)), "")
    match = re.search(r"\[default: ([0-9.]+)\]", line)
    assert match, f"{option} has no [default: …] in:\n{help_text}"
    return float(match.group(1))


def _help_defaults(help_text: str) -> dict[str, float]:
    """``[default: X]`` of each ``--plan-*`` option (``reach evaluate --help``)."""
    return {key: _help_default(help_text, option) for key, option in OPTIONS.items()}


def test_the_shipped_defaults_are_the_chosen_ones() -> None:
    """docs/training.md's planning table: raw by default; planning is plan_k 4, 8 deep, width 12, margin 1, and a
    charge of 1 standard deviation of the gain under 10 % noise per move; no move cap (plan_slack 16)."""
    assert PlanningSettings(0, 8, 12, 1.0, 0.1, 1.0, 16) == DEFAULTS
    assert PlanningSettings.chosen() == PlanningSettings(CHOSEN_PLAN_K, 8, 12, 1.0, 0.1, 1.0, 16) and CHOSEN_PLAN_K == 4
    assert DEFAULTS.move_cap_slack is None


def test_reach_evaluate_help_and_the_service_arguments_show_the_one_source() -> None:
    from typer.testing import CliRunner

    from bento.service import ServiceArguments
    from flows.cli import app
    from flows.pipeline import PipelineParams

    result = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert _help_defaults(result.output) == {key: float(getattr(DEFAULTS, key)) for key in PLANNING_KEYS}
    served = ServiceArguments()
    assert served.planning() == DEFAULTS
    for key in PLANNING_KEYS:
        assert ServiceArguments.model_fields[key].description == description(key)
        assert ServiceArguments.model_fields[key].metadata == PipelineParams.model_fields[key].metadata  # bounds


PROBE = """
import json, os, sys, inspect, dataclasses
import bento.planning_settings as source
source.DEFAULTS = source.PlanningSettings(plan_k=3, plan_horizon=5, plan_width=7, plan_margin=9.5, plan_noise=0.25,
                                         plan_confidence=2.5, plan_slack=3)
source.CHOSEN_PLAN_K = 2
keys = source.PLANNING_KEYS
out = {}
from bento.service import ServiceArguments
out["service arguments"] = {k: ServiceArguments.model_fields[k].default for k in keys}
from flows.pipeline import PipelineParams
out["pipeline parameters"] = {k: PipelineParams.model_fields[k].default for k in keys}
from flows.evaluation.units import EvalUnit
out["evaluation units"] = {f.name: f.default for f in dataclasses.fields(EvalUnit) if f.name in keys}
from bento.planning import plan_action
signature = inspect.signature(plan_action).parameters
out["plan_action"] = {"plan_horizon": signature["horizon"].default, "plan_width": signature["width"].default,
                      "plan_margin": signature["margin"].default, "plan_noise": signature["noise"].default,
                      "plan_confidence": signature["confidence"].default, "plan_slack": signature["greedy_slack"].default}
from typer.testing import CliRunner
from flows.cli import app
out["reach evaluate --help"] = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"}).output
out["reach demo --help"] = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"}).output
from flows.loop.stages import StageOptions
out["demo stage options"] = StageOptions.model_fields["plan_k"].default
sys.path.insert(0, "benchmarks")
import bench_general, bench_service
general = bench_general.parse_args(["--model", "m"])
out["bench_general"] = {"plan_k": general.plan_k, "plan_horizon": general.horizon, "plan_width": general.plan_width,
                        "plan_margin": general.plan_margin, "plan_noise": general.plan_noise,
                        "plan_confidence": general.plan_confidence, "plan_slack": general.plan_slack}
service = bench_service.parse_args([])
out["bench_service"] = {k: getattr(service, k) for k in keys}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_changing_the_source_changes_every_place_that_offers_planning(tmp_path: Path) -> None:
    """A fresh interpreter with other defaults in the source: every option, argument and parameter follows."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENTOML_HOME": str(tmp_path / "bentoml")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    changed = {"plan_k": 3, "plan_horizon": 5, "plan_width": 7, "plan_margin": 9.5, "plan_noise": 0.25,
               "plan_confidence": 2.5, "plan_slack": 3}  # fmt: skip
    chosen = {**changed, "plan_k": 2}  # the benchmarks measure the chosen planning
    assert _help_defaults(seen.pop("reach evaluate --help")) == changed
    assert _help_default(seen.pop("reach demo --help"), "--plan-k") == seen.pop("demo stage options") == 2  # chosen
    assert seen.pop("plan_action") == {k: v for k, v in changed.items() if k != "plan_k"}
    assert seen.pop("bench_general") == chosen
    assert seen.pop("bench_service") == chosen
    for place, defaults in seen.items():
        assert defaults == changed, f"{place} does not take its planning defaults from bento.planning_settings"


def test_bad_settings_are_refused_naming_the_setting_and_the_range() -> None:
    with pytest.raises(ValueError, match=r"plan_horizon=0 is out of range; give a number in \[1, 16\]"):
        PlanningSettings(plan_k=4, plan_horizon=0)
    with pytest.raises(ValueError, match="plan_margin='lots' is not a number"):
        PlanningSettings.from_mapping({"plan_k": "4", "plan_margin": "lots"})


def test_the_gated_planning_is_what_the_stored_evaluation_played() -> None:
    planned = {"plan_k": 2, "plan_horizon": 2, "plan_width": 4, "plan_margin": 2.0, "plan_noise": 0.2}
    gated = gated_planning({"groups": [{}], "settings": {"seeds": [0], **planned, "plan_confidence": 3.0}})
    assert gated == PlanningSettings(**planned, plan_confidence=3.0)
    # A report written before the noise charge existed played a fixed margin: no noise charge, not today's default.
    planned.pop("plan_noise")
    legacy = gated_planning({"groups": [{}], "settings": {"seeds": [0], **planned}})
    assert legacy == PlanningSettings(**planned, plan_noise=0.0, plan_confidence=0.0)
    assert gated_planning({"groups": [{}], "settings": {"seeds": [0]}}) == PlanningSettings()
    assert gated_planning({"episodes": 0, "note": "not evaluated"}) is None
    with pytest.raises(ValueError, match="plan_k=2 but not plan_width"):
        gated_planning({"groups": [{}], "settings": {"plan_k": 2, "plan_horizon": 2, "plan_margin": 2.0}})


def test_a_record_written_before_the_noise_charge_reads_as_the_fixed_margin_it_played() -> None:
    older = {"plan_k": "4", "plan_horizon": "8", "plan_width": "12", "plan_margin": "8"}  # an older bento's arguments
    assert PlanningSettings.from_recorded(older) == PlanningSettings(4, 8, 12, 8.0, 0.0, 0.0)
    assert PlanningSettings.from_recorded({"plan_k": "4"}) == PlanningSettings.chosen()  # names nothing else: defaults
    assert PlanningSettings.from_recorded({**older, "plan_noise": "0.1", "plan_confidence": "2"}).plan_confidence == 2
    with pytest.raises(ValueError, match="plan_noise but not"):
        PlanningSettings.from_recorded({**older, "plan_noise": "0.1"})
    with pytest.raises(ValueError, match="plan_confidence but not"):
        gated_planning({"groups": [{}], "settings": {**older, "plan_confidence": 1.0}})


def test_no_noise_charge_decides_alike_however_it_is_switched_off() -> None:
    fixed = PlanningSettings(4, 8, 12, 8.0, 0.0, 0.0)
    assert fixed.same_decisions(PlanningSettings(4, 8, 12, 8.0, 0.0, 1.0))
    assert fixed.same_decisions(PlanningSettings(4, 8, 12, 8.0, 0.3, 0.0))
    assert not fixed.same_decisions(PlanningSettings(4, 8, 12, 8.0, 0.1, 1.0))
    assert not fixed.same_decisions(PlanningSettings(4, 8, 12, 6.0, 0.0, 0.0))
    assert PlanningSettings().same_decisions(PlanningSettings(plan_noise=0.0))  # both raw


def test_a_fractional_count_is_refused_not_truncated() -> None:
    from bento.planning_settings import PlanningSettings

    with pytest.raises(ValueError, match=r"plan_k='2\.7' must be a whole number"):
        PlanningSettings.from_mapping({"plan_k": "2.7"})
    with pytest.raises(ValueError, match=r"plan_horizon=2\.5 is out of range"):
        PlanningSettings(plan_horizon=2.5)  # type: ignore[arg-type]
    assert PlanningSettings.from_mapping({"plan_k": "4", "plan_margin": "6.5"}).plan_margin == 6.5


def test_a_move_cap_at_or_past_the_horizon_caps_nothing_and_a_record_without_one_had_none() -> None:
    """plan_slack >= plan_horizon plays as no cap (plan_action's None); a record written before plan_slack existed
    (a bento's build arguments, a report's settings) played no cap, whatever today's default says."""
    assert PlanningSettings(4, 8, 12, 1.0, 0.1, 1.0, 8).move_cap_slack is None
    assert PlanningSettings(4, 8, 12, 1.0, 0.1, 1.0, 7).move_cap_slack == 7
    assert PlanningSettings(4, 8, 12, 1.0, 0.1, 1.0, 0).move_cap_slack == 0
    assert PlanningSettings(4, 8, 12, 1.0, 0.1, 1.0, 8).same_decisions(PlanningSettings.chosen())
    assert not PlanningSettings(4, 8, 12, 1.0, 0.1, 1.0, 1).same_decisions(PlanningSettings.chosen())
    assert PlanningSettings(0, plan_slack=1).same_decisions(PlanningSettings())  # both raw: the cap plays no part
    named = {"plan_k": "4", "plan_horizon": "8", "plan_width": "12", "plan_margin": "1", "plan_noise": "0.1",
             "plan_confidence": "1"}  # fmt: skip
    assert PlanningSettings.from_recorded(named).plan_slack == 16
    assert PlanningSettings.from_recorded({**named, "plan_slack": "1"}).plan_slack == 1
    report = {"groups": [{}], "settings": {"seeds": [0], **{k: float(v) for k, v in named.items()}}}
    assert gated_planning(report) == PlanningSettings.chosen()
    with pytest.raises(ValueError, match=r"plan_slack=17 is out of range; give a number in \[0, 16\]"):
        PlanningSettings(plan_k=4, plan_slack=17)
