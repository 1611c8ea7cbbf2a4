"""One run of the loop: its threads and its event end with it, and a killed node is always restarted.

The live pieces (Prometheus, the migrator, the hollow kubelets, the world) are replaced by stand-ins
that record what the run did to them; the e2e tests run the real ones.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import migrator.app
from flows.loop import run as loop_run
from flows.loop.report import LoopRun
from flows.loop.settings import DemoSettings


def a_session(**settings: Any) -> Any:
    return SimpleNamespace(settings=DemoSettings(**settings), telemetry=None)


def slow_node_failure(monkeypatch: pytest.MonkeyPatch, query_s: float) -> tuple[list[int], list[list[str]]]:
    """A node-failure event whose Prometheus reads take ``query_s`` before the kill (in the event's thread);
    returns the PIDs killed and the node lists restored, as the run asks for them."""
    killed: list[int] = []
    restored: list[list[str]] = []
    table = SimpleNamespace(
        recorded=lambda: {"node-edge-1": {"pid": 4242}}, is_alive=lambda name: True, pids_path="pids.json"
    )

    def slow_counters(session: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            time.sleep(query_s)

    monkeypatch.setattr(loop_run, "sample_latency", lambda session, run, stop: stop.wait(30))
    monkeypatch.setattr(loop_run, "mesh_counters", slow_counters)
    monkeypatch.setattr(loop_run, "local_cluster", lambda session: SimpleNamespace(processes=table))
    monkeypatch.setattr(loop_run, "post_event", lambda port, path, payload: None)
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(pid))
    monkeypatch.setattr(loop_run, "restore_nodes", lambda session, nodes: restored.append(list(nodes)))
    return killed, restored


@pytest.mark.parametrize("failure", [RuntimeError("the policy service is unreachable"), KeyboardInterrupt()])
def test_a_run_whose_migrator_fails_to_start_stops_its_sampler_and_never_fires_its_event(
    monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    fired: list[str] = []
    samplers: list[threading.Thread] = []
    restored: list[list[str]] = []
    timers: list[threading.Timer] = []

    class RecordedTimer(threading.Timer):
        """The run's event timer, kept so that the test can ask whether it can still fire."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            timers.append(self)

    def sampler(session: Any, run: LoopRun, stop: threading.Event) -> None:
        samplers.append(threading.current_thread())
        stop.wait(30)

    def build_fails(*args: Any) -> Any:
        raise failure

    monkeypatch.setattr(loop_run, "sample_latency", sampler)
    monkeypatch.setattr(loop_run, "fire_event", lambda session, run, errors: fired.append("killed a node"))
    monkeypatch.setattr(loop_run, "migrator_settings", lambda session, url: None)
    monkeypatch.setattr(migrator.app, "build_controller", build_fails)
    monkeypatch.setattr(loop_run, "restore_nodes", lambda session, nodes: restored.append(nodes))
    monkeypatch.setattr(loop_run.threading, "Timer", RecordedTimer)
    # The event is due long after the run has failed (never by the clock during the test): only a cancelled
    # timer whose thread has ended passes below, at once.
    session = a_session(experiment="node-failure", event_at_s=20.0, sample_s=0.1, duration_s=60.0)
    with pytest.raises(type(failure)):
        loop_run.run_loop(session, "r", "http://127.0.0.1:1", "p")
    # A timer whose thread has ended without firing can never fire: no waiting on the clock.
    assert len(timers) == 1 and timers[0].ident is not None, "the run did not start its event's timer"
    assert timers[0].finished.is_set() and not timers[0].is_alive(), "the event's timer outlived the run"
    assert fired == [], "the event fired although the run failed before its time"
    assert samplers and not any(t.is_alive() for t in samplers), "the sampler outlived the run"
    assert restored == [[]]


def test_a_killed_node_is_recorded_even_when_the_world_cannot_be_told(monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[tuple[int, int]] = []
    table = SimpleNamespace(
        recorded=lambda: {"node-edge-1": {"pid": 4242}}, is_alive=lambda name: True, pids_path="pids.json"
    )

    def world_down(port: int, path: str, payload: dict[str, Any]) -> None:
        raise RuntimeError(f"the world on port {port} refused {path} {payload}: 400")

    monkeypatch.setattr(loop_run, "local_cluster", lambda session: SimpleNamespace(processes=table))
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append((pid, sig)))
    monkeypatch.setattr(loop_run, "post_event", world_down)
    run = LoopRun("r", "", time.time())
    with pytest.raises(RuntimeError, match="refused /control/fail-node"):
        loop_run.fail_nodes(a_session(), run, ["edge-1"])
    assert killed == [(4242, signal.SIGKILL)]
    assert loop_run.failed_nodes(run) == ["edge-1"], "the killed node would not be restarted"


def counters_at_read(reads: list[tuple[str, float]]) -> Any:
    from flows.loop.stats import MeshCounters

    def read(session: Any) -> MeshCounters:
        reads.append(("read", time.time()))
        return MeshCounters({100.0: 1.0, float("inf"): 1.0}, 1.0, 1.0, {}, 1.0, 1.0)

    return read


def test_the_end_is_read_at_the_runs_duration_even_while_a_migrator_step_blocks_past_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[tuple[str, float]] = []
    sampling_stopped: list[float] = []

    class BlockingController:
        """A migrator whose step waits for a replacement pod long past the end of the run."""

        journal = SimpleNamespace(records=[])

        def clean_up(self) -> None:
            return None

        def monitoring_step(self) -> list[Any]:
            time.sleep(1.5)
            return [SimpleNamespace(kind="moved", detail="")]

    def sampler(session: Any, run: LoopRun, stop: threading.Event) -> None:
        stop.wait(30)
        sampling_stopped.append(time.time())

    monkeypatch.setattr(loop_run, "sample_latency", sampler)
    monkeypatch.setattr(loop_run, "mesh_counters", counters_at_read(reads))
    monkeypatch.setattr(loop_run, "migrator_settings", lambda session, url: None)
    monkeypatch.setattr(migrator.app, "build_controller", lambda *args: BlockingController())
    monkeypatch.setattr(loop_run, "restore_nodes", lambda session, nodes: None)
    session = a_session(duration_s=0.5, interval_s=0.1)
    run = loop_run.run_loop(session, "learned", "http://127.0.0.1:1", "p")
    end = run.started_s + 0.5
    assert len(reads) == 1 and reads[0][1] == pytest.approx(end, abs=0.25), "the end was read late"
    assert run.counted_s["end"] == pytest.approx(end, abs=0.25) and run.ended_s == pytest.approx(end, abs=0.3)
    assert sampling_stopped and sampling_stopped[0] == pytest.approx(end, abs=0.3), "the sampler ran past the end"
    assert run.cycles, "the step under way at the end was not waited for"


def test_an_event_still_under_way_when_the_run_ends_kills_no_node_after_the_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    killed, restored = slow_node_failure(monkeypatch, query_s=1.0)
    monkeypatch.setattr(loop_run, "EVENT_JOIN_S", 0.1)
    session = a_session(experiment="node-failure", fail_nodes=["edge-1"], sample_s=0.1, event_at_s=0.2, duration_s=0.4)
    session.admin = None
    with pytest.raises(RuntimeError, match="still under way"):
        loop_run.run_loop(session, "default", None, "")
    time.sleep(1.5)  # the event's thread has long finished its queries
    assert restored == [[]] and killed == [], "a node was killed after the run had restored its nodes"


def test_a_failed_restore_does_not_hide_the_runs_own_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_run(session: Any, run: LoopRun, url: str | None, gate: Any) -> None:
        run.events.append(loop_run.Event(time.time(), "node-failed", "", "edge-1", "1"))
        raise ValueError("the world answered nothing")

    def restore_times_out(session: Any, nodes: list[str]) -> None:
        raise TimeoutError(f"nodes {nodes} still carry a failure taint")

    monkeypatch.setattr(loop_run, "_run", broken_run)
    monkeypatch.setattr(loop_run, "restore_nodes", restore_times_out)
    with pytest.raises(ValueError, match="the world answered nothing") as caught:
        loop_run.run_loop(a_session(), "r", None, "")
    assert any("edge-1" in note and "failure taint" in note for note in caught.value.__notes__)
    monkeypatch.setattr(loop_run, "_run", lambda session, run, url, gate: None)
    with pytest.raises(TimeoutError):  # without an error of its own, the restore's is the run's
        loop_run.run_loop(a_session(), "r", None, "")


def test_restoring_a_node_waits_for_the_new_kubelet_to_renew_its_lease_not_for_a_stale_ready(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A node killed shortly before the end was never NotReady: Ready and untainted at once, but dead."""
    restarted: list[str] = []
    renewals = iter([time.time() - 5.0, time.time() - 5.0, None])  # the dead kubelet's lease, then a new one
    asked: list[float] = []

    def renewed(node: str) -> float:
        asked.append(time.time())
        value = next(renewals, None)
        return value if value is not None else time.time()

    admin = SimpleNamespace(nodes=lambda: [SimpleNamespace(name="edge-1", taints=())], lease_renewed_s=renewed)
    cluster = SimpleNamespace(restart=lambda name: restarted.append(name) or 4242, state_dir=tmp_path)
    monkeypatch.setattr(loop_run, "local_cluster", lambda s: cluster)
    monkeypatch.setattr(loop_run.time, "sleep", lambda s: None)
    loop_run.restore_nodes(SimpleNamespace(admin=admin), ["edge-1"])
    assert restarted == ["node-edge-1"] and len(asked) == 3, "restore returned on the dead kubelet's Ready"


def test_prepare_run_stops_the_last_world_before_the_reset_and_selects_only_the_new_worlds_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.local import processes
    from flows.loop.demo import latency_query

    calls: list[str] = []
    monkeypatch.setattr(processes, "stop", lambda name: calls.append(f"stop {name}") or True)
    monkeypatch.setattr(loop_run, "reset_app", lambda session, start: calls.append("reset"))
    monkeypatch.setattr(loop_run, "start_exporter", lambda s, kubeconfig, workload: calls.append(f"start {s.run_id}"))
    monkeypatch.setattr(loop_run, "wait_for_first_sample", lambda session: calls.append("wait"))
    session = SimpleNamespace(settings=DemoSettings(start="scheduler"), kubeconfig="k")
    loop_run.prepare_run(session, "chain")
    first = session.settings.run_id
    loop_run.prepare_run(session, "chain")
    second = session.settings.run_id
    assert first and second and first != second
    assert calls == [*("stop reach-exporter", "reset", f"start {first}", "wait"),
                     *("stop reach-exporter", "reset", f"start {second}", "wait")]  # fmt: skip
    queries = [latency_query(session.settings), loop_run.served_mean_query(second),
               loop_run.failed_share_query(second)]  # fmt: skip
    assert all(q.count(f'run_id="{second}"') == q.count("istio_request_duration") for q in queries)


def test_the_mesh_counters_read_only_the_runs_world(monkeypatch: pytest.MonkeyPatch) -> None:
    import migrator.metrics

    queries: list[str] = []

    class Reader:
        def __init__(self, *args: Any) -> None:
            pass

        def by_label(self, query: str, label: str) -> dict[str, float]:
            queries.append(query)
            return {"+Inf": 1.0, "100": 1.0} if label == "le" else {"": 1.0}

    monkeypatch.setattr(migrator.metrics, "PrometheusMetrics", Reader)
    session = SimpleNamespace(settings=DemoSettings(run_id="abc"), prometheus_url="http://127.0.0.1:1")
    assert loop_run.mesh_counters(session) is not None
    assert len(queries) == 6 and all('run_id="abc"' in q for q in queries)
