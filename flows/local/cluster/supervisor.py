"""The processes of one local cluster: start each in its own session with a log, record its PID, stop by PID.

A :class:`ProcessTable` keeps ``pids.json`` (name → PID and executable) and ``logs/<name>.log`` in
the cluster's state directory. Processes are stopped only by their recorded PID, and only while
that PID still runs the executable that was started (guards against PID reuse); never by name.
Every child gets a loopback-only environment (no proxies, no cloud metadata look-ups). Used by
:class:`flows.local.cluster.control_plane.LocalCluster`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from flows.local import logpipe

# Stop order: hollow nodes first (rank 0), then the controllers, the API server, etcd last.
_STOP_RANK = {"kube-scheduler": 1, "kube-controller-manager": 1, "kube-apiserver": 2, "etcd": 3}


def loopback_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: no proxies, no cloud metadata lookups."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}}
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra or {})
    return env


class ProcessTable:
    """PIDs and logs of the processes one cluster started, under its state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def pids_path(self) -> Path:
        return self.state_dir / "pids.json"

    def recorded(self) -> dict[str, dict[str, object]]:
        """name → {"pid", "exe" (argv[0]), "argv", "env" (the extra environment)} of every process started."""
        if not self.pids_path.is_file():
            return {}
        return dict(json.loads(self.pids_path.read_text()))

    def recorded_pids(self) -> dict[str, int]:
        return {name: int(str(entry["pid"])) for name, entry in self.recorded().items()}

    def record(self, name: str, pid: int, argv: list[str], env: dict[str, str] | None = None) -> None:
        entries = self.recorded()
        entries[name] = {"pid": pid, "exe": argv[0], "argv": argv, "env": env or {}}
        tmp = self.pids_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(self.pids_path)

    def is_alive(self, name: str) -> bool:
        entry = self.recorded().get(name)
        return entry is not None and runs_entry(entry)

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start a recorded component again with its recorded command line and environment (stopped first
        if it still runs); its log continues. Raises KeyError for a name that was never started."""
        entries = self.recorded()
        if name not in entries:
            raise KeyError(f"no component {name!r} in {self.pids_path}; recorded: {sorted(entries)}")
        entry = entries[name]
        argv = entry.get("argv")
        if not isinstance(argv, list):
            raise KeyError(f"{name!r} was recorded without its command line (an older cluster): restart the cluster")
        if self.is_alive(name):
            stop_pid(int(str(entry["pid"])))
        env = entry.get("env")
        return self.spawn(name, [str(a) for a in argv], dict(env) if isinstance(env, dict) else None)

    def all_running(self) -> bool:
        entries = self.recorded()
        return bool(entries) and all(runs_entry(e) for e in entries.values())

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start one component in its own session, log to logs/<name>.log (rotated by size), record its PID."""
        writer = logpipe.spawn(self.state_dir / "logs" / f"{name}.log")
        try:
            proc = subprocess.Popen(
                argv, stdout=writer.stdin, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=loopback_env(env), start_new_session=True,
            )  # fmt: skip
        finally:
            if writer.stdin is not None:
                writer.stdin.close()  # the component holds the pipe now; the writer ends when it closes
        self.record(name, proc.pid, argv, env)
        return proc

    def log_tail(self, name: str, lines: int = 3) -> str:
        """The last lines of a component's log (for error messages), or a note that there is none."""
        log = self.state_dir / "logs" / f"{name}.log"
        if not log.is_file():
            return "(no log)"
        text = log.read_text(errors="replace").strip().splitlines()
        return " | ".join(line[:200] for line in text[-lines:])

    def stop_all(self) -> int:
        """Stop every recorded process that still runs (hollow nodes first, etcd last); returns how many were recorded."""
        entries = self.recorded()
        self.stop_running()
        return len(entries)

    def stop_running(self) -> tuple[list[str], list[str]]:
        """Stop every recorded process that still runs (:func:`runs_entry`; hollow nodes first, etcd last); return
        the names stopped and, as ``name (pid N)``, those that survived."""
        entries = self.recorded()
        stopped: list[str] = []
        survived: list[str] = []
        for name in sorted(entries, key=lambda n: _STOP_RANK.get(n, 0)):
            if not runs_entry(entries[name]):
                continue
            pid = int(str(entries[name]["pid"]))
            stop_pid(pid)
            if runs_entry(entries[name]):
                survived.append(f"{name} (pid {pid})")
            else:
                stopped.append(name)
        return stopped, survived


def runs_entry(entry: dict[str, object]) -> bool:
    """Whether a recorded entry's PID still runs the process started: the same program and, when the entry kept
    it, exactly the recorded command line (which names the cluster's state directory: after a reboot a recorded
    PID may belong to another etcd or kube-apiserver, which the program name alone would not tell apart)."""
    pid = int(str(entry["pid"]))
    if not is_our_process(pid, str(entry["exe"])):
        return False
    argv = entry.get("argv")
    if not isinstance(argv, list):  # recorded by an older reach: the program name alone decides
        return True
    try:
        running = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return [a.decode(errors="replace") for a in running if a] == [str(a) for a in argv if str(a)]


def is_our_process(pid: int, exe: str) -> bool:
    """The PID is alive and still runs the binary we started (guards against PID reuse)."""
    if not pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return False
    return Path(argv0).name == Path(exe).name


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[-1].startswith("Z"))


def stop_pid(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM one recorded PID, SIGKILL it after the grace period; a gone PID is fine."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 0.5 s until it holds; a timeout says what was not reached."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not reached within {timeout_s:.0f} s: see the logs under the cluster state directory")
