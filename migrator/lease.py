"""One live migrator per cluster: a ``coordination.k8s.io`` Lease held before anything is written.

The temporary cordon is one taint per node, and a cordon of reach found between cycles is cleaned up as
a leftover, so two live migrators on one cluster would lift each other's cordons in flight. A migrator
that writes (not ``dry_run``) therefore holds the Lease ``lease_namespace/lease_name`` (default
``kube-system/reach-migrator``: one per cluster, whatever namespace the application is in) and renews
it before every turn, before every migration and while it waits between turns. One that finds it held
by a live migrator stands by: it reads nothing and writes nothing, and takes the Lease over once the
holder stops renewing it. This is the scheme of Kubernetes' own controllers (client-go's leader
election), which this module follows:

- a holder's Lease counts as live until ``leaseDurationSeconds`` have passed *on this migrator's
  clock* since this migrator last saw the Lease change (its ``resourceVersion``), so the two clocks
  need not agree (the holder's ``renewTime`` is never compared with this migrator's clock);
- every write carries the ``resourceVersion`` that was read, so of two migrators taking one Lease at
  the same time the API server lets exactly one through (409 Conflict for the other);
- while it holds the Lease, the long-running migrator renews it from a thread of its own
  (:class:`LeaseRenewer`, every third of its duration), so a migration, however many API calls its
  rollback takes, never outlives the Lease while the process runs and reaches the API server;
- a migrator that stops cleanly releases the Lease (empty holder), so a standby takes over at once.

The identity is ``<hostname>/<pid>``: a migrator container restarted in place (same pod name, same PID)
takes its own Lease back at once; two processes on one machine differ. The cluster calls sit behind
:class:`LeaseStore` (implemented by :mod:`migrator.kube`), so this module is pure logic.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class LeaseConflict(Exception):
    """Someone else wrote the Lease between this migrator's read and its write (409), or created it first."""


@dataclass(frozen=True)
class LeaseRecord:
    """What the Lease says: ``holder`` is empty when released; ``version`` is its ``resourceVersion``."""

    holder: str
    duration_s: float
    version: str
    renewed_at_s: float | None = None  # renewTime, unix seconds on the holder's clock (shown, never compared)
    transitions: int = 0
    acquired: str = ""  # acquireTime as the API server wrote it, kept by a renewal


class LeaseStore(Protocol):
    """The Lease in the cluster (:class:`migrator.kube.KubeLeaseStore`)."""

    where: str  # "namespace/name", for messages

    def read(self) -> LeaseRecord | None:
        """The Lease, or None when it does not exist."""
        ...

    def create(self, holder: str, duration_s: float) -> LeaseRecord:
        """Create the Lease held by ``holder``; :class:`LeaseConflict` when it exists already."""
        ...

    def write(self, current: LeaseRecord, holder: str, duration_s: float) -> LeaseRecord:
        """Replace ``current`` (its version) with ``holder`` renewed now; :class:`LeaseConflict` on a newer version."""
        ...


@dataclass(frozen=True)
class LeaseStatus:
    """The answer of :meth:`LeaderLease.hold`: ``held`` by this migrator, or by ``holder`` for about ``wait_s`` more."""

    held: bool
    holder: str
    wait_s: float = 0.0  # held by another: seconds until this migrator may take it over, unless it is renewed
    took_over_from: str = ""  # held: the live-looking holder this migrator replaced (expired), if any


def default_identity() -> str:
    """``<hostname>/<pid>``: the pod's name and the container's PID in a cluster."""
    return f"{socket.gethostname()}/{os.getpid()}"


