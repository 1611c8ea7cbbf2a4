"""Policy-service speed and stability: ``POST /get_action`` over HTTP on loopback against ``bentoml serve``.

Protocol. A 13-29 / aggregator_sequential policy (``--artefact DIR``, or by default a MaskablePPO
trained for ``--train-steps`` steps here: decision latency does not depend on policy quality) is
saved into a private BentoML home (a temporary folder, never the repository) and served by
``bentoml serve bento.service:PolicyService`` on a free 127.0.0.1 port (one worker). The request
bodies are REACH payloads of 64 different start states of the env. Phases, after a warm-up:

1. *sequential*: one client, one request at a time, keep-alive connection (httpx), and a second
   run opening a new connection per request (urllib, as the migrator does); p50/p99 per request.
2. *concurrent*: 8 clients in threads, closed loop; throughput and p50/p99.
3. *load*: 8 clients, closed loop (the highest rate the server sustains), for ``--load-seconds``
   (default 120); every failed request is counted, the server's RSS (its whole process tree) is
   sampled every 5 s and the drift after the first minute is reported.

Every run's throughput (req/s) is measured the same way: the requests it finished (answered or
failed) divided by the wall-clock seconds of the timed run, not derived from the mean latency.

The server is stopped by its PID. Results print as a table, go to ``--json`` if given, and are
written as a Markdown table with the command and the date to ``--markdown``
(``benchmarks/results/service/bench.md`` by default), which the README includes
(``scripts/readme_tables.py``).

``--planning`` measures decision-time planning over HTTP instead: a general (observation version 4)
``--artefact`` is served once per cluster of ``--sizes`` and per setting, raw and with planning
(bento arguments ``scenario``, ``workload`` and ``plan_k``/``plan_horizon``/``plan_width``/``plan_margin``/``plan_noise``/``plan_confidence``,
as ``reach serve --plan-k`` passes them), and ``--sequential`` keep-alive requests of that cluster's
start states give p50/p95/p99 (targets p99 ≤ 15 ms raw, ≤ 50 ms with planning); the table goes to
``benchmarks/results/service/planning.md``.

    flock /tmp/reach-heavy.lock .venv/bin/python benchmarks/bench_service.py [--load-seconds 120] [--json out/bench_service.json]
    flock /tmp/reach-heavy.lock .venv/bin/python benchmarks/bench_service.py --planning --artefact data/policies/general-v4
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from planning_options import add_planning_options

from bento.planning_settings import PLANNING_KEYS, PlanningSettings

REPO = Path(__file__).resolve().parents[1]
BENTOML = Path(sys.executable).with_name("bentoml")
RESULTS = REPO / "benchmarks" / "results" / "service"
TARGET_P50_MS, TARGET_P99_MS = 5.0, 15.0
TARGET_PLANNING_P99_MS = 50.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", default="13-29", help="Scenario name under data/scenarios.")
    parser.add_argument("--workload", default="aggregator_sequential", help="Workload name under data/workloads.")
    parser.add_argument("--artefact", type=Path, help="A trained artefact directory (default: train one briefly).")
    parser.add_argument("--train-steps", type=int, default=512, help="Steps of the brief training (no --artefact).")
    parser.add_argument("--sequential", type=int, default=2000, help="Requests of each sequential run.")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients of the concurrent and load runs.")
    parser.add_argument("--concurrent-seconds", type=float, default=20.0, help="Duration of the concurrent run.")
    parser.add_argument("--load-seconds", type=float, default=120.0, help="Duration of the load run (0 = skip).")
    parser.add_argument("--json", type=Path, help="Write the results here as JSON.")
    parser.add_argument(
        "--markdown",
        type=Path,
        help="Write the results here as a Markdown table, which the README includes (default "
        "benchmarks/results/service/bench.md, or planning.md with --planning).",
    )
    parser.add_argument(
        "--planning", action="store_true", help="Measure a general --artefact raw and with planning on --sizes."
    )
    parser.add_argument(
        "--sizes",
        default="7-21,13-29,19-37,limits",
        help="--planning: the clusters served, comma-separated; 'limits' is a generated 40-node, 76-slot cluster.",
    )
    parser.add_argument(
        "--in-process",
        type=int,
        default=640,
        help="--planning: also time Policy.decide in this process (one torch thread, no HTTP) on this many start "
        "states of each cluster, raw and with planning, beside the HTTP figures (0: skip).",
    )
    chosen = PlanningSettings.chosen()  # the chosen planning (bento.planning_settings): `reach serve --plan-k 4`
    parser.add_argument("--plan-k", type=int, default=chosen.plan_k, help="--planning: bento argument plan_k (> 0).")
    add_planning_options(parser, PLANNING_KEYS[1:], "--planning: ")
    args = parser.parse_args(argv)
    if args.planning and (args.artefact is None or args.plan_k < 1):
        parser.error("--planning needs --artefact (a general, observation version 4 policy) and --plan-k >= 1")
    if args.in_process < 0:
        parser.error(f"--in-process must be 0 (skip) or a number of start states, not {args.in_process}")
    if args.markdown is None:
        args.markdown = RESULTS / ("planning.md" if args.planning else "bench.md")
    return args


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarise(latencies_s: list[float]) -> dict[str, float]:
    ms = [x * 1e3 for x in latencies_s]
    return {
        "requests": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


def prepare_model(args: argparse.Namespace, home: Path) -> tuple[str, str]:
    """Save the artefact (trained here if none was given) into the private store; (tag, description)."""
    os.environ["BENTOML_HOME"] = str(home)  # before bentoml is imported: its stores read it once
    from bento.policy import GateVerdict
    from bento.store import save_policy

    scenario_dir = REPO / "data" / "scenarios" / args.scenario
    workload_file = REPO / "data" / "workloads" / f"{args.workload}_call_patterns.json"
    artefact, description = args.artefact, f"artefact {args.artefact}"
    if artefact is None:
        artefact = train_briefly(scenario_dir, workload_file, home.parent / "artefact", args.train_steps)
        description = f"MaskablePPO trained {args.train_steps} steps here (speed does not depend on quality)"
    from bento.artefact import read_metadata

    description += f", observation version {read_metadata(artefact).observation_version}"
    gate = GateVerdict(passed=False, reason="benchmark model: not gated")
    return str(save_policy(artefact, gate=gate, labels={"purpose": "benchmark"}).tag), description


def train_briefly(scenario_dir: Path, workload_file: Path, target: Path, steps: int) -> Path:
    import torch
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.logger import Logger

    from bento.artefact import describe, save_artefact
    from bento.network import GainBiasedPolicy
    from ceenv.env import CloudEdgeEnv

    torch.set_num_threads(1)
    env = CloudEdgeEnv(scenario_dir, workload_file)  # the default observation and network, as `reach train`
    model = MaskablePPO(GainBiasedPolicy, env, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.set_logger(Logger(folder=None, output_formats=[]))  # no /tmp/SB3-<date> folder
    model.learn(steps)
    metadata = describe(
        env.layout,
        scenario_dir,
        workload_file,
        step_cost_ms=env.step_cost_ms,
        max_steps=env.max_steps,
        training_summary={"steps": steps, "purpose": "benchmark"},
    )
    return save_artefact(target, model, metadata)


LIMITS_CLUSTER = "limits"  # a --sizes name: a generated cluster at the general policy's limits
LIMITS_SIZES = {"nodes": 40, "services": 25}  # with generator seed 5: 40 nodes, 76 pod slots (limits: 40 x 80)
_GENERATED: dict[str, tuple[Path, Path]] = {}


def cluster_files(scenario: str, workload: str) -> tuple[Path, Path]:
    """The scenario directory and call-pattern file of a reference cluster, by name.

    ``limits`` is a generated cluster and application (``ceenv.generator``, seed 5: 40 nodes, 25
    services, 76 pod slots), written once per process into a temporary folder that is removed when
    the process exits; ``workload`` is ignored for it (it brings its own).
    """
    if scenario == LIMITS_CLUSTER:
        if scenario not in _GENERATED:
            import numpy as np

            from ceenv.generator import generate_scenario

            drawn = generate_scenario(
                np.random.default_rng(5),
                name="limits-40",
                nodes=LIMITS_SIZES["nodes"],
                services=LIMITS_SIZES["services"],
            )
            folder = Path(tempfile.mkdtemp(prefix="reach-bench-limits-")) / drawn.name
            atexit.register(shutil.rmtree, folder.parent, True)  # the files outlive every server of this process
            folder.mkdir()
            names = ("nodes.json", "services.json", drawn.workload_file)
            for name, document in zip(names, drawn.documents(), strict=True):
                (folder / name).write_text(json.dumps(document))
            _GENERATED[scenario] = (folder, folder / drawn.workload_file)
        return _GENERATED[scenario]
    return REPO / "data" / "scenarios" / scenario, REPO / "data" / "workloads" / f"{workload}_call_patterns.json"


def request_bodies(scenario: str, workload: str, count: int = 64) -> list[bytes]:
    """REACH payloads of ``count`` start states of the env, serialised once."""
    from ceenv.env import CloudEdgeEnv
    from ceenv.payload import request_from_state

    env = CloudEdgeEnv(*cluster_files(scenario, workload))
    bodies = []
    for seed in range(count):
        env.reset(seed=seed)
        sim = env.simulator
        payload = request_from_state(
            env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, sim.target_ok()
        )
        bodies.append(json.dumps(payload).encode())
    return bodies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path, tag: str, log: Path, arguments: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``bentoml serve`` of model ``tag`` with the bento ``arguments`` (``--arg key=value``) on a free port."""
    import httpx

    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    command = [str(BENTOML), "serve", "bento.service:PolicyService", "--host", "127.0.0.1", "--port", str(port)]
    for key, value in {"model_tag": tag, **(arguments or {})}.items():
        command += ["--arg", f"{key}={value}"]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(process)
    raise RuntimeError(f"bentoml serve was not ready after 120 s; see {log}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def tree_rss_mb(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / 2**20


def run_sequential_keepalive(url: str, bodies: list[bytes], n: int) -> tuple[list[float], int]:
    import httpx

    latencies, failures = [], 0
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=10) as client:
        for i in range(n):
            began = time.perf_counter()
            response = client.post(f"{url}/get_action", content=bodies[i % len(bodies)], headers=headers)
            latencies.append(time.perf_counter() - began)
            failures += response.status_code != 200
    return latencies, failures


