"""The image definitions agree with the project: pins, manifests' tags, and ``python -m migrator --help``.

Fast checks without buildah; the images themselves are built and run by the smoke tests
(tests/migrator/test_e2e_image.py, tests/bento/test_image.py).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from flows.release.images import IMAGES_DIR, MIGRATOR_IMAGE, POLICY_SERVICE_IMAGE, stage_migrator_sources

ROOT = Path(__file__).resolve().parents[2]


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==([^\s;#]+).*", line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def container_images(manifest: str) -> list[str]:
    images = []
    for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / manifest).read_text()):
        if doc and doc["kind"] == "Deployment":
            images += [c["image"] for c in doc["spec"]["template"]["spec"]["containers"]]
    return images


def test_the_migrator_image_pins_agree_with_pyproject() -> None:
    project = pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    image = pins((IMAGES_DIR / "migrator-requirements.txt").read_text().splitlines())
    shared = set(project) & set(image)
    assert {"kubernetes", "prometheus-api-client", "prometheus-client", "pydantic", "pydantic-settings"} <= shared
    assert {name: image[name] for name in shared} == {name: project[name] for name in shared}


def test_the_migrator_image_carries_no_heavy_stack() -> None:
    image = pins((IMAGES_DIR / "migrator-requirements.txt").read_text().splitlines())
    assert not {"torch", "bentoml", "prefect", "pandas", "matplotlib", "stable-baselines3"} & set(image)


@pytest.mark.parametrize(
    ("manifest", "tag"), [("migrator.yaml", MIGRATOR_IMAGE), ("policy-service.yaml", POLICY_SERVICE_IMAGE)]
)
def test_the_manifests_name_the_images_that_reach_images_build_builds(manifest: str, tag: str) -> None:
    assert container_images(manifest) == [tag]


def test_python_m_migrator_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    from migrator.__main__ import main
    from migrator.settings import MigratorSettings

    assert main(["--help"]) == 0
    output = capsys.readouterr().out
    assert all(f"REACH_MIGRATOR_{name.upper()}" in output for name in MigratorSettings.model_fields)
    assert main(["--dry-run"]) == 2
    assert "takes no arguments" in capsys.readouterr().err


def test_the_migrator_image_carries_every_repository_module_the_migrator_imports(tmp_path: Path) -> None:
    staged = {str(p.relative_to(tmp_path).with_suffix("")).replace("/", ".") for p in stage_migrator_sources(tmp_path)}
    imported = set()
    for module in (ROOT / "migrator").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            imported |= {n for n in names if n.split(".")[0] in ("ceenv", "migrator")}
    assert "ceenv.schema" in imported
    assert imported <= staged, imported - staged
