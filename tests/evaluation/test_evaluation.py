"""Evaluation: held-out start states per family, every method on the same states, report fields and outputs."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ceenv.env import CloudEdgeEnv
from flows.evaluation import FAMILIES, evaluate, plan_units
from flows.evaluation.episodes import BASELINES, run_policy, start_state
from flows.evaluation.output import write_report
from flows.evaluation.report import EvaluationReport, estimate
from flows.evaluation.seeds import (
    TEST_SEED_BASE,
    TRAIN_SEED_LIMIT,
    VALIDATION_SEED_BASE,
    evaluation_seed,
    validation_seed,
)
from tests.conftest import NON_DEFAULT_PLANNING, scenario_dir, workload_file


class FirstValidMove:
    """A stand-in policy: the first valid move for three steps, then STOP."""

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, obs: np.ndarray, mask: np.ndarray) -> int:
        self.calls += 1
        return int(np.flatnonzero(mask)[0]) if self.calls % 4 else len(mask) - 1


def _env() -> CloudEdgeEnv:
    return CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"))


def test_seed_ranges_are_disjoint() -> None:
    assert TRAIN_SEED_LIMIT <= VALIDATION_SEED_BASE <= validation_seed(0)
    assert validation_seed(TEST_SEED_BASE - VALIDATION_SEED_BASE - 1) < evaluation_seed(0, 0)
    assert evaluation_seed(1, 0) > evaluation_seed(0, 9_999)
    with pytest.raises(ValueError, match="outside"):
        evaluation_seed(0, 10_000)


@pytest.mark.parametrize("family", FAMILIES)
def test_start_states_are_reproducible_per_family(family: str) -> None:
    a, b = start_state(_env(), family, evaluation_seed(0, 1)), start_state(_env(), family, evaluation_seed(0, 1))  # type: ignore[arg-type]
    assert (a[1] == b[1]).all() and (a[0].cpu_millicores == b[0].cpu_millicores).all()


def test_node_failure_start_has_failed_nodes_without_pods() -> None:
    conditions, slot_node = start_state(_env(), "node_failure", evaluation_seed(0, 2))
    failed = np.flatnonzero(conditions.cpu_millicores == 0)
    assert 1 <= failed.size <= 2 and not np.isin(slot_node, failed).any()


def test_traffic_surge_start_has_more_aggregator_pods_than_the_plain_start() -> None:
    env = _env()
    seed = evaluation_seed(0, 3)
    steady = start_state(env, "steady", seed)[1]
    surged = start_state(env, "traffic_surge", seed)[1]
    aggregator = env.layout.slot_service == env.layout.service_names.index("aggregator")
    assert (surged[aggregator] >= 0).sum() >= (steady[aggregator] >= 0).sum()


def test_policy_rollout_counts_moves_and_time_and_makes_no_invalid_action() -> None:
    env = _env()
    outcome = run_policy(env, start_state(env, "steady", evaluation_seed(0, 0)), FirstValidMove().decide)
    assert outcome.moves == 3 and outcome.invalid_actions == 0 and outcome.decision_seconds > 0


def test_units_fan_out_by_workload_family_and_seed() -> None:
    units = plan_units(
        scenario_dir("7-21"),
        [workload_file("chain"), workload_file("aggregator_parallel")],
        ["steady", "node_failure"],
        [0, 1, 2],
        4,
        None,
    )
    assert len(units) == 12 and len({(u.workload_file, u.family, u.seed) for u in units}) == 12


def test_report_has_every_method_and_field_with_intervals(tmp_path: Path) -> None:
    report, records = evaluate(
        scenario_dir("7-21"),
        [workload_file("chain")],
        None,
        [0, 1, 2, 3, 4],
        2,
        ["steady", "traffic_surge"],
        policy=FirstValidMove(),
    )
    assert [g.family for g in report.groups] == ["steady", "traffic_surge"]
    for group in report.groups:
        assert set(group.methods) == {"policy", *BASELINES}
        for m in group.methods.values():
            assert m.episodes == 10 and m.seeds == 5
            assert m.mean_end_latency_ms.ci_low <= m.mean_end_latency_ms.mean <= m.mean_end_latency_ms.ci_high
            assert m.p95_end_latency_ms >= min(r.end_latency_ms for r in records if r.method == m.method)
            assert m.decision_ms_per_move >= 0 and m.invalid_actions == 0
        assert group.methods["best_known"].fraction_of_best_known.mean == pytest.approx(1.0)
        assert group.methods["noop"].reduction_pct.mean == 0
        assert (
            group.methods["best_known"].mean_end_latency_ms.mean
            <= group.methods["greedy"].mean_end_latency_ms.mean + 1e-9
        )
    assert report.settings["min_seeds_met"] is True
    written = write_report(report, records, tmp_path)
    assert {p.name for p in written} == {"report.json", "report.md", "latency_distribution.png", "moves_vs_gain.png"}
    assert EvaluationReport.model_validate(json.loads((tmp_path / "report.json").read_text())) == report
    assert "| policy |" in (tmp_path / "report.md").read_text()


def test_every_method_sees_the_same_start_states() -> None:
    _, records = evaluate(
        scenario_dir("7-21"), [workload_file("chain")], None, [0, 1], 2, ["node_failure"], policy=FirstValidMove()
    )
    starts: dict[tuple[int, int], set[float]] = {}
    for r in records:
        starts.setdefault((r.seed, r.episode), set()).add(round(r.start_latency_ms, 9))
    assert all(len(s) == 1 for s in starts.values())


def test_confidence_interval_is_student_t_over_seeds() -> None:
    e = estimate([1.0, 2.0, 3.0, 4.0, 5.0])
    assert e.mean == 3.0 and e.ci_high - e.mean == pytest.approx(2.776 * np.std([1, 2, 3, 4, 5], ddof=1) / np.sqrt(5))
    assert estimate([7.0]).ci_low == 7.0


def test_duplicate_seeds_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicates"):
        evaluate(scenario_dir("7-21"), [workload_file("chain")], None, [0, 0], 1)


GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"


def test_an_evaluation_with_plan_k_plays_the_planner_the_bento_serves() -> None:
    """The gate must judge what serves: with plan_k the policy's episodes are bento.planning's decisions."""
    from bento.artefact import load_artefact
    from bento.planning import plan_action
    from ceenv.layout import layout_from_scenario

    planning = NON_DEFAULT_PLANNING  # not the defaults: each must reach the planner
    _, records = evaluate(
        scenario_dir("7-21"), [workload_file("chain")], GENERAL, [0], 4, ["traffic_surge"],
        baselines=("best_known",), **planning,
    )  # fmt: skip
    units = plan_units(scenario_dir("7-21"), [workload_file("chain")], ["traffic_surge"], [0], 4, GENERAL, **planning)
    assert {(u.plan_noise, u.plan_confidence, u.plan_slack) for u in units} == {(0.2, 1.5, 1)}
    played = [r for r in records if r.method == "policy"]
    loaded = load_artefact(
        GENERAL, layout_from_scenario(CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain")).scenario)
    )
    env = CloudEdgeEnv(
        scenario_dir("7-21"), workload_file("chain"), observation_version=4, max_nodes=loaded.layout.max_nodes,
        max_slots=loaded.layout.max_slots, measured_conditions=True,
    )  # fmt: skip

    def planned(obs: np.ndarray, mask: np.ndarray) -> int:
        return plan_action(
            loaded.model, env.simulator, 2, 2, env.step_cost_ms, mask, 4, 2.0, noise=0.2, confidence=1.5, greedy_slack=1
        )

    for r in played:
        expected = run_policy(env, start_state(env, "traffic_surge", evaluation_seed(0, r.episode)), planned)
        assert (r.end_latency_ms, r.moves) == pytest.approx((expected.end_latency_ms, expected.moves))
        assert r.invalid_actions == 0
    # ... and not the raw policy's (on two of these four start states they differ).
    raw = [
        run_policy(env, start_state(env, "traffic_surge", evaluation_seed(0, r.episode)), loaded.decide) for r in played
    ]
    assert [(r.end_latency_ms, r.moves) for r in played] != [(o.end_latency_ms, o.moves) for o in raw]


def test_a_planning_report_names_every_setting_it_played_the_defaults_included() -> None:
    """Read back, the report must say the planner that played, not the fixed-margin planner of older reports."""
    from bento.planning_settings import DEFAULTS, PlanningSettings, gated_planning

    planning = {"plan_k": 2, "plan_horizon": 2, "plan_width": 4, "plan_margin": 2.0}  # noise and confidence: defaults
    report, _ = evaluate(scenario_dir("7-21"), [workload_file("chain")], GENERAL, [0], 1, ["steady"], **planning)
    played = PlanningSettings(**planning, plan_noise=DEFAULTS.plan_noise, plan_confidence=DEFAULTS.plan_confidence)
    assert report.settings["plan_noise"] == DEFAULTS.plan_noise
    assert gated_planning(report.model_dump()) == played


def test_planning_is_refused_for_a_policy_without_a_pod_node_network() -> None:
    with pytest.raises(ValueError, match="general"):
        evaluate(
            scenario_dir("7-21"), [workload_file("chain")], None, [0], 1, ["steady"], policy=FirstValidMove(), plan_k=2
        )


def _generated(tmp_path: Path, seed: int, **sizes: Any) -> tuple[Path, Path]:
    from ceenv.generator import generate_scenario

    drawn = generate_scenario(np.random.default_rng(seed), name=f"g{seed}", **sizes)
    folder = tmp_path / drawn.name
    folder.mkdir()
    (folder / "nodes.json").write_text(json.dumps(drawn.nodes_doc))
    (folder / "services.json").write_text(json.dumps(drawn.services_doc))
    (folder / drawn.workload_file).write_text(json.dumps(drawn.workload_doc))
    return folder, folder / drawn.workload_file


def test_traffic_surge_grows_a_generated_applications_front_service(tmp_path: Path) -> None:
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.evaluation.episodes import family_problem, surge_target

    assert surge_target(load_workload(workload_file("chain"), load_scenario(scenario_dir("7-21")))) == "aggregator"
    for seed in range(40):  # the first generated app whose front service may run more than one pod
        folder, work = _generated(tmp_path, seed, nodes=8)
        scenario = load_scenario(folder)
        workload = load_workload(work, scenario)
        if family_problem(scenario, workload, "traffic_surge") is None:
            break
    else:
        pytest.fail("no generated application with a scalable front service in 40 draws")
    env = CloudEdgeEnv(scenario, workload)
    front = env.layout.slot_service == env.layout.service_names.index(surge_target(workload))
    grew = 0
    for episode in range(4):
        steady = start_state(env, "steady", evaluation_seed(0, episode))[1]
        surged = start_state(env, "traffic_surge", evaluation_seed(0, episode))[1]
        grew += (surged[front] >= 0).sum() > (steady[front] >= 0).sum()
    assert grew > 0


def test_an_evaluation_that_cannot_run_whole_is_refused_before_any_work(tmp_path: Path) -> None:
    from ceenv.generator import GeneratorLimits

    folder, work = _generated(tmp_path, 1, nodes=2, services=1)  # a client node and one compute node
    with pytest.raises(ValueError, match="node_failure needs at least 2 non-client nodes"):
        plan_units(folder, [work], ["steady", "node_failure"], [0], 1, None)
    single, single_work = _generated(tmp_path, 2, nodes=6, limits=GeneratorLimits(max_replica=(1, 1)))
    with pytest.raises(ValueError, match="max-replica is 1"):
        plan_units(single, [single_work], ["traffic_surge"], [0], 1, None)
    for seeds, message in (
        ([], "no evaluation seeds"),
        ([99, 100], r"\[100\] are outside 0..99"),
        ([0, 0], "duplicates"),
    ):
        with pytest.raises(ValueError, match=message):
            plan_units(scenario_dir("7-21"), [workload_file("chain")], ["steady"], seeds, 1, None)


class Recording(FirstValidMove):
    """Records torch's thread count at each decision; a unit's first decision waits for the others'."""

    def __init__(self, seen: list[int], together: threading.Barrier) -> None:
        super().__init__()
        self.seen, self.together, self.waited = seen, together, False

    def decide(self, obs: np.ndarray, mask: np.ndarray) -> int:
        import torch

        if not self.waited:
            self.waited = True
            self.together.wait()
        self.seen.append(torch.get_num_threads())
        return super().decide(obs, mask)