def run_sequential_new_connection(url: str, bodies: list[bytes], n: int) -> tuple[list[float], int]:
    """Like the migrator: urllib, a new connection per request."""
    latencies, failures = [], 0
    for i in range(n):
        request = urllib.request.Request(
            f"{url}/get_action", data=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
        )
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                failures += response.status != 200
        except OSError:
            failures += 1
        latencies.append(time.perf_counter() - began)
    return latencies, failures


SequentialRun = Callable[[str, list[bytes], int], tuple[list[float], int]]


def timed_sequential(run: SequentialRun, url: str, bodies: list[bytes], n: int) -> dict[str, Any]:
    """One sequential ``run`` of ``n`` requests: its latency summary, failures, wall-clock seconds and measured
    throughput (requests finished / those seconds, as :meth:`ClosedLoop.summary`)."""
    began = time.perf_counter()
    latencies, failed = run(url, bodies, n)
    elapsed_s = time.perf_counter() - began
    return {
        **summarise(latencies),
        "failed": failed,
        "seconds": elapsed_s,
        "throughput_rps": len(latencies) / elapsed_s,
    }


def sequential_runs(url: str, bodies: list[bytes], n: int) -> dict[str, dict[str, Any]]:
    """The two sequential runs (after the warm-up): keep-alive, then a new connection per request."""
    return {
        "sequential_keepalive": timed_sequential(run_sequential_keepalive, url, bodies, n),
        "sequential_new_connection": timed_sequential(run_sequential_new_connection, url, bodies, n),
    }


