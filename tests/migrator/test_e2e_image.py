"""The migrator image (deploy/images/migrator.Containerfile), built with buildah and run with ``buildah run``.

It answers ``--help`` as the non-root user 10001, imports every migrator module while carrying none
of torch, BentoML, Prefect, pandas, numpy or gymnasium, and one dry-run cycle of ``python -m migrator`` in the image, configured only by ``REACH_MIGRATOR_*``
variables, observes the local control plane, asks the policy and changes nothing: no pod moves and
no file is written outside /tmp (the Deployment's root file system is read-only).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.release.images import BuiltImage, build_migrator_image, run_container
from tests.image_support import base_image

from .test_e2e_migration import NS, placement

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def migrator_image() -> BuiltImage:
    return build_migrator_image(base_image())


def run_to_end(
    image: str, command: list[str], log: Path, timeout_s: float = 120.0, written: list[str] | None = None, **kwargs: Any
) -> tuple[int, str]:
    """Run ``command`` in a fresh container; ``written`` receives what it wrote into its root file system."""
    running = run_container(image, command, log, **kwargs)
    try:
        code = running.process.wait(timeout=timeout_s)
        if written is not None:
            written += written_paths(running.container)
    finally:
        running.stop()
    return code, running.output()


def written_paths(container: str) -> list[str]:
    """Paths the container's processes created or changed (its overlay upper layer), minus run-time mounts."""
    merged = Path(
        subprocess.run(["buildah", "mount", container], capture_output=True, text=True, check=True).stdout.strip()
    )
    try:
        upper = merged.parent / "diff"
        assert upper.is_dir(), f"not an overlay container: {merged}"
        paths = ["/" + str(p.relative_to(upper)) for p in upper.rglob("*") if not p.is_dir()]
    finally:
        subprocess.run(["buildah", "umount", container], capture_output=True, text=True)
    mounts = ("/tmp/", "/run/", "/dev/", "/proc/", "/sys/", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname")
    return [p for p in paths if not p.startswith(mounts)]


def readable_credentials(kubeconfig: Path, target: Path) -> Path:
    """The local cluster's kubeconfig and CA (root-only files) as copies the image's user 10001 can read at /kube."""
    config = yaml.safe_load(kubeconfig.read_text())
    target.mkdir(mode=0o755)
    for cluster in config["clusters"]:
        ca = Path(cluster["cluster"]["certificate-authority"])
        (target / "ca.crt").write_bytes(ca.read_bytes())
        cluster["cluster"]["certificate-authority"] = "/kube/ca.crt"
    (target / "config").write_text(yaml.safe_dump(config))
    for path in (target / "ca.crt", target / "config"):
        path.chmod(0o644)
    return target


def test_the_migrator_image_answers_help_as_a_non_root_user(migrator_image: BuiltImage, tmp_path: Path) -> None:
    written: list[str] = []
    code, output = run_to_end(
        migrator_image.tag, ["python", "-m", "migrator", "--help"], tmp_path / "help.log", written=written
    )
    assert code == 0, output
    assert written == [], written
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
    kube_dir = readable_credentials(Path(kubeconfig), tmp_path / "kube")
    env = {
        "REACH_MIGRATOR_KUBECONFIG": "/kube/config", "REACH_MIGRATOR_POLICY_URL": fake_policy.url,
        "REACH_MIGRATOR_NAMESPACE": NS, "REACH_MIGRATOR_DRY_RUN": "true", "REACH_MIGRATOR_ONCE": "true",
        "REACH_MIGRATOR_POD_COOLDOWN_S": "0",
    }  # fmt: skip
    written: list[str] = []
    code, output = run_to_end(
        migrator_image.tag, ["python", "-m", "migrator"], tmp_path / "cycle.log", env=env,
        volumes=[f"{kube_dir}:/kube:ro"], written=written,
    )  # fmt: skip
    assert code == 0, output
    assert written == [], f"the migrator wrote outside /tmp (its root file system is read-only in k8s): {written}"
    assert fake_policy.requests, f"the migrator in the image never asked the policy:\n{output}"
    nodes = {node.metadata.name for node in core.list_node().items}
    assert set(fake_policy.requests[0]["cluster_state"]["nodes"]) == nodes
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any("dry-run" in json.dumps(record) for record in records), output
    assert placement(core) == before
