"""``bench_service.py --planning``: ``POST /get_action`` latency over HTTP of a general policy, raw and with planning.

For each cluster of ``--sizes`` (a reference size with ``--workload``, or ``limits``: a generated
cluster at the policy's limits) the general artefact is served
twice by a real ``bentoml serve`` on 127.0.0.1: with the serve-time arguments ``scenario`` and
``workload`` only (the raw policy), then with ``plan_k``, ``plan_horizon``, ``plan_width``,
``plan_margin``, ``plan_noise`` and ``plan_confidence`` too (decision-time planning, :mod:`bento.planning`), which is what ``reach serve
--scenario … --workload … --plan-k K`` passes. Each server gets a warm-up, then ``--sequential``
keep-alive requests (httpx, one at a time) of 64 start states of that cluster; p50/p95/p99/max are
reported beside the targets (p99 ≤ 15 ms raw, ≤ 50 ms with planning), and beside them the same
decisions in-process (``--in-process`` start states, ``Policy.decide`` with one torch thread, no
HTTP: what the decision costs on this machine and what serving adds). The answers to the 64 states
are compared between the two settings (how many differ) so the table shows planning was on.
Written as ``benchmarks/results/service/planning.md`` (the README includes it). Imported by
``benchmarks/bench_service.py`` (run as a script, so this module sits on its path).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench_service import (
    TARGET_P99_MS,
    TARGET_PLANNING_P99_MS,
    cluster_files,
    request_bodies,
    run_sequential_keepalive,
    start_server,
    stop_server,
    summarise,
)

from bento.planning_settings import PLANNING_KEYS

WARMUP_REQUESTS = 100
HEADER = [
    "cluster",
    "setting",
    "requests",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "failed",
    "p99 target ms",
    "answers differing from raw",
    "in-process p50 ms",
    "in-process p99 ms",
]
IN_PROCESS_WARMUP = 64  # untimed Policy.decide calls before the timed ones (--in-process)


def answers(url: str, bodies: list[bytes]) -> list[tuple[Any, Any, Any]]:
    """The (pod, node, is_stop) answer to each body, in order; a failed request is ``(status, None, None)``."""
    import httpx

    out: list[tuple[Any, Any, Any]] = []
    with httpx.Client(timeout=10) as client:
        for body in bodies:
            response = client.post(f"{url}/get_action", content=body, headers={"Content-Type": "application/json"})
            if response.status_code != 200:
                out.append((response.status_code, None, None))
                continue
            answer = response.json()
            out.append((answer.get("pod_name"), answer.get("target_node"), answer.get("is_stop")))
    return out


def serve_and_measure(
    home: Path, tag: str, log: Path, arguments: dict[str, str], bodies: list[bytes], requests: int
) -> dict[str, Any]:
    """One server with ``arguments``: warm-up, ``requests`` sequential keep-alive requests, and its answers."""
    process, url = start_server(home, tag, log, arguments)
    try:
        run_sequential_keepalive(url, bodies, WARMUP_REQUESTS)
        latencies, failed = run_sequential_keepalive(url, bodies, requests)
        decided = answers(url, bodies)
    finally:
        stop_server(process)
    return {**summarise(latencies), "failed": failed, "answers": decided}


def measure_planning(args: argparse.Namespace, home: Path, tag: str, description: str, scratch: Path) -> None:
    """Every size × (raw, planning): measure, print, and write the Markdown table (and ``--json``)."""
    # The bento arguments (--arg key=value): integers as they are, floats in their shortest form.
    planning = {
        key: f"{value:g}" if isinstance(value, float) else str(value) for key, value in planning_values(args).items()
    }
    rows: list[dict[str, Any]] = []
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        scenario_dir, workload_file = cluster_files(size, args.workload)
        cluster = {"scenario": str(scenario_dir), "workload": str(workload_file)}
        bodies = request_bodies(size, args.workload)
        raw = serve_and_measure(home, tag, scratch / f"serve-{size}-raw.log", cluster, bodies, args.sequential)
        planned = serve_and_measure(
            home, tag, scratch / f"serve-{size}-planning.log", {**cluster, **planning}, bodies, args.sequential
        )
        differ = sum(a != b for a, b in zip(raw["answers"], planned["answers"], strict=True))
        if args.in_process:
            raw["in_process"] = in_process_times(args, scenario_dir, workload_file, {})
            planned["in_process"] = in_process_times(args, scenario_dir, workload_file, planning_values(args))
        for setting, result in (("raw policy", raw), ("planning", planned)):
            target = TARGET_PLANNING_P99_MS if setting == "planning" else TARGET_P99_MS
            rows.append({"size": size, "setting": setting, "target_p99_ms": target, "answers_differ": differ, **result})
            print(
                f"{size:<7} {setting:<11} p50 {result['p50_ms']:6.2f}  p95 {result['p95_ms']:6.2f}  "
                f"p99 {result['p99_ms']:6.2f}  max {result['max_ms']:7.1f} ms  failed {result['failed']}  "
                f"(p99 target {target:g} ms: {'met' if result['p99_ms'] <= target else 'MISSED'})"
            )
        print(f"{size}: {differ}/{len(bodies)} answers differ between raw and planning")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": tag, "description": description, "rows": rows}, indent=1))
    write_planning_markdown(rows, args, description)


def planning_values(args: argparse.Namespace) -> dict[str, Any]:
    """The planning settings of a run as :class:`bento.planning_settings.PlanningSettings` reads them."""
    return {key: getattr(args, key) for key in PLANNING_KEYS}


def in_process_times(
    args: argparse.Namespace, scenario_dir: Path, workload_file: Path, planning: dict[str, Any]
) -> dict[str, Any]:
    """``Policy.decide`` in this process, one torch thread (the service's), no HTTP: p50 and p99 in ms.

    ``args.in_process`` start states of the cluster (seeds 0, 1, ...), each decided once, after
    :data:`IN_PROCESS_WARMUP` untimed decisions (``bench_general.decision_times_ms``). Beside the
    HTTP figures it shows what the decision costs and what serving adds on the same machine.
    """
    import torch
    from bench_general import decision_times_ms

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return decision_times_ms(
            args.artefact, scenario_dir, workload_file, samples=args.in_process, warmup=IN_PROCESS_WARMUP, **planning
        )
    finally:
        torch.set_num_threads(threads)


def _in_process_cells(row: dict[str, Any]) -> list[str]:
    timing = row.get("in_process")
    return [f"{timing['p50_ms']:.2f}", f"{timing['p99_ms']:.2f}"] if timing else ["not measured", "not measured"]


def write_planning_markdown(rows: list[dict[str, Any]], args: argparse.Namespace, description: str) -> None:
    from bench_tables import table, write_tables

    what = (
        f"`plan_k={args.plan_k}`, `plan_horizon={args.plan_horizon}`, `plan_width={args.plan_width}`, "
        f"`plan_margin={args.plan_margin:g}`, `plan_noise={args.plan_noise:g}`, "
        f"`plan_confidence={args.plan_confidence:g}`"
        + (f", `plan_slack={args.plan_slack}`" if args.plan_slack < args.plan_horizon else "")
    )
    body = [
        [
            r["size"],
            r["setting"],
            r["requests"],
            f"{r['p50_ms']:.2f}",
            f"{r['p95_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['max_ms']:.1f}",
            r["failed"],
            f"≤ {r['target_p99_ms']:g}: {'met' if r['p99_ms'] <= r['target_p99_ms'] else '**missed**'}",
            f"{r['answers_differ']}/64",
            *_in_process_cells(r),
        ]
        for r in rows
    ]
    met = all(r["p99_ms"] <= r["target_p99_ms"] for r in rows)
    blocks = [
        f"Model: {description}; workload {args.workload} (`limits`: a generated cluster at the policy's limits, "
        "40 nodes and 76 pod slots of 80, with its own generated application: `bench_service.cluster_files`); "
        "`bentoml serve`, one worker, 127.0.0.1, serve-time "
        f"arguments `scenario`/`workload` of each cluster, planning with {what} (what `reach serve --plan-k "
        f"{args.plan_k}` serves); {WARMUP_REQUESTS} warm-up requests, then sequential keep-alive requests (httpx) "
        "of 64 start states of the cluster. In-process: `Policy.decide` in the benchmark's process, one torch "
        f"thread, no HTTP, {args.in_process} start states after {IN_PROCESS_WARMUP} untimed decisions "
        "(`--in-process`; 0 skips it).",
        table(HEADER, body, "llrrrrrrllrr"),
        f"Targets p99 ≤ {TARGET_P99_MS:g} ms raw, ≤ {TARGET_PLANNING_P99_MS:g} ms with planning: "
        f"**{'met on every cluster' if met else 'missed on at least one cluster'}**.",
    ]
    path = write_tables(args.markdown, "bench_service.py", blocks)
    print(f"wrote {path}")