class ClosedLoop:
    """``clients`` threads, each with its own keep-alive connection, posting as fast as answers come."""

    def __init__(self, url: str, bodies: list[bytes], clients: int) -> None:
        self.url, self.bodies, self.clients = url, bodies, clients
        self.latencies: list[list[float]] = [[] for _ in range(clients)]
        self.failures = [0] * clients
        self.errors: list[str] = []
        self._stop = threading.Event()

    def _client(self, index: int) -> None:
        import httpx

        headers = {"Content-Type": "application/json"}
        i = index
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    response = client.post(
                        f"{self.url}/get_action", content=self.bodies[i % len(self.bodies)], headers=headers
                    )
                    ok = response.status_code == 200 and "is_stop" in response.json()
                except Exception as err:  # counted, not raised: the run reports every failure
                    ok = False
                    self.errors.append(f"{type(err).__name__}: {err}")
                self.latencies[index].append(time.perf_counter() - began)
                self.failures[index] += not ok
                i += self.clients

    def run(self, seconds: float, on_tick: Any = None, tick_s: float = 5.0) -> float:
        threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(self.clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        next_tick = began
        while time.perf_counter() - began < seconds:
            if on_tick is not None and time.perf_counter() >= next_tick:
                on_tick(time.perf_counter() - began)
                next_tick += tick_s
            time.sleep(0.05)
        self._stop.set()
        for thread in threads:
            thread.join(timeout=15)
        return time.perf_counter() - began

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        flat = [x for per_client in self.latencies for x in per_client]
        return {
            **summarise(flat),
            "clients": self.clients,
            "seconds": elapsed_s,
            "throughput_rps": len(flat) / elapsed_s,
            "failed": sum(self.failures),
            "errors": self.errors[:5],
        }


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="reach-bench-service-") as scratch:
        home = Path(scratch) / "bentoml"
        home.mkdir()
        tag, model_description = prepare_model(args, home)
        if args.planning:
            from service_planning import measure_planning

            measure_planning(args, home, tag, model_description, Path(scratch))
            return
        bodies = request_bodies(args.scenario, args.workload)
        log = Path(scratch) / "serve.log"
        process, url = start_server(home, tag, log)
        results: dict[str, Any] = {"model": tag, "model_description": model_description, "scenario": args.scenario}
        try:
            results["server_pid"] = process.pid
            run_sequential_keepalive(url, bodies, 300)  # warm-up
            results.update(sequential_runs(url, bodies, args.sequential))
            loop = ClosedLoop(url, bodies, args.clients)
            results["concurrent"] = loop.summary(loop.run(args.concurrent_seconds))
            if args.load_seconds > 0:
                samples: list[tuple[float, float]] = []
                load = ClosedLoop(url, bodies, args.clients)
                elapsed = load.run(args.load_seconds, on_tick=lambda t: samples.append((t, tree_rss_mb(process.pid))))
                samples.append((elapsed, tree_rss_mb(process.pid)))
                after_warmup = [mb for t, mb in samples if t >= min(60.0, args.load_seconds / 2)]
                results["load"] = {
                    **load.summary(elapsed),
                    "rss_mb_first": samples[0][1],
                    "rss_mb_last": samples[-1][1],
                    "rss_mb_max": max(mb for _, mb in samples),
                    "rss_mb_drift_after_warmup": after_warmup[-1] - after_warmup[0] if after_warmup else 0.0,
                    "rss_samples": [(round(t, 1), round(mb, 1)) for t, mb in samples],
                }
        finally:
            stop_server(process)
        report(results)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))
        write_markdown(results, args)


