"""The contract both ways: the migrator's own request, from the real local cluster, to a real served bento of each policy kind.

For each policy kind the repository trains (``mlp`` on observation version 1, ``gain_biased`` on
version 3), a tiny policy is trained (256 steps, flows.training), evaluated, gated by the real gate
with permissive rules and packaged as a bento by the release code (flows.release.packaging), then served by
``bentoml serve <bento>`` on 127.0.0.1. The request is :func:`migrator.observe.build_request` of a
live snapshot of the 7-21 demo app on the local control plane; the service must answer it with a
REACH answer whose move, if any, is one the request allows. A 256-step policy may well answer STOP, so
the same request is also sent with one pod's node marked failed (``available: false``): the service's
evacuation rule must then move a pod off it, and that move is checked against the request whatever
the policy is. Then one migrator cycle against the same
server applies the answer: the same move carried out on the cluster (or refused by a guard, with its
reason), or nothing when the answer is STOP. The service is deterministic, so the cycle's answer is
the one the test saw, as long as the cluster did not change in between.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bento.conftest import Server, bentoml_home, start_server  # noqa: F401  # bentoml_home is a fixture
from tests.conftest import scenario_dir, workload_file

from .test_e2e_migration import controller_for, placement

pytestmark = pytest.mark.e2e
SCENARIO_DIR = scenario_dir("7-21")
WORKLOAD_FILE = workload_file("aggregator_sequential")
POLICY_KINDS = {"mlp": 1, "gain_biased": 3}  # policy → observation version (flows.training.config)
PERMISSIVE_GATE = {
    "beat_noop": False,
    "beat_random": False,
    "min_fraction_of_best_known": 0.0,
    "max_invalid_actions": 10_000,
    "incumbent_tolerance_pct": 10_000.0,
}


def gated_bento(kind: str, work: Path) -> str:
    """Train, evaluate, gate and package a tiny policy of ``kind``; the bento tag."""
    from bento.artefact import write_evaluation
    from flows.evaluation import evaluate
    from flows.release.packaging import release_artefact
    from flows.training import load_train_config, train

    config = load_train_config(
        Path(__file__).resolve().parents[2] / "data" / "train" / "default.json",
        total_timesteps=256, n_envs=1, n_steps=128, batch_size=64, n_epochs=1, eval_freq_steps=10**6,
        eval_episodes=1, policy=kind, observation_version=POLICY_KINDS[kind],
    )  # fmt: skip
    artefact = train(config, SCENARIO_DIR, WORKLOAD_FILE, work / kind, progress=False, tensorboard=False).artefact_dir
    report, _ = evaluate(SCENARIO_DIR, [WORKLOAD_FILE], artefact, [0], 1, ["steady"])
    write_evaluation(artefact, report.model_dump(mode="json"))
    rules = work / "gate.json"
    rules.write_text(json.dumps(PERMISSIVE_GATE))
    verdict, tag = release_artefact(artefact, rules)
    assert verdict.passed and tag is not None, verdict
    return tag


@pytest.fixture(scope="module")
def served(bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:  # noqa: F811
    """A running ``bentoml serve`` of a gated bento of each policy kind."""
    work = tmp_path_factory.mktemp("contract")
    servers: dict[str, Server] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REACH_HOME", str(work / "reach"))  # no developer's serving policy as the gate's incumbent
        try:
            for kind in POLICY_KINDS:
                tag = gated_bento(kind, work)
                servers[kind] = start_server(tag, bentoml_home, work / f"serve-{kind}.log")
            yield servers
        finally:
            for server in servers.values():
                server.stop()


def with_a_failed_node(request: Any) -> tuple[Any, str]:
    """The request with the node of its first pod that may move elsewhere marked ``available: false``, as the
    migrator marks a NotReady node; and that node. Whatever a policy would pick, the service's evacuation rule
    (:mod:`ceenv.evacuation`) must then move a pod off it: a move known to come, whose validity is checked."""
    from ceenv.schema import ActionRequest

    located = {p.pod_name: p.node_name for s in request.cluster_state.services.values() for p in s.pods}
    pod = next(p for p in sorted(request.pod_deployable) if set(request.pod_deployable[p]) - {located[p]})
    failed = located[pod]
    body = request.model_dump(mode="json")
    body["cluster_state"]["nodes"][failed].update(available=False, cpu_availability=0.0, memory_availability=0.0)
    return ActionRequest.model_validate(body), failed


def ask(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{url}/get_action", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), {"error": err.read()[:2000].decode(errors="replace")}


@pytest.mark.parametrize("kind", list(POLICY_KINDS))
def test_the_migrators_request_is_answered_and_the_answer_is_applied(
    kind: str, served: dict[str, Server], core: Any, demo_app: Any, settings_for: Any
) -> None:
    from ceenv.schema import ActionResponse
    from migrator.observe import build_request

    server = served[kind]
    metadata = json.loads(urllib.request.urlopen(f"{server.url}/metadata", timeout=10).read())
    assert metadata["observation_version"] == POLICY_KINDS[kind] and metadata["gate"]["passed"]
    controller = controller_for(settings_for(server.url, once=True))
    request = build_request(controller.ops.snapshot(), controller.rules)
    status, body = ask(server.url, request.model_dump_json().encode())
    assert status == 200, f"the service refused the migrator's own request: {body}"
    answer = ActionResponse.model_validate(body)
    if not answer.is_stop:  # a 256-step policy is near-uniform: STOP or some move, not known in advance
        assert answer.target_node in request.pod_deployable[answer.pod_name], (answer, request.pod_deployable)
    evacuating, failed = with_a_failed_node(request)  # the same request with a failed node: known to move
    status, body = ask(server.url, evacuating.model_dump_json().encode())
    assert status == 200, f"the service refused the migrator's request with a failed node: {body}"
    moved = ActionResponse.model_validate(body)
    assert not moved.is_stop, f"no pod was moved off the failed node {failed}: {moved}"
    assert moved.target_node in evacuating.pod_deployable[moved.pod_name], (moved, evacuating.pod_deployable)
    on = {p.pod_name: p.node_name for s in evacuating.cluster_state.services.values() for p in s.pods}
    assert on[moved.pod_name] == failed != moved.target_node, moved
    before = placement(core)
    [outcome] = controller.run_cycle()
    after = placement(core)
    if answer.is_stop:
        assert outcome.kind == "stop" and after == before, outcome
    elif outcome.kind == "refused":
        assert outcome.verdict.move.pod_name == answer.pod_name and outcome.detail, outcome
        assert after == before
    else:
        assert outcome.kind == "migrated", outcome
        assert answer.pod_name not in after
        [new] = set(after) - set(before)
        assert after[new] == (before[answer.pod_name][0], answer.target_node)
