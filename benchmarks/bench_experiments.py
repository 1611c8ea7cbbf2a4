"""REACH's experiments on the world: node failure and surge × three workloads, three arms per seed, 95 % CIs.

Protocol (issue 16; :mod:`flows.loop.experiments`): the local Kubernetes cluster of the 7-21
scenario, Prometheus and the world (:mod:`flows.loop.world_live`, requests emulated on the live
placement, Istio-shaped metrics) on 127.0.0.1. Per cell (experiment × workload) and seed, three
arms from the same start, with the same event at ``--event-at`` s and the same world seed: the
default scheduler alone (its own placement is recorded and re-applied in the other arms), the
learned policy (the newest gated bento that can serve the cluster, else ``data/policies/general-v4``
gated with the quickstart rules, ``arms.GATE_RULES``, and packaged) and the greedy stand-in. Node failure: the busiest
cloud/edge node's hollow kubelet is killed by PID and the world fails the node at the same moment;
it is restarted after each arm. Surge: the world's request rate doubles and the aggregator gets two
more replicas. Everything is measured by the world through Prometheus (Istio's histogram).

Each seed's trial is kept as JSON under ``--out``/trials (default ``benchmarks/results/experiments-protocol3``:
protocol 3, :mod:`flows.loop.arms`, whose six seeds run the six orders of the arms once each; the protocol-2
trials stay in ``benchmarks/results/experiments-protocol2`` and the protocol-1 ones in
``benchmarks/results/experiments``), so
cells run in separate chunks (one
``--experiment``/``--workload`` at a time: 16–18 min for 6 seeds under the lock) make one table; every run
rewrites ``--out``/experiments.md (the table, the calibration and the runs made), one PNG per cell
and ``calibration.png`` from all the trials there. ``--table-only`` redraws them without running.

    flock /tmp/reach-heavy.lock bash -c '.venv/bin/python benchmarks/bench_experiments.py \\
        --experiment surge --workload chain --seeds 6 --duration 40; rc=$?; .venv/bin/reach down; exit $rc'
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

for _key, _value in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "BENTOML_DO_NOT_TRACK": "true"}.items():
    os.environ.setdefault(_key, _value)

from flows.loop.arms import WORKLOADS, read_trials  # noqa: E402
from flows.loop.cells import (  # noqa: E402
    calibration_points,
    calibration_summary,
    learned_policies,
    markdown,
    order_balance,
    order_effect,
    qos_threshold,
    table_protocol,
    write_figures,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "experiments-protocol3"  # protocol 3 (flows/loop/arms.py); the
# protocol-2 and protocol-1 trials and their tables stay in benchmarks/results/experiments-protocol2 and
# benchmarks/results/experiments (--table-only --out there)
EXPERIMENTS = ("node-failure", "surge")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", choices=(*EXPERIMENTS, "all"), default="all")
    parser.add_argument("--workload", action="append", choices=WORKLOADS, help="repeatable; default: all three")
    parser.add_argument(
        "--seeds", type=int, default=6,
        help="seeds --first-seed … +N−1 per cell (three arms each); any six consecutive ones run every order of "
        "the arms once (protocol 3)",
    )  # fmt: skip
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per arm")
    parser.add_argument("--event-at", type=float, default=15.0, help="seconds into each arm")
    parser.add_argument(
        "--qos", type=float, default=100.0,
        help="QoS threshold, ms (a bucket bound of Istio's); --table-only: the one that trials of protocol 1, which "
        "did not record it, were run with",
    )  # fmt: skip
    parser.add_argument("--policy", default="auto", help="the learned arm: auto or a bento tag")
    parser.add_argument(
        "--detect-s", type=int, default=12,
        help="the local cluster declares a failed node NotReady this many seconds after its last lease renewal "
        "(the controller manager's grace period; the lease is 2/3 of it; default 12 here, while the cluster's own "
        "default is 32; a running cluster started with another value is refused: `reach down` first)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true", help="only redraw the table and figures from --out")
    return parser.parse_args(argv)


def run_cells(args: argparse.Namespace) -> list[dict[str, object]]:
    """Run every asked cell; one log entry per cell (seeds, wall time)."""
    from flows.loop.experiments import experiment
    from flows.loop.settings import DemoSettings

    log = []
    for kind in EXPERIMENTS if args.experiment == "all" else (args.experiment,):
        for workload in args.workload or WORKLOADS:
            settings = DemoSettings(
                experiment=kind, workload=workload, policy=args.policy, train_missing=False, duration_s=args.duration,
                event_at_s=args.event_at, qos_threshold_ms=args.qos, start="scheduler", prefect=False,
                keep_migrating=False, out=args.out / "trials",
            )  # fmt: skip
            seeds = list(range(args.first_seed, args.first_seed + args.seeds))
            started = time.monotonic()
            experiment(settings, [workload], seeds)
            wall_s = time.monotonic() - started
            log.append({"experiment": kind, "workload": workload, "seeds": seeds, "duration_s": args.duration,
                        "event_at_s": args.event_at, "wall_s": round(wall_s, 1), "policy": args.policy,
                        "detect_s": args.detect_s,
                        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")})  # fmt: skip
            print(f"{kind} {workload}: seeds {seeds} in {wall_s:.0f} s", flush=True)
    return log


PROTOCOL_NOTES = {
    1: "Protocol 1 (`flows/loop/arms.py`): the trials here were recorded before the protocol was "
    "versioned; an arm with a migrator was read at its end only once the migrator's step under way had "
    "finished (up to its 30 s migration deadline past `--duration`), each arm's first rate windows held the "
    "previous arm's world, and the arms always ran in the order of the table. Trials of later protocols "
    "(the same end for every arm, a fresh world per arm, the arms' order set by the seed) go to another "
    "`--out` folder: the two are never pooled.",
    2: "Protocol 2 (`flows/loop/arms.py`): every arm is measured over the same window (the histogram read at "
    "the event and exactly `--duration` s after the start), on a fresh world whose series only its own queries "
    "select, and the arms' order turns with the seed (a rotation: each arm always follows the same arm).",
    3: "Protocol 3 (`flows/loop/arms.py`): protocol 2's measurement (every arm over the same window, the "
    "histogram read at the event and exactly `--duration` s after the start, on a fresh world whose series only "
    "its own queries select) with a balanced order: seeds 0 … 5 run the six orders of the three arms once each, "
    "so each arm runs first, second and last twice and follows each other arm twice.",
}


def write_report(out: Path, legacy_qos_ms: float) -> Path:
    trials = read_trials(out / "trials")
    if not trials:
        raise SystemExit(f"no trial under {out / 'trials'}: run a cell first (without --table-only)")
    protocol = table_protocol(trials)
    qos_ms, assumed = qos_threshold(trials, legacy_qos_ms)
    protocol_note = PROTOCOL_NOTES.get(protocol, f"Protocol {protocol} (`flows/loop/arms.py`).")
    protocol_note += (
        f" Arm orders (`Trial.arm_order`): {order_balance(trials)}. The learned arm's reduction minus greedy's, "
        f"paired by seed, split by which of the two ran first: {order_effect(trials)}."
    )
    log_path = out / "runs.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else []
    figures = write_figures(trials, out)
    runs = "\n".join(
        f"- {e['date']}: `--experiment {e['experiment']} --workload {e['workload']} --seeds {len(e['seeds'])} "
        f"--first-seed {e['seeds'][0]} --duration {e['duration_s']:g} --event-at {e['event_at_s']:g}"
        f"{' --policy ' + str(e['policy']) if e.get('policy', 'auto') != 'auto' else ''}"
        f"{' --detect-s ' + str(e['detect_s']) if 'detect_s' in e else ''}` — "
        f"{e['wall_s']:.0f} s"
        f"{' (seeds ' + ', '.join(map(str, e['superseded_seeds'])) + ' rerun later)' if e.get('superseded_seeds') else ''}"
        for e in log
    )
    detections = sorted(
        {json.dumps(t.failure_detection, sort_keys=True) for t in trials if t.experiment == "node-failure"}
    )
    detection = "; ".join(
        "unrecorded" if d == "null" else
        "grace {node_monitor_grace_s:g} s over a {lease_s:g} s lease".format(**json.loads(d)) for d in detections
    ) or "-"  # fmt: skip
    text = f"""# REACH's experiments on the world (issue 16)