@dataclass
class LeaderLease:
    """This migrator's side of the Lease: :meth:`LeaderLease.hold` takes or renews it, :meth:`LeaderLease.release` gives it up."""

    store: LeaseStore
    identity: str
    duration_s: float
    monotonic_s: Callable[[], float] = time.monotonic
    _seen_version: str = ""
    _seen_at_s: float = 0.0
    _held: bool = False
    _renewed_at_s: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # the renewer's thread and the loop

    @property
    def held(self) -> bool:
        """Whether the last :meth:`LeaderLease.hold` took or renewed the Lease (and nothing released it since)."""
        return self._held

    def may_write(self) -> bool:
        """Whether this migrator may still write now: it holds the Lease and is within the time no standby may take
        it (a renewal got through less than most of a duration ago, :meth:`LeaderLease._safe_for_s`).

        Asked mid-migration, right before the commit point (:attr:`migrator.actuator.Actuator.may_commit`): the
        renewer thread may be failing to renew while the loop waits for a pod. No API call and no lock (a renewal
        that hangs on the API server must not hold the migration up); it reads what the last renewal left.
        """
        return self._held and self._safe_for_s() > 0

    def hold(self) -> LeaseStatus:
        """Take the Lease, or renew it when this migrator holds it; say who holds it otherwise.

        An API error (the server away, 403) propagates and leaves :attr:`LeaderLease.held` False: no write without a
        Lease just confirmed.
        """
        with self._lock:
            return self._hold()

    def renew_if_held(self) -> str:
        """Renew the Lease only if this migrator holds it (the renewer's turn: it never takes a Lease).

        Returns ``"renewed"``, ``"not-held"`` (never taken, released, or found taken by another), or ``"failed"``:
        the renewal did not get through (a timeout, a 5xx) but the Lease is still this migrator's, since no
        other migrator may take it before ``duration_s`` after the last renewal that did; past
        ``_safe_for_s`` (most of a duration without one) it is no longer counted as held.
        """
        with self._lock:
            if not self._held:
                return "not-held"
            try:
                return "renewed" if self._hold().held else "not-held"
            except Exception:
                self._held = self._safe_for_s() > 0
                return "failed" if self._held else "not-held"

    def _safe_for_s(self) -> float:
        """Seconds this migrator may still count on the Lease without a renewal: no standby takes it before
        ``duration_s`` after it saw the last renewal, which came after ours; a margin for clock rates."""
        margin_s = max(2.0, 0.1 * self.duration_s)
        return self._renewed_at_s + self.duration_s - margin_s - self.monotonic_s()

    def _hold(self) -> LeaseStatus:
        self._held = False
        record = self.store.read()
        now = self.monotonic_s()
        if record is None:
            try:
                self._took(self.store.create(self.identity, self.duration_s), now)
            except LeaseConflict:
                return LeaseStatus(False, "another migrator (it created the Lease just now)", self.duration_s)
            return LeaseStatus(True, self.identity)
        if record.version != self._seen_version:  # it changed: its holder is alive as of now, on our clock
            self._seen_version, self._seen_at_s = record.version, now
        previous = ""
        if record.holder and record.holder != self.identity:
            wait_s = self._seen_at_s + record.duration_s - now
            if wait_s > 0:
                return LeaseStatus(False, record.holder, round(wait_s, 3))
            previous = record.holder
        try:
            self._took(self.store.write(record, self.identity, self.duration_s), now)
        except LeaseConflict:  # another migrator wrote it first: it holds it now
            return LeaseStatus(False, "another migrator (it wrote the Lease just now)", self.duration_s)
        return LeaseStatus(True, self.identity, took_over_from=previous)

    def release(self) -> bool:
        """Give the Lease up (empty holder) when this migrator holds it, so a standby takes over at once.

        Best effort: False when it was not held or the write failed (the Lease then expires by itself)."""
        with self._lock:
            return self._release()

    def _release(self) -> bool:
        if not self._held:
            return False
        self._held = False
        try:
            record = self.store.read()
            if record is None or record.holder != self.identity:
                return False
            self.store.write(record, "", self.duration_s)
        except Exception:
            return False
        return True

    def _took(self, record: LeaseRecord, now: float) -> None:
        """Taken or renewed: ``now`` is when the read before the write began (the renewal is no older)."""
        self._seen_version, self._seen_at_s, self._held, self._renewed_at_s = record.version, now, True, now


RENEW_RETRY_S = 2.0  # a failed renewal is tried again this soon (client-go's retry period)


class LeaseRenewer:
    """Renews a held Lease every third of its duration from a daemon thread, whatever the control loop is doing
    (a migration, a rollback's API calls, the wait between turns); it never takes a Lease it does not hold.

    Used as a context manager around :meth:`migrator.controller.Controller.run`. A renewal that finds the Lease
    lost leaves :attr:`LeaderLease.held` False; the loop's next confirmation records the loss. A renewal that
    fails (the API server slow or away) is tried again after :data:`RENEW_RETRY_S`, not a whole period later.
    """

    def __init__(self, lease: LeaderLease, period_s: float | None = None) -> None:
        self.lease = lease
        self.period_s = lease.duration_s / 3 if period_s is None else period_s
        self.renewals = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reach-lease-renewer", daemon=True)

    def __enter__(self) -> LeaseRenewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        wait_s = self.period_s
        while not self._stop.wait(wait_s):
            result = self.lease.renew_if_held()
            self.renewals += result == "renewed"
            self.failures += result == "failed"
            wait_s = min(RENEW_RETRY_S, self.period_s) if result == "failed" else self.period_s
