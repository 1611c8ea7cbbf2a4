"""processes.adopt: a process started elsewhere (a cluster component) is recorded and stopped by its PID."""

from __future__ import annotations

import subprocess
import sys

from flows.local import processes


def test_an_adopted_process_is_listed_and_stopped_like_the_ones_reach_started() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        processes.adopt("cluster-test-sleeper", proc.pid, 0, [sys.executable], "/dev/null")
        assert "cluster-test-sleeper" in [r.name for r in processes.running()]
        assert processes.stop("cluster-test-sleeper")  # what ``reach down`` calls for every record
        assert proc.wait(timeout=15) is not None
        assert processes.find("cluster-test-sleeper") is None
    finally:
        if proc.poll() is None:
            proc.kill()
