"""One run of the loop: its threads and its event end with it, and a killed node is always restarted.

The live pieces (Prometheus, the migrator, the hollow kubelets, the world) are replaced by stand-ins
that record what the run did to them; the e2e tests run the real ones.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

import migrator.app
from flows.loop import run as loop_run
from flows.loop.report import LoopRun
from flows.loop.settings import DemoSettings


def a_session(**settings: Any) -> Any:
    return SimpleNamespace(settings=DemoSettings(**settings), telemetry=None)


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
