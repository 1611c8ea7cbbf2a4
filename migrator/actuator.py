"""Make-before-break migration of one ReplicaSet pod, with deadline, rollback and crash-safe bookkeeping.

Mechanism (works on Kubernetes 1.20, which lacks ``pod-deletion-cost``, and on current servers):

1. Record the intent on the old pod (annotations: target, ReplicaSet, original ``pod-template-hash``).
2. Temporarily cordon every other node: a ``reach.io/temporary-cordon=<id>:NoSchedule`` taint, not
   ``spec.unschedulable``. The taint adds to whatever else keeps a node unschedulable, so lifting it
   never lifts a cordon someone else set meanwhile (``kubectl cordon`` of a node that is already
   unschedulable writes nothing, so a cordon flag could not tell the two apart); an admin-cordoned
   node gets it too (a pod may tolerate that cordon). Cordoning that alone uses the whole cap fails
   the migration before the pod is released.
3. Orphan the old pod: set its ``pod-template-hash`` label to ``reach-migrating``. Its ReplicaSet
   releases it and creates a replacement, which the scheduler can only place on the target. The
   old pod keeps its other labels, so it keeps serving behind the Service: Ready pods go N → N+1.
4. As soon as the replacement is *bound* to the target (the only thing the cordons are for), lift
   the cordons: the cordon window is the scheduling time, capped by ``cordon_cap_s`` (not bound
   within the cap: roll back). A lift that fails is tried again for a few seconds (then the cordons
   left are the clean-up's, ``leftovers``). Then wait (deadline) until the replacement — the pod
   bound, followed by its name — is Ready.
5. Delete the old pod (N+1 → N) and wait until it is gone. This request is the commit point, made
   only while the replacement is still Ready on the target (read just before). An
   old pod on a node that is not Ready (failed, unreachable) is force-deleted (grace period 0),
   only now, after its replacement is Ready: its kubelet cannot confirm a normal deletion, which
   would leave it Terminating until the node returns (docs/migrator.md, node failure).

Right before the commit point the actuator asks ``may_commit`` (the controller's: does this migrator
still count on the cluster's Lease, :meth:`migrator.lease.LeaderLease.may_write`). When it may not, the
migration is *abandoned* as it stands: nothing more is written, no rollback either, since another
migrator may hold the Lease by now and roll it back as a leftover (``clean_up_leftovers``, as after a
killed migrator); the replacement and the old pod both serve meanwhile (Ready N+1).

On timeout or error the migration rolls back: cordon the remaining nodes, delete the replacement,
hand the old pod back to its ReplicaSet (restore the label) — the ReplicaSet then removes its
surplus pod, an unscheduled one first — and lift every cordon of this migration, at the latest
``cordon_cap_s`` after the migration first cordoned, or :data:`ROLLBACK_GRACE_S` after the rollback
began when that is later (the ReplicaSet, if not settled by then, settles without them: the pod it
schedules then is the newest and not Ready, the first it removes). Every temporary
change is written on the objects, so ``clean_up_leftovers`` (run before anything else when the
migrator starts, and at the next cycle after an incomplete rollback) rolls back whatever a killed
migrator or a failed rollback left half-done. The Kubernetes calls sit
behind the ``ClusterOps`` protocol (implemented by :mod:`migrator.kube`), so this module is pure
logic, unit-tested with an in-memory fake.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from migrator.guards import Move
from migrator.snapshot import (
    ANNOTATION_MIGRATION_TARGET,
    ANNOTATION_ORIGINAL_HASH,
    ANNOTATION_REPLACEMENT,
    ANNOTATION_REPLICASET,
    ANNOTATION_STARTED_AT,
    LABEL_MIGRATION,
    ORPHANED_HASH_VALUE,
    POD_TEMPLATE_HASH,
    ClusterAccessDenied,
    ClusterSnapshot,
    NodeInfo,
    PodInfo,
    temporary_cordons,
)

ANNOTATION_MIGRATION_ID = "reach.io/migration-id"
ROLLBACK_GRACE_S = 2.0  # a rollback keeps its cordons at least this long (or cordon_cap_s if less) for the settle
LIFT_RETRY_S = 3.0  # a lift that fails after the bind is tried again for at most this long (or cordon_cap_s if less)
LIFT_FIRST_BACKOFF_S = 0.1  # the first wait before trying that lift again; it doubles after each failure
_BOOKKEEPING_ANNOTATIONS = (
    ANNOTATION_MIGRATION_ID,
    ANNOTATION_MIGRATION_TARGET,
    ANNOTATION_ORIGINAL_HASH,
    ANNOTATION_REPLICASET,
    ANNOTATION_REPLACEMENT,
    ANNOTATION_STARTED_AT,
)


class ClusterOps(Protocol):
    """The Kubernetes operations the actuator needs (implemented by ``migrator.kube.KubeOps``)."""

    def snapshot(self) -> ClusterSnapshot: ...

    def get_pod(self, name: str) -> PodInfo | None: ...

    def list_pods(self, match_labels: Mapping[str, str]) -> list[PodInfo]: ...

    def patch_pod_metadata(
        self, name: str, labels: Mapping[str, str | None], annotations: Mapping[str, str | None]
    ) -> None: ...

    def list_nodes(self) -> list[NodeInfo]:
        """Every node (a cheaper read than ``snapshot``: no pods)."""

    def cordon(self, node_names: Sequence[str], migration_id: str) -> None:
        """Give each named node this migration's temporary cordon (taint); stops at the first failure."""

    def lift_cordon(self, node_names: Sequence[str] | None, migration_id: str | None) -> None:
        """Remove this migration's temporary cordon (``None``: any of ours, pre-taint ones too) from the named
        nodes (``None``: every node); every node is tried, then the failures are raised together."""

    def delete_pod(self, name: str) -> None: ...

    def force_delete_pod(self, name: str) -> None: ...

    def replicaset_selector(self, name: str) -> dict[str, str]: ...

    def replicaset_replicas(self, name: str) -> int | None:
        """The ReplicaSet's wanted replicas; ``None`` when it does not exist (404). Any other failure raises."""


