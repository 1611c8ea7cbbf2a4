"""Blue/green serving of policy bentos on loopback, and the endpoint file the migrator reads.

The serving endpoint is one small JSON file, ``$REACH_HOME/endpoint.json`` (URL, bento tag, slot,
PID, and the cluster it serves: scenario and workload names, files and their hashes), replaced
atomically. :func:`redeploy` starts the new bento in the free slot (``blue`` or ``green``) on
another 127.0.0.1 port, waits for ``/readyz``, replays a canary batch of requests of the cluster it
will serve against both servers, switches the endpoint file, lets in-flight requests drain and only
then stops the old server — or, with ``retire_previous=False``, keeps the old server idle so that
:func:`roll_back` can switch back in an instant (the analysis period of the redeploy flow) and
:func:`retire` stops it once the new one is trusted. Any failure stops the new server and leaves
the old one serving and the endpoint file untouched; a bento that fails its canary is recorded as
rejected (:mod:`.rejections`), and one switched in is re-admitted. A switch — choose the free slot, start,
canary, write the endpoint file, stop the old server — and a rollback, a retirement or an undeploy
each hold one inter-process lock (:func:`switch_lock`): two deploys at once run one after the
other, the second seeing the first's endpoint, never both in one slot. :func:`served_summary` and
:func:`fetch_metadata` say what a bento serves (cluster, planning in force, the gate's planning)
for ``reach serve`` and ``reach status``. Used by the ``reach-redeploy`` flow and ``reach
deploy``/``reach serve``/``reach status``.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bento.arguments import environment as serve_environment
from flows.local import locks, processes
from flows.release import rejections

if TYPE_CHECKING:
    from flows.release.selection import Cluster

SLOTS = ("blue", "green")
# A waiting deploy outwaits a typical switch (a bento gets ready in tens of seconds) but not a stuck one.
SWITCH_LOCK_WAIT_S = 180.0


class RedeployError(RuntimeError):
    """The new bento could not take over; the old one (if any) is still serving."""


class CanaryFailed(RedeployError):
    """The new bento answered part of its canary badly: not switched, and recorded as rejected (:mod:`.rejections`)."""


class SwitchBusy(RedeployError, locks.LockTimeout):
    """Another switch held the switch lock for longer than this one may wait; this one changed nothing."""


@dataclass(frozen=True)
class Endpoint:
    """What is serving now: read by the migrator, written only by :func:`switch`.

    Fields added later default to "" (or None), so that every older endpoint file still reads.
    """

    url: str
    bento: str
    slot: str
    pid: int
    since: float
    scenario: str = ""  # the cluster it was deployed for ("" in files written before this field)
    workload: str = ""
    arguments: dict[str, str] = field(default_factory=dict)  # serve-time bento arguments (a general policy's cluster)
    pid_start: int | None = None  # processes.process_start of pid: a reused PID is not this server
    scenario_sha256: str = ""  # Cluster.scenario_sha256 of the cluster it serves ("" in files written before it)
    workload_sha256: str = ""  # Cluster.workload_sha256
    scenario_dir: str = ""  # the cluster's files, for a redeploy that names no cluster (Cluster.scenario_dir)
    workload_file: str = ""

    def serves(self, cluster: Cluster) -> bool:
        """Whether this deployment was made for ``cluster``: the same scenario and workload names and, for each
        of the cluster's hashes that is known, the same file contents.

        A record without the hashes (written before they were recorded) serves no cluster whose files
        are known: a redeploy replaces it rather than trust a name that another folder may reuse.
        """
        if (self.scenario, self.workload) != (cluster.scenario, cluster.workload):
            return False
        pairs = ((cluster.scenario_sha256, self.scenario_sha256), (cluster.workload_sha256, self.workload_sha256))
        return all(recorded == known for known, recorded in pairs if known)


def cluster_fields(cluster: Cluster | None) -> dict[str, str]:
    """The :class:`Endpoint` fields that say which cluster a deployment serves (none without a cluster)."""
    if cluster is None:
        return {}
    return {
        "scenario": cluster.scenario,
        "workload": cluster.workload,
        "scenario_sha256": cluster.scenario_sha256,
        "workload_sha256": cluster.workload_sha256,
        "scenario_dir": cluster.scenario_dir,
        "workload_file": cluster.workload_file,
    }


class EndpointFileError(ValueError):
    """The endpoint file exists but is not an endpoint record (the message names it and the fix)."""


def endpoint_file() -> Path:
    return processes.reach_home() / "endpoint.json"


def switch_lock() -> Path:
    """The lock file of the blue/green switch, held from choosing the slot to stopping the old server."""
    return processes.reach_home() / "locks" / "switch.lock"


def _switching(
    task: str, wait_s: float = SWITCH_LOCK_WAIT_S, busy: type[locks.LockTimeout] = locks.LockTimeout
) -> AbstractContextManager[None]:
    return locks.held(switch_lock(), task, wait_s, busy)


def recorded_endpoint() -> Endpoint | None:
    """The endpoint file's record, whether or not its server still runs; None when there is no file."""
    path = endpoint_file()
    if not path.exists():
        return None
    known = {f.name for f in dataclasses.fields(Endpoint)}
    try:  # a key this version does not know (a newer reach wrote the file) is left out, not an error
        return Endpoint(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})
    except (ValueError, TypeError, AttributeError) as exc:
        raise EndpointFileError(
            f"{path} is not a reach endpoint record ({exc}); remove it (`rm {path}`) and deploy again with "
            "`reach deploy`"
        ) from exc


