"""Loopback only: a hollow node run under strace connects to nothing but 127.0.0.0/8 and local sockets.

LOCAL-CLUSTER.md requires it: unpatched kubemark tries the cloud metadata link-local address. The
test starts one extra hollow node under ``strace -f -e trace=connect``, waits until it is Ready (so
it has registered, synced pods and sent heartbeats), and fails on any ``connect`` to an address
outside 127.0.0.0/8 / ::1 that is not a unix or netlink socket.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

PROBE = "reach-strace-probe"
_CONNECT = re.compile(r"connect\(\d+, \{sa_family=(AF_\w+)(.*?)\}")
_INET = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def foreign_connects(trace: str) -> list[str]:
    """The connect() lines of an strace log whose destination is not local."""
    bad = []
    for line in trace.splitlines():
        match = _CONNECT.search(line)
        if not match or match.group(1) in ("AF_UNIX", "AF_NETLINK", "AF_UNSPEC"):
            continue
        address = _INET.search(match.group(2))
        host = (address.group(1) or address.group(2)) if address else ""
        if not (host.startswith("127.") or host in ("::1",) or host.startswith("::ffff:127.")):
            bad.append(line.strip())
    return bad


def test_the_connect_filter_flags_foreign_addresses() -> None:
    trace = "\n".join([
        '12 connect(3, {sa_family=AF_INET, sin_port=htons(6443), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '12 connect(4, {sa_family=AF_UNIX, sun_path="/tmp/x.sock"}, 110) = 0',
        '12 connect(5, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("169.254.169.254")}, 16) = -1',
        '12 connect(6, {sa_family=AF_INET6, sin6_port=htons(53), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr)}, 28)',
    ])  # fmt: skip
    assert [("169.254" in b, "2001:db8" in b) for b in foreign_connects(trace)] == [(True, False), (False, True)]


@pytest.mark.e2e
def test_a_hollow_node_connects_only_to_loopback_and_local_sockets(
    local_cluster: Any, core: Any, tmp_path: Path
) -> None:
    if not shutil.which("strace"):
        pytest.fail("strace is missing: deploy/local/install.sh installs it (apt-get install strace)")
    from flows.local.cluster.hollow import HollowNodeSpec, ensure_hosts_entries
    from flows.local.cluster.supervisor import loopback_env

    probe = HollowNodeSpec(PROBE, "edge", "probe", 1, 1, 2**30)
    ensure_hosts_entries([PROBE])
    argv, env = local_cluster.hollow_node_argv(probe, index=60)
    trace_path = tmp_path / "connect.trace"
    command = ["strace", "-f", "-e", "trace=connect", "-o", str(trace_path), *argv]
    proc = subprocess.Popen(command, env=loopback_env(env), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while PROBE not in local_cluster.ready_node_names() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert PROBE in local_cluster.ready_node_names(), "the probe node under strace never became Ready"
        time.sleep(12)  # one more node-status period (10 s) of traffic
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        core.delete_node(PROBE)
    trace = trace_path.read_text()
    assert "connect(" in trace, "strace recorded no connect at all: is ptrace allowed here?"
    assert foreign_connects(trace) == []
