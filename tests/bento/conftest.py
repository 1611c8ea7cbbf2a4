"""Fixtures of the policy-service tests: a private BentoML home, a briefly trained policy, servers.

The BentoML home is a temporary folder (never the repository, never ``~/bentoml``); in-process
tests patch BentoML's stores to it and subprocesses get it as ``BENTOML_HOME``. The policy is a
MaskablePPO trained for a few hundred steps on 7-21 / aggregator_sequential: the tests check
plumbing and contracts, not policy quality. ``bentoml serve`` subprocesses listen on a free
127.0.0.1 port and are stopped by their PID.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import private_bentoml_store, scenario_dir, workload_file

REPO = Path(__file__).resolve().parents[2]
SCENARIO_DIR = scenario_dir("7-21")
WORKLOAD_FILE = workload_file("aggregator_sequential")
CONTRACT_DIR = REPO / "tests" / "contract"
BENTOML = Path(sys.executable).with_name("bentoml")
STARTUP_FAILED = "Initializing service error"  # what BentoML logs when a service's __init__ raises


def train_briefly(scenario_dir: Path, workload_file: Path, target: Path, steps: int = 256, seed: int = 0) -> Path:
    """A policy artefact (bento.artefact format) of a MaskablePPO trained for ``steps`` steps."""
    import torch
    from sb3_contrib import MaskablePPO

    from bento.artefact import describe, save_artefact
    from ceenv.env import CloudEdgeEnv

    torch.set_num_threads(1)
    env = CloudEdgeEnv(scenario_dir, workload_file)
    model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=seed, device="cpu")
    model.learn(steps)
    metadata = describe(
        env.layout,
        scenario_dir,
        workload_file,
        step_cost_ms=env.step_cost_ms,
        max_steps=env.max_steps,
        training_summary={"steps": steps, "note": "briefly trained test policy; quality is not the point"},
        evaluation_report={"episodes": 0, "note": f"not evaluated, {steps} training steps"},
    )
    return save_artefact(target, model, metadata)


@pytest.fixture(scope="package")
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private BentoML home, patched into this process's BentoML container for the tests of one package
    (package scope: the tests of other packages keep the session's store of tests/conftest.py)."""
    with private_bentoml_store(tmp_path_factory.mktemp("bentoml-home")) as home:
        yield home


@pytest.fixture(scope="package")
def artefact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_briefly(SCENARIO_DIR, WORKLOAD_FILE, tmp_path_factory.mktemp("artefact") / "policy-7-21")


@pytest.fixture(scope="package")
def stored_model(bentoml_home: Path, artefact_dir: Path) -> str:
    """The tag of the test policy in the private store (also ``reach-policy:latest``)."""
    from bento.policy import GateVerdict
    from bento.store import save_policy

    return str(save_policy(artefact_dir, gate=GateVerdict(passed=True, reason="test fixture")).tag)


@pytest.fixture(scope="package")
def asgi_app(stored_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The service's ASGI app, once per session (BentoML registers its request metrics once per process)."""
    from bento.service import PolicyService

    service: Any = PolicyService  # a bentoml.Service once decorated; its stubs do not say so
    with pytest.MonkeyPatch.context() as patch:  # `bentoml serve` sets it; GET /metrics needs it
        patch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path_factory.mktemp("prometheus")))
        yield service.to_asgi()


@pytest.fixture(scope="package")
def asgi_client(asgi_app: Any) -> Iterator[Any]:
    """Starlette's test client on :func:`asgi_app` (HTTP semantics, no socket), lifespan started."""
    from starlette.testclient import TestClient

    with TestClient(asgi_app) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="true", PYTHONUNBUFFERED="1")
    return env


@dataclass
class Server:
    """A running ``bentoml serve`` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(target: str, home: Path, log: Path, *args: str, cwd: Path = REPO, timeout_s: float = 90.0) -> Server:
    """``bentoml serve TARGET`` on a free loopback port; returns once ``/readyz`` answers 200."""
    port = free_port()
    command = [str(BENTOML), "serve", target, "--host", "127.0.0.1", "--port", str(port), *args]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=cwd, env=server_env(home), stdout=sink, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        if STARTUP_FAILED in log.read_text(errors="replace"):
            server.stop()  # BentoML respawns a worker that failed to start; the failure is the answer
            raise RuntimeError(f"the service refused to start:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"bentoml serve did not become ready in {timeout_s} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="package")
def server(stored_model: str, bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``bentoml serve bento.service:PolicyService`` for the test policy."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    running = start_server("bento.service:PolicyService", bentoml_home, log, "--arg", f"model_tag={stored_model}")
    try:
        yield running
    finally:
        running.stop()