def current_endpoint() -> Endpoint | None:
    """The serving endpoint, or None when nothing is deployed (or its server is gone)."""
    endpoint = recorded_endpoint()
    if endpoint is None:
        return None
    return endpoint if processes.is_alive(endpoint.pid, endpoint.pid_start) else None


def switch(endpoint: Endpoint) -> None:
    """Point the endpoint file at ``endpoint`` (atomic replace: readers see the old or the new file).

    Deploys call it holding the switch lock (:func:`redeploy`, :func:`roll_back`)."""
    path = endpoint_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(endpoint)))
    tmp.replace(path)


def post_json(url: str, body: Any, timeout_s: float = 10.0) -> tuple[int, Any]:
    """POST JSON and return (status, parsed body); HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def bentoml_home() -> str:
    """The BentoML home this process uses, so that a server we start reads the same bento store."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


def bentoml_cli() -> str:
    """The ``bentoml`` command of this interpreter's environment."""
    return os.path.join(os.path.dirname(sys.executable), "bentoml")


def start_bento(
    bento: str, slot: str, ready_timeout_s: float = 120.0, arguments: dict[str, str] | None = None
) -> processes.ProcessRecord:
    """``bentoml serve <bento> [--arg k=v …]`` on a free loopback port as process ``bento-<slot>``; wait until ready.

    The arguments also go in ``$REACH_SERVE_ARGUMENTS`` (:mod:`bento.arguments`): BentoML drops ``--arg``
    when it serves a built bento."""
    port = processes.free_port()
    argv = [bentoml_cli(), "serve", bento, "--host", "127.0.0.1", "--port", str(port)]
    argv += [part for key, value in (arguments or {}).items() for part in ("--arg", f"{key}={value}")]
    env = {"BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": bentoml_home(), **serve_environment(arguments)}
    record = processes.start(f"bento-{slot}", argv, port, env)
    try:
        processes.wait_http(f"{record.url}/readyz", ready_timeout_s, record.pid)
    except (TimeoutError, RuntimeError) as err:
        processes.stop(record.name)
        raise RedeployError(f"bento {bento} did not become ready: {err}; see {record.log}") from None
    return record


@dataclass(frozen=True)
class CanaryResult:
    requests: int
    agreements: int
    failures: list[str]
    # Of the failures, those the server answered wrongly (an HTTP error, a malformed answer); the others got no
    # answer at all (refused, timed out, cut off), which may be the machine's fault rather than the bento's.
    answered_wrongly: int = 0


def canary(new_url: str, old_url: str | None, requests: list[dict[str, Any]]) -> CanaryResult:
    """Replay recorded requests: the new server must answer every one with a well-formed action."""
    failures: list[str] = []
    agreements = wrong = 0
    for i, body in enumerate(requests):
        try:
            status, answer = post_json(f"{new_url}/get_action", body)
        except (OSError, ValueError, http.client.HTTPException) as err:  # refused, timed out, cut off, not JSON
            failures.append(f"request {i}: no usable answer: {err}")
            continue
        if status != 200 or not isinstance(answer, dict) or not {"pod_name", "target_node", "is_stop"} <= answer.keys():
            failures.append(f"request {i}: HTTP {status}: {str(answer)[:200]}")
            wrong += 1
            continue
        if old_url is not None:
            try:
                old_status, old_answer = post_json(f"{old_url}/get_action", body)
            except (OSError, ValueError, http.client.HTTPException):  # a sick incumbent must not block its successor
                continue
            if old_status == 200 and isinstance(old_answer, dict):
                keys = ("pod_name", "target_node", "is_stop")
                agreements += all(old_answer.get(k) == answer.get(k) for k in keys)
    return CanaryResult(len(requests), agreements, failures, wrong)


