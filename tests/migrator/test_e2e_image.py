"""The migrator image (deploy/images/migrator.Containerfile), built with buildah and run with ``buildah run``.

It answers ``--help`` as the non-root user 10001, imports every migrator module while carrying none
of torch, BentoML, Prefect, pandas, numpy or gymnasium, and one dry-run cycle of ``python -m migrator`` in the image, configured only by ``REACH_MIGRATOR_*``
variables, observes the local control plane, asks the policy and changes nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flows.release.images import BuiltImage, build_migrator_image, run_container
from tests.image_support import base_image

from .test_e2e_migration import NS, placement

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def migrator_image() -> BuiltImage:
    return build_migrator_image(base_image())


def run_to_end(image: str, command: list[str], log: Path, timeout_s: float = 120.0, **kwargs: Any) -> tuple[int, str]:
    running = run_container(image, command, log, **kwargs)
    try:
        code = running.process.wait(timeout=timeout_s)
    finally:
        running.stop()
    return code, running.output()


def test_the_migrator_image_answers_help_as_a_non_root_user(migrator_image: BuiltImage, tmp_path: Path) -> None:
    code, output = run_to_end(migrator_image.tag, ["python", "-m", "migrator", "--help"], tmp_path / "help.log")
    assert code == 0, output
    assert "REACH_MIGRATOR_DRY_RUN" in output and "REACH_MIGRATOR_POLICY_URL" in output
    config = subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format", "{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}",
         migrator_image.tag], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert config.split()[0] == "10001:10001" and "migrator" in config
    code, output = run_to_end(migrator_image.tag, ["id", "-u"], tmp_path / "id.log")
    assert (code, output.strip()) == (0, "10001")


def test_the_migrator_image_imports_every_migrator_module_without_the_heavy_stacks(
    migrator_image: BuiltImage, tmp_path: Path
) -> None:
    probe = (
        "import importlib, importlib.util, pkgutil, migrator, ceenv.schema\n"
        "for m in pkgutil.iter_modules(migrator.__path__): importlib.import_module('migrator.' + m.name)\n"
        "from prometheus_api_client import PrometheusConnect\n"
        "heavy = ('torch', 'bentoml', 'prefect', 'pandas', 'matplotlib', 'numpy', 'gymnasium', 'aiohttp')\n"
        "print('present:', [n for n in heavy if importlib.util.find_spec(n)])\n"
    )
    code, output = run_to_end(migrator_image.tag, ["python", "-c", probe], tmp_path / "probe.log")
    assert code == 0, output
    assert "present: []" in output


def test_a_dry_run_cycle_in_the_image_asks_the_policy_about_the_local_cluster_and_moves_nothing(
    migrator_image: BuiltImage, kubeconfig: str, core: Any, demo_app: Any, fake_policy: Any, tmp_path: Path
) -> None:
    def move_the_first_movable_pod(body: dict[str, Any]) -> dict[str, Any]:
        pod, targets = next((pod, targets) for pod, targets in body["pod_deployable"].items() if targets)
        return {"pod_name": pod, "target_node": targets[0], "is_stop": False}

    fake_policy.answer = move_the_first_movable_pod
    before = placement(core)
    kube_dir = str(Path(kubeconfig).parent)
    env = {
        "REACH_MIGRATOR_KUBECONFIG": kubeconfig, "REACH_MIGRATOR_POLICY_URL": fake_policy.url,
        "REACH_MIGRATOR_NAMESPACE": NS, "REACH_MIGRATOR_DRY_RUN": "true", "REACH_MIGRATOR_ONCE": "true",
        "REACH_MIGRATOR_POD_COOLDOWN_S": "0",
    }  # fmt: skip
    code, output = run_to_end(
        migrator_image.tag, ["python", "-m", "migrator"], tmp_path / "cycle.log", env=env,
        volumes=[f"{kube_dir}:{kube_dir}:ro"],
    )  # fmt: skip
    assert code == 0, output
    assert fake_policy.requests, f"the migrator in the image never asked the policy:\n{output}"
    nodes = {node.metadata.name for node in core.list_node().items}
    assert set(fake_policy.requests[0]["cluster_state"]["nodes"]) == nodes
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any("dry-run" in json.dumps(record) for record in records), output
    assert placement(core) == before