def test_policies_decide_on_one_torch_thread_and_the_count_is_restored_after_concurrent_units() -> None:
    """As the service decides (torch_threads 1); units run concurrently in Prefect's thread pool.

    torch's OpenMP backend keeps a thread count per OS thread, and a thread takes the process's
    count when it first runs torch code: a count set in one thread alone does not reach pool threads
    that ran torch before (the warm pool), and a unit whose thread starts while another unit holds 1
    must not put 1 back as "what it was" (the fresh pool: later threads would then start on 1).
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from flows.evaluation import evaluate_unit

    def new_thread_count() -> int:
        counts: list[int] = []
        thread = threading.Thread(target=lambda: counts.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return counts[0]

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        units = plan_units(scenario_dir("7-21"), [workload_file("chain")], ["steady"], [0, 1, 2, 3], 1, None)
        for warm in (True, False):
            seen: list[int] = []
            together = threading.Barrier(4, timeout=60)  # all four units are deciding at once
            with ThreadPoolExecutor(max_workers=4) as pool:
                if warm:
                    list(pool.map(lambda _: torch.get_num_threads(), range(16)))
                list(pool.map(lambda unit: evaluate_unit(unit, Recording(seen, together)), units))  # noqa: B023
                after = list(pool.map(lambda _: torch.get_num_threads(), range(16)))
            assert seen and set(seen) == {1}, (warm, seen)
            assert set(after) == {2}, (warm, after)
            assert torch.get_num_threads() == 2 and new_thread_count() == 2, warm
    finally:
        torch.set_num_threads(before)


def _record(seed: int, method: str, start: float, end: float) -> Any:
    from flows.evaluation.episodes import EpisodeRecord

    return EpisodeRecord("7-21", "chain", "steady", seed, 0, method, start, end, 1, 0.0, 0)


def test_making_latency_worse_where_nothing_can_be_gained_never_scores_full_marks() -> None:
    """Seeds 0-3: best-known gains 100 ms, the policy 95. Seed 4: nothing to gain, and the policy makes
    500 ms into 650. That seed scores 0, not 1.0, so the mean is 0.76 and the gate refuses it."""
    from flows.evaluation.gate import GateRules, gate
    from flows.evaluation.report import summarize

    records = []
    for seed in range(5):
        best_end = 400.0 if seed < 4 else 500.0
        records += [
            _record(seed, "policy", 500.0, 405.0 if seed < 4 else 650.0),
            _record(seed, "best_known", 500.0, best_end),
            _record(seed, "greedy", 500.0, 430.0 if seed < 4 else 500.0),
            _record(seed, "noop", 500.0, 500.0),
            _record(seed, "random", 500.0, 520.0),
        ]
    [group] = summarize(records)
    assert group.methods["policy"].fraction_of_best_known.mean == pytest.approx(0.76)
    assert group.methods["noop"].fraction_of_best_known.mean == pytest.approx(0.2)  # it left seed 4 as it was
    verdict = gate(EvaluationReport(groups=[group]), None, GateRules())
    assert not verdict.passed and "min_fraction_of_best_known" in {c.rule for c in verdict.checks if not c.passed}


def test_a_redrawn_start_state_never_takes_a_training_or_validation_seed() -> None:
    from flows.evaluation.episodes import redraw_seed

    class Draws:
        def __init__(self) -> None:
            self.values = iter([5, VALIDATION_SEED_BASE + 7, TEST_SEED_BASE - 1, TEST_SEED_BASE + 42])

        def integers(self, high: int) -> int:
            return next(self.values)

    assert redraw_seed(Draws()) == TEST_SEED_BASE + 42  # type: ignore[arg-type]
