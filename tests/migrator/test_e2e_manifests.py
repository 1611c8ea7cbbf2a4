"""deploy/k8s/ on the real 1.20 API server: schema-valid (server-side dry run) and RBAC that suffices.

The manifests are created with ``dryRun=All``, so the server validates them against its own
schemas without running anything. The RBAC objects are then applied for real and a whole migration
is carried out while impersonating the ``reach-migrator`` ServiceAccount: if a verb were missing,
the migration would fail with 403.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .e2e_support import ROOT
from .test_e2e_migration import choose_move, placement, reach_marks

pytestmark = pytest.mark.e2e
K8S = ROOT / "deploy" / "k8s"
SERVICE_ACCOUNT_USER = "system:serviceaccount:reach-system:reach-migrator"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def create(dynamic: Any, doc: dict[str, Any], dry_run: bool) -> None:
    from kubernetes.dynamic.exceptions import ConflictError

    resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    namespace = doc["metadata"].get("namespace")
    try:
        resource.create(body=doc, namespace=namespace, query_params=[("dryRun", "All")] if dry_run else [])
    except ConflictError:
        assert not dry_run, f"{doc['kind']} {doc['metadata']['name']} already exists"


@pytest.fixture
def applied_rbac(api_client: Any) -> Any:
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(api_client)
    for name in ("namespace.yaml", "rbac.yaml"):
        for doc in documents(name):
            create(dynamic, doc, dry_run=False)
    return dynamic


def test_every_manifest_is_accepted_by_the_server_in_a_dry_run(applied_rbac: Any) -> None:
    kinds = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in documents(path.name):
            if path.name not in ("namespace.yaml", "rbac.yaml"):
                create(applied_rbac, doc, dry_run=True)
            kinds.append(doc["kind"])
    assert {"ServiceAccount", "ClusterRole", "Role", "ConfigMap", "Deployment", "Service"} <= set(kinds)


def test_the_service_account_can_carry_out_a_migration_with_exactly_these_rules(
    kubeconfig: str, core: Any, applied_rbac: Any, demo_app: Any, fake_policy: Any, settings_for: Any
) -> None:
    from migrator.app import build_controller

    controller = build_controller(settings_for(fake_policy.url, once=True))
    controller.ops.api_client.set_default_header("Impersonate-User", SERVICE_ACCOUNT_USER)
    pod, target = choose_move(controller, "db")
    fake_policy.answer = {"pod_name": pod, "target_node": target, "is_stop": False}
    [outcome] = controller.run_cycle()
    assert outcome.kind == "migrated", outcome.detail
    assert pod not in placement(core) and reach_marks(core) == []
    assert controller.clean_up() == []


def test_a_refused_permission_is_a_blind_cycle_that_names_the_read_and_the_fix(
    core: Any, applied_rbac: Any, demo_app: Any, fake_policy: Any, settings_for: Any
) -> None:
    """A 403 does not pass by itself: it is told apart from an API server that is away, and nothing moves."""
    from migrator.app import build_controller

    controller = build_controller(settings_for(fake_policy.url, once=True))
    controller.ops.api_client.set_default_header("Impersonate-User", "system:serviceaccount:reach-system:no-rights")
    before = placement(core)
    [outcome] = controller.run_cycle()
    assert outcome.kind == "blind" and outcome.detail.startswith("cluster-access-denied: "), outcome.detail
    assert "list nodes" in outcome.detail and "403" in outcome.detail and "deploy/k8s/rbac.yaml" in outcome.detail
    assert controller.journal.records[-1]["reason"] == "cluster-access-denied"
    assert fake_policy.requests == [] and placement(core) == before
