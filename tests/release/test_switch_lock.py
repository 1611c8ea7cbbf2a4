"""Two blue/green switches at once run one after the other; a late rollback or retirement never undoes another deploy.

The switch's servers are small sleeping processes recorded in the registry like ``bentoml serve``
would be (``start_bento`` is replaced; the canary answers nothing and passes), in a private
``$REACH_HOME``. Two threads switch at once: the lock is on the open lock file, so they exclude
each other like two processes do.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.local import processes
from flows.release import serving


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private registry and endpoint file; every server a test started is stopped after it."""
    monkeypatch.setenv("REACH_HOME", str(tmp_path))
    yield tmp_path
    for record, _ in processes.records():
        processes.stop(record.name, grace_s=2)


def _sleeper(name: str) -> processes.ProcessRecord:
    return processes.start(name, [sys.executable, "-c", "import time; time.sleep(30)"], processes.free_port())


def _slow_start_bento(bento: str, slot: str, *args: Any, **kwargs: Any) -> processes.ProcessRecord:
    record = _sleeper(f"bento-{slot}")
    time.sleep(0.5)  # getting ready: the other deploy runs meanwhile
    return record


def test_two_concurrent_switches_run_one_after_the_other_in_the_two_slots(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving, "start_bento", _slow_start_bento)
    monkeypatch.setattr(serving, "canary", lambda *args: serving.CanaryResult(0, 0, []))
    together = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def deploy(bento: str) -> None:
        together.wait()
        try:
            outcomes[bento] = serving.redeploy(bento, [], drain_s=0.0, lock_wait_s=20.0)
        except Exception as exc:
            outcomes[bento] = exc

    threads = [threading.Thread(target=deploy, args=(f"bento:{name}",)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    results = [o for o in outcomes.values() if isinstance(o, serving.RedeployResult)]
    assert len(results) == 2, f"a switch failed: {outcomes}"
    first, second = sorted(results, key=lambda r: r.endpoint.since)
    assert first.previous is None and second.previous == first.endpoint, "the second switch saw the first's endpoint"
    assert {first.endpoint.slot, second.endpoint.slot} == {"blue", "green"}
    assert serving.current_endpoint() == second.endpoint
    assert processes.find(f"bento-{second.endpoint.slot}") is not None
    assert processes.find(f"bento-{first.endpoint.slot}") is None, "the replaced server was retired"


def test_a_deploy_that_waits_too_long_for_the_switch_fails_naming_the_lock_and_changes_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving, "start_bento", lambda *a, **k: pytest.fail("must not start a server"))
    with serving._switching("switching to bento:slow"), pytest.raises(serving.SwitchBusy) as caught:
        serving.redeploy("bento:late", [], lock_wait_s=0.2)
    assert isinstance(caught.value, serving.RedeployError)  # `reach deploy`: failed, the previous service serves
    assert str(serving.switch_lock()) in str(caught.value) and "switching to bento:slow" in str(caught.value)
    assert not serving.endpoint_file().exists()


def test_a_rollback_after_another_deploy_replaced_the_endpoint_is_refused(home: Path) -> None:
    old = serving.Endpoint("http://127.0.0.1:1", "bento:old", "blue", os.getpid(), 1.0)
    new = serving.Endpoint("http://127.0.0.1:2", "bento:new", "green", os.getpid(), 2.0)
    later = serving.Endpoint("http://127.0.0.1:3", "bento:later", "blue", os.getpid(), 3.0)
    serving.switch(later)  # a manual deploy during the analysis period of old → new
    with pytest.raises(serving.RedeployError, match=r"no longer names bento:new \(it names bento:later\)"):
        serving.roll_back(serving.RedeployResult(new, old, serving.CanaryResult(0, 0, [])), drain_s=0.0)
    assert serving.recorded_endpoint() == later


def test_retiring_a_replaced_server_leaves_a_newer_server_in_its_slot_running(home: Path) -> None:
    newer = _sleeper("bento-blue")  # another deploy took the slot the retired server had
    retired = serving.Endpoint("http://127.0.0.1:1", "bento:old", "blue", 999_999_999, 0.0)
    serving.retire(retired, drain_s=0.0)
    assert processes.find("bento-blue") == newer