@dataclass(frozen=True)
class RedeployResult:
    endpoint: Endpoint
    previous: Endpoint | None
    canary: CanaryResult


def redeploy(
    bento: str,
    canary_requests: list[dict[str, Any]],
    ready_timeout_s: float = 120.0,
    drain_s: float = 3.0,
    cluster: Cluster | None = None,
    retire_previous: bool = True,
    arguments: dict[str, str] | None = None,
    lock_wait_s: float = SWITCH_LOCK_WAIT_S,
) -> RedeployResult:
    """Blue/green switch to ``bento`` for ``cluster``; on any failure the old server keeps serving (see module doc).

    The whole switch holds the switch lock: another deploy waits up to ``lock_wait_s`` for it, then
    fails with :class:`SwitchBusy` having changed nothing.
    """
    with _switching(f"switching to {bento}", lock_wait_s, SwitchBusy):
        previous = current_endpoint()  # read under the lock: the slot it leaves free stays free
        if previous is not None and previous.bento == bento and _serves(previous, cluster):
            raise RedeployError(f"bento {bento} is already serving at {previous.url}")
        slot = SLOTS[1] if previous is not None and previous.slot == SLOTS[0] else SLOTS[0]
        processes.stop(f"bento-{slot}")  # a leftover of an earlier failed switch
        record = start_bento(bento, slot, ready_timeout_s, arguments)
        try:
            result = canary(record.url, previous.url if previous else None, canary_requests)
            if result.failures:
                raise _canary_failed(bento, result)
            endpoint = Endpoint(
                record.url, bento, slot, record.pid, time.time(), arguments=dict(arguments or {}),
                pid_start=record.pid_start, **cluster_fields(cluster),
            )  # fmt: skip
            switch(endpoint)
        except BaseException:  # not switched: the new server must not be left running beside the old one
            processes.stop(record.name)
            raise
        _readmit(bento)
        if previous is not None and retire_previous:
            time.sleep(drain_s)
            _stop_server(previous)
    return RedeployResult(endpoint, previous, result)


def _canary_failed(bento: str, result: CanaryResult) -> CanaryFailed:
    """The error of a failed canary, once the bento is recorded as rejected (else, still gated and the newest, it
    would be chosen again by the next automatic deploy). Only a request answered wrongly rejects it: requests
    that got no answer (refused, timed out) may be the machine's fault, and rejecting the bento for them would
    make ``reach demo --policy auto`` build a new one every time."""
    failed = f"failed {len(result.failures)} of {result.requests} canary requests: {result.failures[0]}"
    if not result.answered_wrongly:  # no answer at all (a timeout on a busy machine): not the bento's verdict
        return CanaryFailed(f"bento {bento} {failed}; no request was answered wrongly, so it stays eligible")
    try:
        rejections.reject(bento, failed)
        skipped = f"the automatic choice skips it from now on (`reach deploy --bento {bento}` tries it again)"
    except (OSError, ValueError, locks.LockTimeout) as exc:
        skipped = f"recording it as rejected failed ({exc})"
    return CanaryFailed(f"bento {bento} {failed}; {skipped}")


def _readmit(bento: str) -> None:
    """A bento in service is eligible again (an explicit deploy of a rejected one); a failure only warns: it serves."""
    try:
        rejections.readmit(bento)
    except (OSError, ValueError, locks.LockTimeout) as exc:
        print(f"warning: {bento} serves, but re-admitting it failed: {exc}", file=sys.stderr)


def _serves(endpoint: Endpoint, cluster: Cluster | None) -> bool:
    """:meth:`Endpoint.serves`; without a cluster, whether the endpoint names none either."""
    if cluster is None:
        return not (endpoint.scenario or endpoint.workload)
    return endpoint.serves(cluster)


def _stop_server(endpoint: Endpoint) -> None:
    """Stop the server of ``endpoint``'s slot if it is still that server (another deploy may have put its
    own there since the endpoint was replaced); callers hold the switch lock."""
    name = f"bento-{endpoint.slot}"
    record = processes.recorded(name)
    if record is None or record.pid != endpoint.pid:
        return
    if endpoint.pid_start is not None and record.pid_start not in (None, endpoint.pid_start):
        return
    processes.stop(name)