class Clock(Protocol):
    def now_s(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now_s(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _attempt(errors: list[str], what: str, step: Callable[..., object], *args: object) -> bool:
    """Run one rollback step; a failure is appended to ``errors`` (steps are independent: go on)."""
    try:
        step(*args)
    except Exception as exc:
        errors.append(f"{what}: {exc}")
        return False
    return True


class MigrationFailed(Exception):
    """The migration could not complete; the actuator rolls it back."""


class CommitWithdrawn(Exception):
    """This migrator may no longer write (the Lease is no longer its own): the migration is left as it stands."""


@dataclass(frozen=True)
class MigrationResult:
    move: Move
    migration_id: str
    migrated: bool
    detail: str
    replacement_pod: str = ""
    replacement_ready_s: float = 0.0
    old_pod_gone_s: float = 0.0
    cordon_window_s: float = 0.0  # from the first temporary cordon to the last one lifted
    forced_removal: bool = False  # the old pod's node was not Ready: removed with grace period 0
    leftovers: bool = False  # the rollback was incomplete: marks are left for Controller's clean-up
    started: bool = True  # False: the ReplicaSet could not be read, nothing was changed
    access_denied: bool = False  # the API server refused a read or a write (401/403): needs a fix, not a retry
    abandoned: bool = False  # may_commit said no before the commit point: left as it stands for the clean-up


@dataclass
class Actuator:
    """Carries out one guarded move; ``migrate`` never raises for an expected failure."""

    ops: ClusterOps
    clock: Clock
    deadline_s: float = 60.0
    poll_s: float = 0.2
    settle_s: float = 30.0
    cordon_cap_s: float = 10.0
    # Asked right before the commit point (the old pod's deletion): may this migrator still write? None: always.
    may_commit: Callable[[], bool] | None = None

    def migrate(self, move: Move, snapshot: ClusterSnapshot) -> MigrationResult:
        started_s = self.clock.now_s()
        pod = snapshot.app_pod(move.pod_name)
        if pod is None or pod.owner_kind != "ReplicaSet" or POD_TEMPLATE_HASH not in pod.labels:
            raise ValueError(f"pod {move.pod_name} is not a ReplicaSet pod with {POD_TEMPLATE_HASH}; guard it first")
        migration_id = uuid.uuid4().hex[:10]
        try:  # reads only: nothing has changed yet, so a failure here needs no rollback
            selector = self.ops.replicaset_selector(pod.owner_name)
            before = {p.name for p in self.ops.list_pods(selector)}
        except Exception as exc:
            detail = f"not started, nothing changed: cannot read ReplicaSet {pod.owner_name} or its pods: {exc}"
            denied = isinstance(exc, ClusterAccessDenied)
            return MigrationResult(move, migration_id, False, detail, started=False, access_denied=denied)
        replacement, cordoned_s, window_s, lift_error = "", None, None, ""
        try:
            self._record_intent(pod, move, migration_id)
            cordoned_s = self.clock.now_s()
            # Every other node, an admin-cordoned one too (a pod may tolerate that cordon, not ours).
            others = [node.name for node in snapshot.nodes if node.name != move.target_node]
            self.ops.cordon(others, migration_id)
            self._check_cordoning_time(cordoned_s, len(others))
            self.ops.patch_pod_metadata(
                pod.name, {POD_TEMPLATE_HASH: ORPHANED_HASH_VALUE, LABEL_MIGRATION: migration_id}, {}
            )
            cap_at_s = min(cordoned_s + self.cordon_cap_s, started_s + self.deadline_s)
            replacement = self._wait_for_binding(selector, before, move, cap_at_s)
            # Bound: a cordon that cannot be lifted (after a few tries) is a leftover for the clean-up, not a
            # reason to undo the move.
            lift_problem = self._lift_cordons_after_binding(migration_id)
            if lift_problem:
                lift_error = f"; cordons not all lifted ({lift_problem}), left for the clean-up"
            window_s = self.clock.now_s() - cordoned_s
            self._wait_until_ready(replacement, move, started_s + self.deadline_s)
            ready_s = self.clock.now_s() - started_s
            if self.may_commit is not None and not self.may_commit():
                raise CommitWithdrawn(
                    f"abandoned before the commit point: this migrator no longer holds the cluster's Lease, so it "
                    f"writes nothing more (no deletion of {pod.name}, no rollback); {replacement} and {pod.name} both "
                    "serve until the Lease holder's clean-up rolls the migration back"
                )
            forced = self._remove_old_pod(pod, snapshot, replacement, move)
        except CommitWithdrawn as exc:  # no write at all: the Lease may be another migrator's by now
            return MigrationResult(
                move, migration_id, False, str(exc) + lift_error, replacement,
                cordon_window_s=window_s or 0.0, leftovers=True, abandoned=True,
            )  # fmt: skip
        except Exception as exc:  # any failure, API errors included, must end in a rollback
            errors = self.roll_back(migration_id, pod.name, pod.owner_name, replacement, cordoned_s)
            detail = f"rolled back: {exc}"
            denied = isinstance(exc, ClusterAccessDenied)  # a write the cluster refused: it will refuse it again
            if errors:
                detail += f"; rollback incomplete ({'; '.join(errors)}), the next cycle cleans up"
            if window_s is None:  # the rollback lifted the cordons
                window_s = 0.0 if cordoned_s is None else self.clock.now_s() - cordoned_s
            return MigrationResult(
                move, migration_id, False, detail, replacement, cordon_window_s=window_s, leftovers=bool(errors),
                access_denied=denied,
            )  # fmt: skip
        detail = f"moved {pod.name} from {pod.node_name} to {move.target_node} as {replacement}"
        if forced:
            detail += f" (node {pod.node_name} not Ready: old pod force-deleted)"
        detail += lift_error
        try:  # committed: the replacement serves; only the confirmation of the removal can fail now
            if not self._wait_until_gone(pod.name):
                detail += f"; removal of {pod.name} not confirmed within {self.settle_s:g} s (still Terminating)"
        except Exception as exc:
            detail += f"; removal of {pod.name} not confirmed: {exc}"
        gone_s = self.clock.now_s() - started_s
        return MigrationResult(
            move, migration_id, True, detail, replacement, ready_s, gone_s, window_s or 0.0, forced,
            leftovers=bool(lift_error),
        )  # fmt: skip

    def _check_cordoning_time(self, cordoned_s: float, nodes: int) -> None:
        """Fail before anything moves when cordoning alone used the whole cap (a cluster this large needs more)."""
        took_s = self.clock.now_s() - cordoned_s
        if took_s >= self.cordon_cap_s:
            raise MigrationFailed(
                f"cordoning {nodes} nodes took {took_s:.1f} s, the whole {self.cordon_cap_s:g} s cordon cap, before "
                "the pod was released; raise cordon_cap_s for a cluster of this size"
            )

    def _remove_old_pod(self, pod: PodInfo, before: ClusterSnapshot, replacement: str, move: Move) -> bool:
        """Delete the old pod once its replacement is Ready; force (grace 0) only when its node is not Ready.

        Returns whether the deletion was forced. A NotReady or unreachable node's kubelet cannot confirm
        a normal deletion, so the pod would stay Terminating (and keep its name and IP) until the node
        returns; for a ReplicaSet pod whose replacement already serves, removing it from the API is safe.
        The node's state is read again; if that read fails, the read the migration started from decides
        (a failed read must not undo a replacement that already serves). Right before the deletion (the
        commit point) the replacement, by the name it had when it was bound, is read once more: it must
        still be Ready on the target, else the migration fails (and rolls back) with the old pod kept; a read
        that fails says nothing, and the Ready just seen decides (:meth:`Actuator._still_ready_on_target`).
        """
        try:
            node = self.ops.snapshot().node(pod.node_name) if pod.node_name else None
        except Exception:
            node = before.node(pod.node_name) if pod.node_name else None
        if not self._still_ready_on_target(replacement, move):
            raise MigrationFailed(f"replacement {replacement} is no longer Ready on {move.target_node}")
        if node is not None and not node.ready:
            self.ops.force_delete_pod(pod.name)
            return True
        self.ops.delete_pod(pod.name)
        return False

    def _record_intent(self, pod: PodInfo, move: Move, migration_id: str) -> None:
        annotations: dict[str, str | None] = {
            ANNOTATION_MIGRATION_ID: migration_id,
            ANNOTATION_MIGRATION_TARGET: move.target_node,
            ANNOTATION_ORIGINAL_HASH: pod.labels[POD_TEMPLATE_HASH],
            ANNOTATION_REPLICASET: pod.owner_name,
            ANNOTATION_STARTED_AT: f"{time.time():.3f}",
        }
        self.ops.patch_pod_metadata(pod.name, {}, annotations)

    def _wait_for_binding(self, selector: Mapping[str, str], before: set[str], move: Move, until_s: float) -> str:
        """The name of the ReplicaSet's new pod, once it is bound to the target before ``until_s`` (clock time);
        raises MigrationFailed otherwise. From then on the replacement is that pod, followed by its name."""
        recorded = ""
        while self.clock.now_s() < until_s:
            fresh = [p for p in self.ops.list_pods(selector) if p.name not in before and not p.terminating]
            if fresh:
                candidate = next((p for p in fresh if p.name == recorded), fresh[0])
                if candidate.name != recorded:
                    self.ops.patch_pod_metadata(move.pod_name, {}, {ANNOTATION_REPLACEMENT: candidate.name})
                    recorded = candidate.name
                if candidate.node_name and candidate.node_name != move.target_node:
                    raise MigrationFailed(f"replacement {candidate.name} landed on {candidate.node_name}")
                if candidate.node_name == move.target_node:
                    return candidate.name
            self.clock.sleep(self.poll_s)
        what = f"replacement {recorded}" if recorded else "no replacement pod"
        raise MigrationFailed(f"{what} bound to {move.target_node} within the {self.cordon_cap_s:g} s cordon cap")

    def _replacement_on_target(self, replacement: str, move: Move) -> PodInfo:
        """The replacement (by name), still there and on the target; raises MigrationFailed otherwise."""
        pod = self.ops.get_pod(replacement)
        if pod is None or pod.terminating:
            raise MigrationFailed(f"replacement {replacement} is gone or terminating")
        if pod.node_name != move.target_node:
            raise MigrationFailed(f"replacement {replacement} landed on {pod.node_name or 'no node'}")
        return pod

    def _still_ready_on_target(self, replacement: str, move: Move) -> bool:
        """Whether the replacement is still Ready on the target, read once more just before the commit point.

        Only a definite answer undoes the migration: the pod gone, terminating, elsewhere or not Ready. A read
        that fails (a 503, a timeout: likely while a node is failing) says nothing new, so the Ready just seen
        by :meth:`Actuator._wait_until_ready` stands: rolling back on it would delete a serving replacement and, in an
        evacuation, leave only the pod on the failed node. A refusal (401/403) still fails the migration.
        """
        try:
            return self._replacement_on_target(replacement, move).ready
        except (MigrationFailed, ClusterAccessDenied):
            raise
        except Exception:
            return True

    def _wait_until_ready(self, replacement: str, move: Move, until_s: float) -> None:
        """Wait until the replacement bound to the target (by name: during a scale-up another new pod of the
        ReplicaSet may be Ready there first) is Ready before ``until_s`` (clock time); raises MigrationFailed otherwise."""
        while self.clock.now_s() < until_s:
            if self._replacement_on_target(replacement, move).ready:
                return
            self.clock.sleep(self.poll_s)
        raise MigrationFailed(
            f"replacement {replacement} Ready on {move.target_node} within the {self.deadline_s:g} s deadline"
        )

    def _wait_until_gone(self, pod_name: str) -> bool:
        """Whether the pod left the API within ``settle_s``."""
        end_s = self.clock.now_s() + self.settle_s
        while self.clock.now_s() < end_s:
            if self.ops.get_pod(pod_name) is None:
                return True
            self.clock.sleep(self.poll_s)
        return False

    def _lift_cordons(self, migration_id: str) -> None:
        self.ops.lift_cordon(None, migration_id)

    def _lift_cordons_after_binding(self, migration_id: str) -> str:
        """Lift this migration's cordons, tried again with a doubling backoff (from :data:`LIFT_FIRST_BACKOFF_S`) for
        at most ``cordon_cap_s`` or :data:`LIFT_RETRY_S`, whichever is less; '' when lifted, else why not.

        Every other node stays closed to every workload while a cordon is up, so a lift that fails is not
        left for the next cycle (``interval_s`` later) when a moment's wait would do. A refusal (401/403)
        is not tried again: it would be refused the same way.
        """
        started_s = self.clock.now_s()
        give_up_s = started_s + min(self.cordon_cap_s, LIFT_RETRY_S)
        delay_s, tries = LIFT_FIRST_BACKOFF_S, 0
        while True:
            tries += 1
            try:
                self._lift_cordons(migration_id)
                return ""
            except ClusterAccessDenied as exc:
                return str(exc)
            except Exception as exc:
                if self.clock.now_s() + delay_s > give_up_s:
                    return f"{exc}; {tries} tries in {self.clock.now_s() - started_s:.1f} s"
            self.clock.sleep(delay_s)
            delay_s *= 2

    def roll_back(
        self, migration_id: str, old_pod: str, replicaset: str, replacement: str, cordoned_s: float | None = None
    ) -> list[str]:
        """Undo a migration: no replacement, the old pod back in its ReplicaSet, no cordons of ours.

        The cordons are lifted at the latest ``cordon_cap_s`` after the migration first cordoned
        (``cordoned_s``, clock time; unknown: after the rollback's own cordons) or
        :data:`ROLLBACK_GRACE_S` after the rollback began, whichever is later, plus the rollback's
        own API calls.

        Best effort: a failing step is reported and the others still run; what is left is marked
        on the objects and undone by the next ``clean_up_leftovers``. Once the old pod is being
        deleted the migration is committed: only the cordons are lifted, the replacement stays.
        """
        errors: list[str] = []
        try:
            pod = self.ops.get_pod(old_pod)
        except Exception as exc:
            # Unknown state: the old pod may already be on its way out, so deleting the replacement
            # could leave the replica with no pod. Keep both pods, lift our cordons, and leave the
            # marks: the next clean-up, which can read the old pod, finishes the rollback.
            errors.append(f"read {old_pod}: {exc}")
            _attempt(errors, "lift the cordons", self._lift_cordons, migration_id)
            return errors
        if pod is None or pod.terminating:  # the old pod's removal was committed: keep the replacement
            _attempt(errors, "lift the cordons", self._lift_cordons, migration_id)
            return errors
        now_s = self.clock.now_s()
        # The ReplicaSet gets a short time to settle under the cordons even when the cap is spent.
        grace_until_s = now_s + min(self.cordon_cap_s, ROLLBACK_GRACE_S)
        lift_by_s = max((now_s if cordoned_s is None else cordoned_s) + self.cordon_cap_s, grace_until_s)
        _attempt(errors, "cordon the remaining nodes", self._cordon_all, migration_id)
        if replacement:
            _attempt(errors, f"delete replacement {replacement}", self.ops.delete_pod, replacement)
        _attempt(errors, f"return {old_pod} to its ReplicaSet", self._readopt, old_pod)
        if replicaset:
            _attempt(errors, f"wait for ReplicaSet {replicaset}", self._wait_until_settled, replicaset, lift_by_s)
        _attempt(errors, "lift the cordons", self._lift_cordons, migration_id)
        return errors

    def _cordon_all(self, migration_id: str) -> None:
        self.ops.cordon([node.name for node in self.ops.list_nodes()], migration_id)

    def _readopt(self, old_pod: str) -> None:
        pod = self.ops.get_pod(old_pod)
        if pod is None or pod.terminating:
            return
        original_hash = pod.annotations.get(ANNOTATION_ORIGINAL_HASH) or pod.labels.get(POD_TEMPLATE_HASH, "")
        labels: dict[str, str | None] = {POD_TEMPLATE_HASH: original_hash, LABEL_MIGRATION: None}
        self.ops.patch_pod_metadata(old_pod, labels, dict.fromkeys(_BOOKKEEPING_ANNOTATIONS))

    def _wait_until_settled(self, replicaset: str, until_s: float) -> None:
        """Wait until the ReplicaSet owns exactly its replicas, none of them unscheduled, or ``until_s`` (clock time).

        Only a ReplicaSet that does not exist (``replicaset_replicas`` gives None: a 404) has nothing to
        settle. A read that fails is not "gone": the wait goes on (the cordons stay) until ``until_s``.
        """
        while self.clock.now_s() < until_s:
            try:
                wanted = self.ops.replicaset_replicas(replicaset)
                if wanted is None:  # the ReplicaSet itself is gone: nothing to settle
                    return
                owned = [p for p in self.ops.list_pods(self.ops.replicaset_selector(replicaset)) if not p.terminating]
                if len(owned) == wanted and all(p.node_name for p in owned):
                    return
            except Exception:  # unknown is not gone: keep waiting (and the cordons up) until until_s
                pass
            self.clock.sleep(self.poll_s)

    def find_leftovers(self, snapshot: ClusterSnapshot) -> list[str]:
        """What a half-done migration left on the cluster (pods marked as migrating, our cordons); reads only."""
        pods = [f"pod {p.name}" for p in snapshot.app_pods if _marked(p) and not p.terminating]  # committed
        cordons = [f"node {n.name} cordon" for n in snapshot.nodes if temporary_cordons(n)]
        return pods + cordons

    def clean_up_leftovers(self) -> list[str]:
        """Roll back every half-done migration found on the cluster; returns what was cleaned.

        Every leftover is tried; then a :class:`MigrationFailed` names the steps that failed, if any
        (the caller tries again later; what is done stays done).
        """
        cleaned: list[str] = []
        failed: list[str] = []
        snapshot = self.ops.snapshot()
        for pod in snapshot.app_pods:
            if _marked(pod):
                migration_id = pod.annotations.get(ANNOTATION_MIGRATION_ID) or pod.labels.get(LABEL_MIGRATION, "")
                replicaset = pod.annotations.get(ANNOTATION_REPLICASET, pod.owner_name)
                replacement = pod.annotations.get(ANNOTATION_REPLACEMENT, "")
                errors = self.roll_back(migration_id or "leftover", pod.name, replicaset, replacement)
                if errors:
                    failed.append(f"pod {pod.name}: {'; '.join(errors)}")
                else:
                    cleaned.append(f"pod {pod.name} (migration {migration_id})")
        cordoned = [node.name for node in self.ops.list_nodes() if temporary_cordons(node)]
        if cordoned and _attempt(failed, "lift the cordons", self.ops.lift_cordon, cordoned, None):
            cleaned += [f"node {name} cordon" for name in cordoned]
        if failed:
            raise MigrationFailed(f"clean-up incomplete ({'; '.join(failed)}); cleaned {cleaned or 'nothing'}")
        return cleaned


def _marked(pod: PodInfo) -> bool:
    """The pod carries a migration's marks (its intent annotation or the migrating label)."""
    return ANNOTATION_MIGRATION_TARGET in pod.annotations or LABEL_MIGRATION in pod.labels
