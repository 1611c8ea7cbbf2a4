"""A policy **stand-in** on 127.0.0.1 that answers REACH requests with the simulator's greedy move.

It is not the learned policy: it speaks the same wire payload (MODEL.md §4, ``POST /get_action``)
and answers with the single move that the CEEnv latency model (nominal conditions) says lowers the
application latency most, among the moves the request allows (``pod_deployable``), or stop when no
move gains more than the migration cost λ. Like the policy service, it moves a pod off a node the
request marks ``available: false`` before anything else (:mod:`ceenv.evacuation`). The closed-loop e2e test and ``reach demo --policy
greedy-standin`` use it so that the loop can be checked fast and independently of training
quality; every record and table names it ``greedy-standin``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from ceenv.baselines import best_move
from ceenv.evacuation import EVACUATION_RULE, evacuation_move
from ceenv.latency import LatencyModel, nominal_conditions
from ceenv.layout import IntArray, Layout, layout_from_scenario, placement_counts
from ceenv.observation import move_mask
from ceenv.payload import PayloadError, state_from_request
from ceenv.scenario import load_scenario
from ceenv.schema import ActionRequest
from ceenv.simulator import DEFAULT_STEP_COST_MS, Simulator
from ceenv.workload import load_workload

STANDIN_NAME = "greedy-standin"
STOP = {"pod_name": "", "target_node": "", "is_stop": True}


class GreedyAdvisor:
    """The greedy answer to one request, by the latency model of a scenario and workload."""

    def __init__(self, model: LatencyModel, layout: Layout, min_gain_ms: float = DEFAULT_STEP_COST_MS) -> None:
        self.model = model
        self.layout = layout
        self.nominal = nominal_conditions(model.scenario)
        self.costs = model.nominal_costs()
        self.min_gain_ms = min_gain_ms

    def latency_of(self, slot_node: IntArray) -> float | None:
        """Nominal latency in ms of a placement, or None when a called service has no pod."""
        counts = placement_counts(self.layout, slot_node)
        if not counts.sum(axis=1)[self.model.called_services].all():
            return None
        return float(self.model.latency(counts, self.costs))

    def simulator(self, free_cpu: np.ndarray, free_memory: np.ndarray, slot_node: np.ndarray) -> Simulator:
        """A simulator whose free capacity equals the request's (nominal network conditions)."""
        base = Simulator(self.model, self.layout, self.nominal, slot_node)
        used_cpu = self.nominal.cpu_millicores - base.free_cpu_millicores
        used_memory = self.nominal.memory_bytes - base.free_memory_bytes
        conditions = dataclasses.replace(
            self.nominal, cpu_millicores=free_cpu + used_cpu, memory_bytes=free_memory + used_memory
        )
        return Simulator(self.model, self.layout, conditions, slot_node)

    def answer(self, request: ActionRequest) -> dict[str, Any]:
        """ceenv's greedy decision on the request's state, among the moves its ``pod_deployable`` allows."""
        state = state_from_request(self.layout, request)
        mask = move_mask(self.layout, state.slot_node, state.target_ok)
        evacuation = evacuation_move(self.layout, state, mask, self.latency_of)
        if evacuation is not None:
            slot, node = evacuation
            target = self.layout.node_names[node]
            return {"pod_name": state.slot_pod[slot], "target_node": target, "is_stop": False,
                    "decision_rule": EVACUATION_RULE}  # fmt: skip
        sim = self.simulator(state.free_cpu_millicores, state.free_memory_bytes, state.slot_node)
        move = best_move(sim, self.min_gain_ms, mask)
        if move is None:
            return STOP
        slot, node = move
        return {"pod_name": state.slot_pod[slot], "target_node": self.layout.node_names[node], "is_stop": False}


def greedy_advisor(scenario_dir: Path, workload_path: Path, min_gain_ms: float = DEFAULT_STEP_COST_MS) -> GreedyAdvisor:
    scenario = load_scenario(scenario_dir)
    model = LatencyModel(scenario, load_workload(workload_path, scenario))
    return GreedyAdvisor(model, layout_from_scenario(scenario), min_gain_ms)


class GreedyStandIn:
    """The stand-in as an HTTP server on 127.0.0.1 (a daemon thread); ``answers`` records what it said."""

    def __init__(self, advisor: GreedyAdvisor, port: int = 0) -> None:
        self.advisor = advisor
        self.answers: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, name=STANDIN_NAME, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                standin._reply(self, 200 if self.path in ("/readyz", "/livez") else 404, {"policy": STANDIN_NAME})

            def do_POST(self) -> None:
                if self.path != "/get_action":
                    standin._reply(self, 404, {"detail": f"unknown path {self.path}"})
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = standin.respond(body)
                standin._reply(self, status, answer)

            def log_message(self, *args: object) -> None:
                return

        return Handler

    def respond(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            answer = self.advisor.answer(ActionRequest.model_validate_json(body))
        except (ValueError, PayloadError) as exc:
            return 422, {"detail": str(exc)}
        self.answers.append(answer)
        return 200, answer

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> GreedyStandIn:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.loop.standin``: serve the greedy stand-in on 127.0.0.1 until SIGTERM or SIGINT."""
    import argparse
    import signal

    from flows.local.paths import resolve_scenario, resolve_workload

    parser = argparse.ArgumentParser(prog="python -m flows.loop.standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="7-21")
    parser.add_argument("--workload", default="aggregator_sequential")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    args = parser.parse_args(argv)
    scenario_dir = resolve_scenario(args.scenario)
    standin = GreedyStandIn(greedy_advisor(scenario_dir, resolve_workload(args.workload, scenario_dir)), args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    standin.start()
    print(f"{STANDIN_NAME} (not the learned policy) on {standin.url}/get_action", flush=True)
    stop.wait()
    standin.close()
    return 0


if __name__ == "__main__":  # pragma: no cover - process entry point
    raise SystemExit(main())