def retire(previous: Endpoint, drain_s: float = 3.0) -> None:
    """Stop a server that no longer serves, once clients that read the old endpoint finished their requests."""
    time.sleep(drain_s)
    with _switching(f"retiring {previous.bento}"):
        _stop_server(previous)


def roll_back(result: RedeployResult, ready_timeout_s: float = 120.0, drain_s: float = 3.0) -> Endpoint:
    """Blue/green back: serve ``result.previous`` again and stop the new server; return the restored endpoint.

    The previous server is normally still running (``redeploy(..., retire_previous=False)``), so the
    switch is one atomic file replace; if it died meanwhile, its bento is started again in its slot first.
    Refused (:class:`RedeployError`, nothing changed) when another deploy replaced ``result.endpoint`` since.
    """
    previous = result.previous
    if previous is None:
        raise RedeployError(f"nothing to roll back to: {result.endpoint.bento} was the first deployment")
    with _switching(f"rolling back to {previous.bento}"):
        now = recorded_endpoint()
        if now != result.endpoint:
            raise RedeployError(
                f"not rolled back to {previous.bento}: {endpoint_file()} no longer names {result.endpoint.bento} "
                f"(it names {now.bento if now else 'nothing'}): another deploy replaced it since, and that one "
                f"stays; `reach deploy --bento {previous.bento}` deploys the previous one if it is still wanted"
            )
        url, pid, pid_start = previous.url, previous.pid, previous.pid_start
        if not processes.is_alive(pid, pid_start):
            record = start_bento(previous.bento, previous.slot, ready_timeout_s, previous.arguments)
            url, pid, pid_start = record.url, record.pid, record.pid_start
        restored = dataclasses.replace(previous, url=url, pid=pid, since=time.time(), pid_start=pid_start)
        switch(restored)
        time.sleep(drain_s)
        _stop_server(result.endpoint)
    return restored


def undeploy() -> bool:
    """Stop the serving bento and remove the endpoint file (a malformed one too: it names no server to stop)."""
    with _switching("undeploying"):
        try:
            endpoint = current_endpoint()
        except EndpointFileError:
            endpoint = None
        endpoint_file().unlink(missing_ok=True)
        return endpoint is not None and processes.stop(f"bento-{endpoint.slot}")


def served_summary(bento: str, cluster: Cluster, arguments: Mapping[str, str]) -> dict[str, Any]:
    """What ``bento`` started for ``cluster`` with serve-time ``arguments`` will say it serves, from the stores.

    The ``model_tag``, ``gate``, ``trained`` and ``served`` keys of its ``GET /metadata``
    (:meth:`bento.policy.Policy.summary`), read from the bento's build arguments, the model's card
    and the cluster's files without loading the model: ``reach serve`` prints it before the server starts.
    """
    import bentoml

    from bento.planning_settings import PlanningSettings, gated_planning_error, readable_gated_planning
    from bento.served import cluster_identity, served_block

    info = bentoml.bentos.get(bento).info
    effective = {**info.args, **arguments}  # as the service lays them over the build arguments (bento.arguments)
    model_tag = str(effective.get("model_tag") or info.labels.get("model", ""))
    card: dict[str, Any] = dict(bentoml.models.get(model_tag).info.metadata)
    trained = {"scenario": card["scenario"], "workload": card["workload"]}
    scenario: Mapping[str, Any] = trained["scenario"]
    workload: Mapping[str, Any] = trained["workload"]
    if effective.get("scenario") and effective.get("workload"):
        scenario, workload = cluster_identity(
            cluster.scenario, str(effective["scenario"]), cluster.workload, str(effective["workload"])
        )
    gated = readable_gated_planning(card.get("evaluation"))
    served = served_block(
        scenario,
        workload,
        cluster.node_count or 0,
        cluster.slot_count or 0,
        PlanningSettings.from_recorded(effective),  # a bento built before the noise charge: its fixed margin
        gated,
        gated_planning_error(card.get("evaluation")),
    )
    return {"model_tag": model_tag, "gate": card.get("gate") or {}, "trained": trained, "served": served}


def fetch_metadata(url: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """``GET {url}/metadata`` of a running policy server; ``OSError``/``ValueError`` when it does not answer JSON."""
    with urllib.request.urlopen(f"{url}/metadata", timeout=timeout_s) as response:
        body = json.loads(response.read())
    if not isinstance(body, dict):
        raise ValueError(f"{url}/metadata answered {type(body).__name__}, not a JSON object")
    return body