Written by `benchmarks/bench_experiments.py` (the runs are listed below). Measured by the world
(requests emulated on the live placement of the local Kubernetes cluster, 7-21 scenario), read
from Prometheus with Istio's PromQL over the client's calls; never the twin.
Per seed three arms from the default scheduler's own placement, the same event and world seed.
*mean*/*p95*: every request completed from the event to the end of the arm (Istio's histogram read
at the event and at the end; failed requests included, as in Istio's mean). *mean of successful*: the
same requests with response code 200 only (from trials recorded since it was kept; `-` before): a
request that fails at once (no endpoint left) lowers Istio's mean. *reduction*: of the
mean against the default scheduler of the same seed, mean over seeds with its 95 % t-interval.
*recovery*: first time after the event from which the successful requests' 5 s-window mean stays
within 10 % of its level in the 10 s before the event and at most 1 % of requests fail (mean over
the seeds that recovered). *missed QoS*: requests slower than {qos_ms:g} ms{" (not recorded by these trials: `--qos` assumed)" if assumed else ""} or failed; *failed*:
response code ≠ 200. *goal*: the learned arm at or above REACH's figure, its interval above 0,
not below greedy, and failing no larger share of requests than the default scheduler (+1 point).
*Node failure* kills the node's hollow kubelet; Kubernetes declares it NotReady once its lease has
not been renewed for the controller manager's grace period ({detection}; `--detect-s`), and only
then can the migrator see it: until then every arm is blind alike.
{protocol_note}

{markdown(trials, qos_ms)}

Learned policy served: {learned_policies(trials)}.

Calibration (every move with a predicted gain — the greedy stand-in gives none — whose windows do
not hold the event; measured gain = the successful requests' 5 s-window mean sampled in the 3 s up
to the move's start minus the one sampled 5–8 s after it ended):
{calibration_summary(calibration_points(trials))}

Figures: {", ".join(f"`{p.name}`" for p in figures)} (this folder).
Runs (`python benchmarks/bench_experiments.py …` under the lock; the wall time covers the three arms of every seed):
{runs}
"""
    path = out / "experiments.md"
    path.write_text(text)
    return path


def superseded_removed(previous: list[dict[str, Any]], done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earlier runs with trials still on disk (a rerun of a cell's seed overwrites its trial file): a run
    whose every seed was rerun is dropped; one with some rerun keeps them listed under ``superseded_seeds``."""
    rerun = {(e["experiment"], e["workload"], seed) for e in done for seed in e["seeds"]}
    kept = []
    for entry in previous:
        gone = sorted({*entry.get("superseded_seeds", []),
                       *(s for s in entry["seeds"] if (entry["experiment"], entry["workload"], s) in rerun)})  # fmt: skip
        if len(gone) < len(entry["seeds"]):
            kept.append({**entry, "superseded_seeds": gone} if gone else entry)
    return kept


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        from flows.local.cluster.hollow import failure_detection_env

        os.environ.update(failure_detection_env(args.detect_s))  # read when the cluster starts
        log_path = args.out / "runs.json"
        done = run_cells(args)
        previous = json.loads(log_path.read_text()) if log_path.is_file() else []
        log_path.write_text(json.dumps(superseded_removed(previous, done) + done, indent=1))
    print(write_report(args.out, args.qos).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
