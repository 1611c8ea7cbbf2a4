"""Library functions behind ``reach sim``: evaluate a placement, run the demo, validate files.

They resolve names to files (:mod:`flows.local.paths`), call :mod:`ceenv`, and return plain data; the
CLI only prints. ``plot_demo`` draws the demo's PNG (matplotlib, imported lazily).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ceenv.baselines import Outcome, run_balancer, run_greedy, run_noop
from ceenv.latency import LatencyModel, build_network, nominal_conditions
from ceenv.layout import layout_from_scenario
from ceenv.placement import draw_start, load_assignment, slots_from_assignment
from ceenv.scenario import Scenario, load_scenario, parse_nodes, parse_services
from ceenv.search import best_known
from ceenv.simulator import Simulator
from ceenv.validation import ScenarioError, read_json
from ceenv.workload import Workload, check_workload, load_workload
from flows.local.paths import resolve_scenario, resolve_workload


def load_problem(scenario: str, workload: str) -> tuple[Scenario, Workload]:
    """Resolve and load a scenario and a workload, cross-checked."""
    scenario_dir = resolve_scenario(scenario)
    loaded = load_scenario(scenario_dir)
    return loaded, load_workload(resolve_workload(workload, scenario_dir), loaded)


def placement_latency(scenario: str, workload: str, placement: Path) -> dict[str, Any]:
    """``{"latency_ms": app latency, "endpoints": {name: ms}}`` of a placement file, nominal values."""
    loaded, work = load_problem(scenario, workload)
    model = LatencyModel(loaded, work)
    layout = layout_from_scenario(loaded)
    conditions = nominal_conditions(loaded)
    slot_node = slots_from_assignment(model, layout, conditions, load_assignment(placement), str(placement))
    sim = Simulator(model, layout, conditions, slot_node)
    costs = model.prepare(build_network(loaded, conditions))
    return {"latency_ms": sim.latency_ms, "endpoints": model.endpoint_latencies(sim.counts, costs)}


@dataclass(frozen=True)
class DemoResult:
    scenario: str
    workload: str
    node_names: tuple[str, ...]
    service_names: tuple[str, ...]
    outcomes: tuple[Outcome, ...]


def run_demo(scenario: str, workload: str, seed: int, dynamic: bool = True) -> DemoResult:
    """Draw a start state and run no-op, the balancer, greedy and the best-known search on it."""
    loaded, work = load_problem(scenario, workload)
    model = LatencyModel(loaded, work)
    layout = layout_from_scenario(loaded)
    rng = np.random.default_rng(seed)
    conditions, slot_node = draw_start(model, layout, rng, dynamic)
    start = Simulator(model, layout, conditions, slot_node)
    outcomes = (run_noop(start), run_balancer(start), run_greedy(start), best_known(start, rng))
    return DemoResult(loaded.name, work.name, layout.node_names, layout.service_names, outcomes)


def plot_demo(result: DemoResult, target: Path) -> None:
    """A PNG: pods per service and node for each method, and the latency each reached."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [o for o in result.outcomes if o.method != "balancer"]
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(4.2 * (len(shown) + 1), 4.2), constrained_layout=True)
    for ax, outcome in zip(axes, shown, strict=False):
        counts = np.array([[outcome.placement[s].count(n) for n in result.node_names] for s in result.service_names])
        ax.imshow(counts, cmap="Blues", aspect="auto", vmin=0)
        for (i, j), value in np.ndenumerate(counts):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8)
        ax.set_xticks(
            range(len(result.node_names)), [n.replace("tb-", "") for n in result.node_names], rotation=90, fontsize=7
        )
        ax.set_yticks(range(len(result.service_names)), result.service_names, fontsize=8)
        ax.set_title(f"{outcome.method}: {outcome.end_latency_ms:.1f} ms, {outcome.moves} moves", fontsize=9)
    bars = axes[-1]
    bars.bar([o.method for o in result.outcomes], [o.end_latency_ms for o in result.outcomes], color="tab:blue")
    bars.set_ylabel("end-to-end latency (ms)")
    bars.set_title(f"{result.scenario} / {result.workload}", fontsize=9)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(target)


def validate_files(scenario: str, workload: str | None) -> tuple[list[str], str]:
    """Check each file on its own, then across files; return every problem found and a summary."""
    problems: list[str] = []
    try:
        scenario_dir = resolve_scenario(scenario)
    except ScenarioError as err:
        return [str(err)], ""
    layers: tuple[str, ...] | None = None
    try:
        _, layers, _ = parse_nodes(read_json(scenario_dir / "nodes.json"), str(scenario_dir / "nodes.json"))
    except ScenarioError as err:
        problems.append(str(err))
    try:
        parse_services(read_json(scenario_dir / "services.json"), str(scenario_dir / "services.json"), layers)
    except ScenarioError as err:
        problems.append(str(err))
    summary = ""
    if not problems:
        try:
            loaded = load_scenario(scenario_dir)
            summary = (
                f"{scenario_dir}: {len(loaded.nodes)} nodes in layers {list(loaded.layers)}, "
                f"{len(loaded.services)} services, {loaded.slot_count} pod slots, CPU types {list(loaded.cpu_types)}"
            )
            if workload is not None:
                file = resolve_workload(workload, scenario_dir)
                work = load_workload(file)
                check_workload(work, loaded, str(file))
                summary += f"; {file.name}: {len(work.endpoints)} endpoint(s)"
        except ScenarioError as err:
            problems.append(str(err))
    return problems, summary
