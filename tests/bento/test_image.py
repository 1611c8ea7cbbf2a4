"""The policy service image (deploy/images/policy-service.Containerfile) of a bento built the release way.

``bentoml build`` of bento/bentofile.yaml for the briefly trained 7-21 policy, the image built from
it with buildah (the local Debian base, the torch CPU wheel from pip's find-links), then the image's
own entrypoint started with ``buildah run`` on a loopback port: it answers ``/readyz`` and a REACH
``/get_action`` with the model it was built with, as BentoML's non-root user.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from flows.release.images import BuiltImage, build_policy_service_image, local_torch_wheel, run_container
from tests.bento.conftest import BENTOML, CONTRACT_DIR, REPO, free_port, server_env
from tests.image_support import base_image, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
SMOKE_TEST_TAG = "localhost/reach-policy-service:smoke-test"


@pytest.fixture(scope="module")
def bento_tag(stored_model: str, bentoml_home: Path) -> str:
    command = [
        str(BENTOML),
        "build",
        "-f",
        "bento/bentofile.yaml",
        "--arg",
        f"model_tag={stored_model}",
        "-o",
        "tag",
        ".",
    ]
    result = subprocess.run(
        command, cwd=REPO, env=server_env(bentoml_home), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


@pytest.fixture(scope="module")
def service_image(bento_tag: str) -> BuiltImage:
    # a tag of its own, so that the test's bento never replaces a policy image the user built
    return build_policy_service_image(
        bento_tag, base_image(), SMOKE_TEST_TAG, torch_wheel=local_torch_wheel(), tag_bento_version=False
    )


def test_the_service_image_answers_readyz_and_get_action_with_its_model(
    service_image: BuiltImage, stored_model: str, tmp_path: Path
) -> None:
    port = free_port()
    entrypoint = "/home/bentoml/bento/env/docker/entrypoint.sh"
    running = run_container(
        service_image.tag, [entrypoint, "serve", "--host", "127.0.0.1", "--port", str(port)], tmp_path / "serve.log"
    )
    started: set[int] = set()
    try:
        wait_ready(running, f"http://127.0.0.1:{port}/readyz")
        body = json.loads((CONTRACT_DIR / "request_7-21.json").read_text())
        answer = httpx.post(f"http://127.0.0.1:{port}/get_action", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == stored_model
        assert set(answer.json()) >= {"pod_name", "target_node", "is_stop"}
        started = running.processes()
    finally:
        running.stop()
    assert len(started) > 2, started  # buildah, the arbiter and the worker(s) at least
    assert [pid for pid in started if Path(f"/proc/{pid}").exists()] == [], "stop() left processes of the server"


def test_the_service_image_runs_as_bentoml_without_torch_cuda(service_image: BuiltImage, tmp_path: Path) -> None:
    probe = "import os, torch; print(os.getuid(), torch.__version__, torch.cuda.is_available())"
    running = run_container(service_image.tag, ["python", "-c", probe], tmp_path / "probe.log")
    try:
        assert running.process.wait(timeout=120) == 0, running.output()
    finally:
        running.stop()
    assert running.output().split()[-3:] == ["10001", "2.13.0+cpu", "False"]
