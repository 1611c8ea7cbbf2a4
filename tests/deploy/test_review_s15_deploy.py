"""Review s15 of deploy/: the migrator's scrape job, the order of kubectl apply, the Kubernetes work pool's
job variables, pull step and namespace, the pods' Pod Security fields, the `service` label of the real-latency
recording rules.

Parsing only, except the promtool unit tests of the rules (skipped without promtool, like
tests/deploy/test_observability.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .test_observability import promtool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OBSERVABILITY = ROOT / "deploy" / "observability"
WORK_POOL = ROOT / "deploy" / "prefect" / "kubernetes-work-pool.yaml"
GUIDE = ROOT / "deploy" / "README.md"
MIGRATOR_DOC = ROOT / "docs" / "migrator.md"
RULE_FILES = ("real-latency.rules.yml", "real-latency-linkerd.rules.yml", "real-latency-mubench.rules.yml")


def deployments() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                found[doc["metadata"]["name"]] = doc
    return found


# --- finding 1: the job the alerts select is the job the cluster scrape config defines ---------------------


def migrator_alert_job() -> str:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    (expr,) = [r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ReachMigratorDown"]
    match = re.fullmatch(r'up\{job="([^"]+)"\} == 0', expr)
    assert match, expr
    return match.group(1)


def sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def discovered_pod(deployment: dict[str, Any], pod_ip: str) -> list[dict[str, str]]:
    """The targets Prometheus' pod discovery gives for one pod of ``deployment``: one per declared container port."""
    template = deployment["spec"]["template"]
    meta = {"__meta_kubernetes_namespace": deployment["metadata"]["namespace"], "__meta_kubernetes_pod_name": "p-1"}
    meta |= {f"__meta_kubernetes_pod_label_{sanitize(k)}": v for k, v in template["metadata"]["labels"].items()}
    annotations = template["metadata"].get("annotations", {})
    meta |= {f"__meta_kubernetes_pod_annotation_{sanitize(k)}": str(v) for k, v in annotations.items()}
    ports = [p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
    return [meta | {"__address__": f"{pod_ip}:{port}"} for port in ports] or [meta | {"__address__": pod_ip}]


def relabel(labels: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus' relabelling for the actions the scrape file uses (keep, drop, replace); None: dropped."""
    labels = dict(labels)
    for config in configs:
        action = config.get("action", "replace")
        assert action in ("keep", "drop", "replace"), action
        value = config.get("separator", ";").join(labels.get(s, "") for s in config.get("source_labels", []))
        match = re.fullmatch(str(config.get("regex", "(.*)")), value)
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            replacement = re.sub(r"\$\{?(\d+)\}?", r"\\\1", str(config.get("replacement", "$1")))
            labels[config["target_label"]] = match.expand(replacement)
    return labels


def scrape_targets(job: dict[str, Any], deployment: dict[str, Any]) -> list[dict[str, str]]:
    targets = []
    for target in discovered_pod(deployment, "10.1.2.3"):
        kept = relabel(target | {"job": job["job_name"], "__metrics_path__": "/metrics"}, job["relabel_configs"])
        if kept is not None:
            targets.append(kept)
    return targets


def test_the_migrator_alert_selects_the_job_of_the_shipped_cluster_scrape_config() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus-scrape.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    job = jobs[migrator_alert_job()]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert deployments()["reach-migrator"]["metadata"]["namespace"] in sd["namespaces"]["names"]


def test_the_scrape_job_keeps_the_migrator_pod_at_its_annotated_port_and_path() -> None:
    job = {j["job_name"]: j for j in yaml.safe_load((OBSERVABILITY / "prometheus-scrape.yml").read_text())[
        "scrape_configs"]}[migrator_alert_job()]  # fmt: skip
    migrator = deployments()["reach-migrator"]
    annotations = migrator["spec"]["template"]["metadata"]["annotations"]
    (target,) = scrape_targets(job, migrator)
    assert target["job"] == migrator_alert_job()
    assert target["__address__"] == f"10.1.2.3:{annotations['prometheus.io/port']}"
    assert target["__metrics_path__"] == annotations["prometheus.io/path"]
    assert (target["namespace"], target["pod"]) == ("reach-system", "p-1")
    assert scrape_targets(job, deployments()["reach-policy"]) == []  # only the migrator's pods


def test_the_podmonitor_names_its_job_after_the_label_the_migrator_pods_carry() -> None:
    monitor = yaml.safe_load((OBSERVABILITY / "prometheus-podmonitor.yaml").read_text())
    migrator = deployments()["reach-migrator"]
    pod_labels = migrator["spec"]["template"]["metadata"]["labels"]
    assert monitor["kind"] == "PodMonitor"
    assert pod_labels[monitor["spec"]["jobLabel"]] == migrator_alert_job()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert migrator["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    ports = {p["name"] for c in migrator["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports


def test_the_guide_lists_and_explains_the_scrape_files() -> None:
    guide = GUIDE.read_text()
    assert "`observability/prometheus-scrape.yml`" in guide and "`observability/prometheus-podmonitor.yaml`" in guide
    assert 'job="reach-migrator"' in guide


# --- finding 2: every documented kubectl apply of deploy/k8s creates the namespace first ----------------------


def kubectl_applies(text: str) -> list[list[str]]:
    commands = re.findall(r"kubectl apply ((?:\\\n|[^\n`])+)", text)
    return [re.findall(r"-f\s+(\S+)", command) for command in commands]


@pytest.mark.parametrize("doc", [MIGRATOR_DOC, GUIDE], ids=["docs/migrator.md", "deploy/README.md"])
def test_every_documented_apply_of_the_manifests_creates_the_namespace_first(doc: Path) -> None:
    applies = [files for files in kubectl_applies(doc.read_text()) if any("deploy/k8s" in f for f in files)]
    assert applies, f"{doc.name} names no kubectl apply of deploy/k8s"
    manifests = {f"deploy/k8s/{p.name}" for p in K8S.glob("*.yaml")}
    for files in applies:
        assert all(f in manifests for f in files), f"{doc.name}: {files} (a folder is applied in name order)"
        assert files[0] == "deploy/k8s/namespace.yaml", files
        assert set(files) == manifests, manifests - set(files)
        assert files.index("deploy/k8s/rbac.yaml") < files.index("deploy/k8s/migrator.yaml")  # its ServiceAccount


# --- findings 3 and 4: the Kubernetes work pool's job variables, pull step and namespace -----------------------


def work_pool() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(WORK_POOL.read_text())
    return config


def prefect_kubernetes_default_template() -> dict[str, Any]:
    """The kubernetes base job template that Prefect (3.9.1 here) ships and `prefect work-pool create` stores."""
    import prefect

    views = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    metadata = json.loads(views.read_text())
    (worker,) = [w["kubernetes"] for w in metadata.values() if "kubernetes" in w]
    template: dict[str, Any] = worker["default_base_job_configuration"]
    return template


def test_every_job_variable_is_a_variable_of_prefect_kubernetes_default_job_template() -> None:
    template = prefect_kubernetes_default_template()
    variables = set(template["variables"]["properties"])
    for deployment in work_pool()["deployments"]:
        used = set(deployment["work_pool"]["job_variables"])
        assert used <= variables, f"{deployment['name']}: {used - variables} are ignored by the default template"
    (container,) = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": "{{ cpu_request }}", "memory": "{{ memory_request }}"}


def test_the_runs_change_into_the_checkout_that_holds_the_entrypoint_and_data() -> None:
    config = work_pool()
    steps = [s for d in config["deployments"] for s in d.get("pull") or []] + (config.get("pull") or [])
    (step,) = [s["prefect.deployments.steps.set_working_directory"] for s in steps]
    checkout = step["directory"]
    assert checkout.startswith("/") and "{{" not in checkout, checkout
    for deployment in config["deployments"]:
        assert not Path(str(deployment["entrypoint"]).split(":")[0]).is_absolute()
        assert deployment["work_pool"]["job_variables"]["env"]["REACH_DATA_DIR"] == f"{checkout}/data"
    guide = GUIDE.read_text()
    assert f"`{checkout}`" in guide and "none of the images of step 4" in guide


def test_the_jobs_namespace_is_created_in_the_guide() -> None:
    guide = GUIDE.read_text()
    section = guide[guide.index("## 9.") : guide.index("## 10.")]
    created = set(re.findall(r"kubectl create namespace ([a-z0-9-]+)", section))
    for deployment in work_pool()["deployments"]:
        assert deployment["work_pool"]["job_variables"]["namespace"] in created, created
    assert "--namespace reach" in section and "Role" in section  # the worker and its RBAC there


# --- finding 5: both pods meet the "restricted" Pod Security Standard's required fields -----------------------

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}  # fmt: skip


def restricted_violations(deployment: dict[str, Any]) -> list[str]:
    spec = deployment["spec"]["template"]["spec"]
    pod = spec.get("securityContext", {})
    problems = [f for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    problems += [f"volume {v['name']}" for v in spec.get("volumes", []) if not set(v) - {"name"} <= RESTRICTED_VOLUMES]
    for container in spec.get("initContainers", []) + spec["containers"]:
        own = container.get("securityContext", {})
        name = container["name"]
        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = own.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds {capabilities['add']}")
        if own.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if own.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        seccomp = own.get("seccompProfile", pod.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is not RuntimeDefault or Localhost")
    return problems


@pytest.mark.parametrize("name", ["reach-policy", "reach-migrator"])
def test_the_pod_meets_the_restricted_pod_security_standard(name: str) -> None:
    assert restricted_violations(deployments()[name]) == []


def test_the_restricted_check_catches_what_it_looks_for() -> None:
    loose = {
        "spec": {"template": {"spec": {"containers": [{"name": "c"}], "volumes": [{"name": "h", "hostPath": {}}]}}}
    }
    assert len(restricted_violations(loose)) == 5


# --- finding 6: every per-service latency series carries the `service` label the dashboard shows --------------


def dashboard_service_legend_label() -> str:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    (legend,) = [
        t["legendFormat"] for p in dashboard["panels"] for t in p["targets"] if t["expr"] == "reach_service_latency_ms"
    ]
    match = re.fullmatch(r"\{\{(\w+)\}\}", legend)
    assert match, legend
    return match.group(1)


@pytest.mark.parametrize("rules", RULE_FILES)
def test_the_per_service_recording_rule_labels_the_dashboards_legend_label(rules: str) -> None:
    label = dashboard_service_legend_label()
    groups = yaml.safe_load((OBSERVABILITY / rules).read_text())["groups"]
    (expr,) = [r["expr"] for g in groups for r in g["rules"] if r.get("record") == "reach_service_latency_ms"]
    assert re.search(rf'label_replace\([\s\S]*"{label}",\s*"\$1",\s*"\w+",\s*"\(\.\*\)"\)\s*$', expr), expr


def test_the_promtool_unit_tests_expect_the_service_label_from_every_rule_file() -> None:
    label = dashboard_service_legend_label()
    tests = yaml.safe_load((OBSERVABILITY / "real-latency.test.yml").read_text())
    assert set(RULE_FILES) <= set(tests["rule_files"])
    expected = [
        s["labels"] for t in tests["tests"] for e in t.get("promql_expr_test", []) for s in e["exp_samples"]
        if e["expr"] == "reach_service_latency_ms"
    ]  # fmt: skip
    assert len(expected) == len(RULE_FILES) and all(f'{label}="' in labels for labels in expected), expected
    result = promtool("test", "rules", str(OBSERVABILITY / "real-latency.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