RUN_NAMES = {
    "sequential_keepalive": "sequential, keep-alive (httpx)",
    "sequential_new_connection": "sequential, new connection per request (like the migrator)",
    "concurrent": "{clients} concurrent clients, {concurrent_seconds:g} s",
    "load": "load: {clients} clients at full speed, {load_seconds:g} s",
}


def write_markdown(results: dict[str, Any], args: argparse.Namespace) -> None:
    """The README's table of this benchmark (benchmarks/bench_tables.py), with the command and the date."""
    from bench_tables import table, write_tables

    rows = []
    for name, label in RUN_NAMES.items():
        if name not in results:
            continue
        r = results[name]
        rps = r["throughput_rps"]  # measured: requests finished / wall-clock seconds of the run
        title = label.format(
            clients=args.clients, concurrent_seconds=args.concurrent_seconds, load_seconds=args.load_seconds
        )
        rows.append(
            [
                title,
                r["requests"],
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['max_ms']:.1f}",
                f"{rps:.0f}",
                r["failed"],
            ]
        )
    seq = results["sequential_keepalive"]
    met = seq["p50_ms"] <= TARGET_P50_MS and seq["p99_ms"] <= TARGET_P99_MS
    blocks = [
        f"Model: {results['model_description']}; scenario {results['scenario']}; `bentoml serve`, one worker, 127.0.0.1; "
        "req/s: requests finished / wall-clock seconds of the run.",
        table(["run", "requests", "p50 ms", "p99 ms", "max ms", "req/s", "failed"], rows, "lrrrrrr"),
        f"Targets p50 ≤ {TARGET_P50_MS:g} ms, p99 ≤ {TARGET_P99_MS:g} ms (sequential, keep-alive): "
        f"**{'met' if met else 'missed'}**.",
    ]
    if "load" in results:
        load = results["load"]
        blocks.append(
            f"Server memory (process tree RSS) over the load run: {load['rss_mb_first']:.0f} MB → "
            f"{load['rss_mb_last']:.0f} MB (max {load['rss_mb_max']:.0f} MB, "
            f"{load['rss_mb_drift_after_warmup']:+.1f} MB after the warm-up)."
        )
    path = write_tables(args.markdown, "bench_service.py", blocks)
    print(f"wrote {path}")


def report(results: dict[str, Any]) -> None:
    print(f"model {results['model']} ({results['model_description']}), scenario {results['scenario']}")
    print(f"{'run':<28}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'req/s':>9}{'failed':>8}")
    for name in ("sequential_keepalive", "sequential_new_connection", "concurrent", "load"):
        if name not in results:
            continue
        r = results[name]
        rps = r["throughput_rps"]
        print(
            f"{name:<28}{r['requests']:>9}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['max_ms']:>9.1f}{rps:>9.0f}{r['failed']:>8}"
        )
    seq = results["sequential_keepalive"]
    verdict = "met" if seq["p50_ms"] <= TARGET_P50_MS and seq["p99_ms"] <= TARGET_P99_MS else "MISSED"
    print(f"targets p50 <= {TARGET_P50_MS} ms, p99 <= {TARGET_P99_MS} ms (sequential, keep-alive): {verdict}")
    if "load" in results:
        load = results["load"]
        print(
            f"load: RSS {load['rss_mb_first']:.0f} -> {load['rss_mb_last']:.0f} MB (max {load['rss_mb_max']:.0f}, "
            f"drift after warm-up {load['rss_mb_drift_after_warmup']:+.1f} MB), failed {load['failed']}"
        )


if __name__ == "__main__":
    main()
