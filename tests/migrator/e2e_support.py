"""Support for the migrator's e2e tests: the local cluster fixture's helpers, a fake policy server, a Ready watcher.

The e2e tests run on the real local control plane of :mod:`flows.local.cluster` (its own state
directory and ports, so a developer's cluster keeps running). The fake policy is a tiny HTTP server
on 127.0.0.1 whose answer a test sets per call: a JSON body, a function of the request, a delay or
an HTTP status. ``ReadyWatcher`` follows a service's pods through the watch API and records the
lowest Ready count it ever saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "data" / "scenarios" / "7-21"
APP_REPLICAS = {"aggregator": 3, "db": 2}


def cluster_requirement() -> tuple[bool, str]:
    """(run?, why not): e2e tests skip only when the binaries are absent and not required."""
    from flows.local.cluster import default_bin_dir

    bin_dir = default_bin_dir()
    missing = [b for b in ("kube-apiserver", "kubemark") if not (bin_dir / b).exists()]
    if not missing:
        return True, ""
    why = f"Kubernetes binaries {missing} not in {bin_dir}: run `flock /tmp/reach-heavy.lock deploy/local/install.sh`"
    if os.environ.get("REACH_REQUIRE_CLUSTER"):
        raise RuntimeError(f"REACH_REQUIRE_CLUSTER is set but {why}")
    return False, why


Answer = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


class FakePolicy:
    """A policy service on 127.0.0.1 that answers what the test says; records every request."""

    def __init__(self) -> None:
        self.answer: Answer = {"pod_name": "", "target_node": "", "is_stop": True}
        self.delay_s = 0.0
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        policy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                policy.requests.append(body)
                time.sleep(policy.delay_s)
                answer = policy.answer(body) if callable(policy.answer) else policy.answer
                payload = json.dumps(answer).encode()
                self.send_response(policy.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ReadyWatcher:
    """Watch a service's pods and keep the lowest number of Ready, non-terminating pods seen."""

    def __init__(self, core: Any, namespace: str, service: str):
        from kubernetes import watch

        self.core, self.namespace, self.selector = core, namespace, f"app={service}"
        self.watch = watch.Watch()
        self.ready: dict[str, bool] = {}
        self.lowest: int | None = None
        self.events = 0
        self.stopped = False
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        return sum(self.ready.values())

    def start(self) -> ReadyWatcher:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector)
        for pod in pods.items:
            self.ready[pod.metadata.name] = _is_ready(pod)
        self.lowest = self._count()
        self.resource_version = pods.metadata.resource_version
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self._follow()
        except Exception as exc:  # closing the stream in stop() ends it with a protocol error
            if not self.stopped:
                self.error = exc

    def _follow(self) -> None:
        stream = self.watch.stream(
            self.core.list_namespaced_pod, self.namespace, label_selector=self.selector,
            resource_version=self.resource_version, timeout_seconds=600,
        )  # fmt: skip
        for event in stream:
            pod = event["object"]
            self.events += 1
            if event["type"] == "DELETED":
                self.ready.pop(pod.metadata.name, None)
            else:
                self.ready[pod.metadata.name] = _is_ready(pod)
            self.lowest = min(self.lowest if self.lowest is not None else 1 << 30, self._count())

    def stop(self) -> int:
        """Stop watching and return the lowest Ready count; a broken watch fails the test."""
        time.sleep(0.5)
        self.stopped = True
        self.watch.stop()
        if self.error is not None:
            raise AssertionError(f"the watch of {self.selector} broke, the Ready count is unknown: {self.error}")
        return self.lowest if self.lowest is not None else 0


def cordoned_nodes(core: Any) -> list[str]:
    """Nodes cordoned (``spec.unschedulable``) or carrying the migrator's temporary-cordon taint."""
    from migrator.snapshot import TAINT_TEMPORARY_CORDON

    return [
        n.metadata.name
        for n in core.list_node().items
        if n.spec.unschedulable or any(t.key == TAINT_TEMPORARY_CORDON for t in n.spec.taints or [])
    ]


def uncordon_every_node(core: Any) -> None:
    """Lift every cordon and every temporary-cordon taint a test left (an e2e fixture's teardown)."""
    from migrator.snapshot import TAINT_TEMPORARY_CORDON

    for node in core.list_node().items:
        taints = [t for t in node.spec.taints or [] if t.key != TAINT_TEMPORARY_CORDON]
        if node.spec.unschedulable or len(taints) != len(node.spec.taints or []):
            spec = {"unschedulable": None, "taints": [core.api_client.sanitize_for_serialization(t) for t in taints]}
            core.patch_node(node.metadata.name, {"spec": spec})


def _is_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    conditions = pod.status.conditions if pod.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


@contextlib.contextmanager
def running_prometheus(binary: str, folder: Path, job: str, target: str, interval: str = "1s") -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping ``target`` every ``interval`` as ``job``; its URL; stopped by PID."""
    from flows.local.processes import free_port, wait_http

    config = folder / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {interval}\nscrape_configs:\n  - job_name: {job}\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", 30, process.pid)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


def prometheus_binary() -> str:
    """The ``prometheus`` binary; skips the test when it is absent (fails under ``REACH_REQUIRE_CLUSTER``: CI)."""
    import shutil

    import pytest

    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("REACH_REQUIRE_CLUSTER"):
            raise RuntimeError("REACH_REQUIRE_CLUSTER is set but prometheus is not installed (deploy/local/install.sh)")
        pytest.skip("prometheus is not installed: run deploy/local/install.sh")
    return binary


@contextlib.contextmanager
def serving_metrics(lines: Callable[[], list[str]]) -> Iterator[str]:
    """A ``/metrics`` exporter on 127.0.0.1 answering each scrape with ``lines()`` (exposition format); its host:port."""

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = ("\n".join(lines()) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
