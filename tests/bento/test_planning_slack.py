"""Planning with fewer migrations (``plan_slack``): no sequence the planner weighs is longer than the moves greedy
would make from here on the twin plus the slack, and every place that plans (the served policy, the evaluation
units that the gate judges) plays the slack it is given."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import bento.planning as planning
from bento.planning_settings import PlanningSettings
from ceenv.baselines import climb
from flows.evaluation.episodes import start_state
from flows.evaluation.seeds import evaluation_seed
from tests.bento.test_planning import _env, general  # noqa: F401 (the module fixture)
from tests.conftest import scenario_dir, workload_file

HORIZON = 8
# Start states where the uncapped planner weighs sequences longer than greedy's moves from there + 1 (7-21 after a
# surge: greedy makes about 2.6 moves where planning makes 5.3, benchmarks/results/general/general.md).
STATES = [("7-21", "aggregator_sequential", "traffic_surge", s, e) for s in range(3) for e in range(2)]


def _weighed_lengths(model: Any, sim: Any, slack: int | None, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """The longest sequence :func:`bento.planning.choose_sequence` is offered, and the answer, with ``slack``."""
    offered: list[int] = []
    original = planning.choose_sequence

    def recording(twin: Any, sequences: list[planning.PlannedSequence], *args: Any) -> int | None:
        offered.extend(s.moves for s in sequences)
        return original(twin, sequences, *args)

    monkeypatch.setattr(planning, "choose_sequence", recording)
    action = planning.plan_action(model, sim, k=4, horizon=HORIZON, greedy_slack=slack)
    monkeypatch.setattr(planning, "choose_sequence", original)
    return max(offered, default=0), action


def test_no_weighed_sequence_is_longer_than_greedys_moves_from_here_plus_the_slack(
    general: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capped_somewhere = False
    for size, workload, family, seed, episode in STATES:
        env = _env(size, workload)
        env.reset(options={"state": start_state(env, family, evaluation_seed(seed, episode))})
        greedy_moves = climb(planning._twin(env.simulator), env.step_cost_ms, HORIZON)
        uncapped, _ = _weighed_lengths(general.model, env.simulator, None, monkeypatch)
        for slack in (0, 1, 2):
            longest, action = _weighed_lengths(general.model, env.simulator, slack, monkeypatch)
            assert longest <= greedy_moves + slack, (
                f"{size} {workload} {family} seed {seed}/{episode}: a {longest}-move sequence weighed with greedy's "
                f"{greedy_moves} moves from here and slack {slack}"
            )
            assert env.action_masks()[action]
            capped_somewhere |= uncapped > greedy_moves + slack
    assert capped_somewhere, "no state where the cap binds: the check above could not fail"


def test_a_slack_of_zero_stops_where_greedy_would_not_move_and_the_uncapped_planner_would(
    general: Any,  # noqa: F811
) -> None:
    """7-21 after a surge: the uncapped planner reaches a placement where no single move gains a step cost on the
    twin (greedy stops) and still moves (a detour of several moves); slack 0 leaves it nothing to weigh: STOP."""
    checked = 0
    for seed in (0, 1):
        env = _env("7-21", "aggregator_sequential")
        obs, _ = env.reset(options={"state": start_state(env, "traffic_surge", evaluation_seed(seed, 0))})
        for _ in range(env.max_steps):
            action = planning.plan_action(general.model, env.simulator, k=4, observation=obs)
            if action == env.layout.stop_action:
                break
            if climb(planning._twin(env.simulator), env.step_cost_ms, 1) == 0:
                capped = planning.plan_action(general.model, env.simulator, k=4, greedy_slack=0, observation=obs)
                assert capped == env.layout.stop_action
                checked += 1
                break
            obs, *_ = env.step(action)
    assert checked == 2, "the uncapped planner never moved past greedy's stopping point: nothing was checked"


class _Capture:
    """:func:`bento.planning.plan_action`, recording the ``greedy_slack`` of every call."""

    def __init__(self) -> None:
        self.slacks: list[int | None] = []
        self._plan_action = planning.plan_action

    def __call__(self, *args: Any, greedy_slack: int | None = None, **kwargs: Any) -> int:
        self.slacks.append(greedy_slack)
        return self._plan_action(*args, greedy_slack=greedy_slack, **kwargs)


@pytest.mark.parametrize(("slack", "played"), [(1, 1), (0, 0), (8, None), (16, None)])
def test_the_served_policy_and_the_evaluation_play_the_slack_they_are_given(
    general: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    slack: int,
    played: int | None,
) -> None:
    """The bento argument plan_slack reaches plan_action (None: a slack at or past the 8-move horizon caps nothing),
    and so does an evaluation unit's (what the gate judges is what serves)."""
    from bento.policy import GateVerdict, NominalLatency, Policy, PolicyCard
    from ceenv.payload import request_from_state
    from ceenv.schema import ActionRequest
    from flows.evaluation.units import EvalUnit, evaluate_unit

    capture = _Capture()
    monkeypatch.setattr(planning, "plan_action", capture)
    settings = PlanningSettings.from_mapping({"plan_k": 4, "plan_slack": slack})
    env = _env("13-29", "aggregator_sequential")
    env.reset(options={"state": start_state(env, "steady", 4)})
    sim = env.simulator
    request = ActionRequest.model_validate(
        request_from_state(env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, sim.target_ok())
    )
    card = PolicyCard.from_artefact(general.metadata, GateVerdict(passed=True, reason="test"))
    latency = NominalLatency.from_files(str(scenario_dir("13-29")), str(workload_file("aggregator_sequential")))
    Policy(general, card, general.layout, "test", latency, settings).decide(request)
    assert capture.slacks == [played]
    capture.slacks.clear()
    unit = EvalUnit(
        str(scenario_dir("7-21")), str(workload_file("chain")), "steady", 0, 1, str(planning_model_dir()),
        baselines=(), plan_k=4, plan_slack=slack,
    )  # fmt: skip
    evaluate_unit(unit)
    assert capture.slacks and set(capture.slacks) == {played}


def planning_model_dir() -> Any:
    from tests.bento.test_planning import GENERAL

    return GENERAL


def test_an_evaluation_report_records_the_slack_its_planner_played() -> None:
    from flows.evaluation import evaluate

    report, _ = evaluate(
        scenario_dir("7-21"), [workload_file("chain")], planning_model_dir(), [0], 1, ["steady"],
        baselines=("best_known",), plan_k=4, plan_slack=1,
    )  # fmt: skip
    assert report.settings["plan_slack"] == 1
    from bento.planning_settings import settings_planning

    assert settings_planning(report.settings).move_cap_slack == 1
    np.testing.assert_equal(report.settings["plan_k"], 4)
