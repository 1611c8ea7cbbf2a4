"""``bentoml build`` of bento/bentofile.yaml, then ``bentoml serve`` of the built bento outside the repository.

The bento must carry its own code (ceenv and bento) and pin the model by tag, so the server runs
from a scratch working directory and its log shows the service code loaded from the bento store.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.bento.conftest import BENTOML, CONTRACT_DIR, REPO, server_env, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def built_bento(stored_model: str, bentoml_home: Path) -> str:
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
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("reach-policy-service:"), result.stdout
    return tag


def test_the_bento_carries_the_code_the_model_tag_and_pinned_dependencies(
    built_bento: str, stored_model: str, bentoml_home: Path
) -> None:
    name, version = built_bento.split(":")
    root = bentoml_home / "bentos" / name / version
    info = yaml.safe_load((root / "bento.yaml").read_text())
    assert info["service"] == "bento.service:PolicyService"
    assert info["args"] == {"model_tag": stored_model}
    assert [m["tag"] for m in info["services"][0]["models"]] == [stored_model]
    for module in (
        "ceenv/layout.py",
        "ceenv/observation.py",
        "ceenv/payload.py",
        "ceenv/schema.py",
        "bento/service.py",
        "bento/artefact.py",
    ):
        assert (root / "src" / module).is_file(), module
    assert not (root / "src" / "flows").exists() and not (root / "src" / "migrator").exists()
    requirements = (root / "env" / "python" / "requirements.txt").read_text()
    assert "sb3-contrib==" in requirements and "torch==" in requirements


def test_the_built_bento_serves_without_the_repository(
    built_bento: str, stored_model: str, bentoml_home: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    server = start_server(built_bento, bentoml_home, tmp_path / "serve.log", cwd=scratch)
    try:
        body = json.loads((CONTRACT_DIR / "request_7-21.json").read_text())
        answer = httpx.post(f"{server.url}/get_action", json=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["model_version"] == stored_model
        assert httpx.get(f"{server.url}/metadata", timeout=10).json()["model_tag"] == stored_model
    finally:
        server.stop()
    log = (tmp_path / "serve.log").read_text()
    code_line = next(line for line in log.splitlines() if "reach policy service: model" in line)
    assert str(bentoml_home / "bentos") in code_line and str(REPO) not in code_line
