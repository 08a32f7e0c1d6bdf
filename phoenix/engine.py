"""The engine: observe -> plan -> execute, until converged, failed or out of time.

It owns the deploy's life cycle: the lock, the release record, the loop, the rollback
when the target cannot be reached (health gate, boot failures, deadline, a permanent
provider error, Ctrl-C), and the history record. Nothing here decides *what* to change;
that is the planner's job. Nothing here calls a provider to change the cloud; that is the
executor's.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import NoReturn, TypeVar

from phoenix import log as plog
from phoenix import request_tally
from phoenix.blast import BlastRadius, radius_of
from phoenix.clock import SystemClock
from phoenix.errors import (
    DeployFailed,
    InputError,
    Interrupted,
    PhoenixError,
    ProviderError,
    RegionUnavailable,
    RestoreFailed,
    Transient,
)
from phoenix.executor import IMAGE, LB, Executor, RetryingStore
from phoenix.heal import Verdict, judge
from phoenix.hook_points import HookPoints
from phoenix.journal import Journal
from phoenix.lease import WATCH_PREFIX, DeployLock
from phoenix.ledger import Ledger
from phoenix.model import Health, NodeRequest, NodeState
from phoenix.observe import Observer
from phoenix.planner import (
    Observed,
    Target,
    boot_base,
    incoming_nodes,
    plan,
    progress_counts,
    serving_counts,
    serving_release,
)
from phoenix.providers.base import Clock, PoolEndpoint, PoolKeeper, Provider
from phoenix.quota import check_quota, new_node_needs
from phoenix.records import (
    NO_RELEASE,
    AttemptRecord,
    DeployRecord,
    Records,
    ReleaseRecord,
)
from phoenix.release import (
    LazyRelease,
    Release,
    image_in_region,
    release_from_record,
    resolve_release,
    spec_digest,
)
from phoenix.results import DeployResult, Event, EventSink, Progress
from phoenix.retrying import RetryingCaller, RetryPolicy
from phoenix.spec import HealthSpec, Spec
from phoenix.steps import Counts, CreateNode, Phase, Plan, Step
from phoenix.vocabulary import EventKind, Outcome, Wait

__all__ = ["DeployResult", "Engine", "Event", "EventSink", "serving_release"]

log = plog.get_logger("phoenix.engine")
T = TypeVar("T")
# Polls in a row whose calls failed beyond their retries before an attempt gives up.
MAX_FLAKY_POLLS = 3


class Engine:
    """Deploys one spec into one region of one provider."""

    def __init__(
        self,
        spec: Spec,
        provider: Provider,
        *,
        clock: Clock | None = None,
        region: str | None = None,
        on_event: EventSink | None = None,
        deploy_id: str | None = None,
        retry: RetryPolicy | None = None,
        poll_seconds: float | None = None,
        lock: DeployLock | None = None,
        health: HealthSpec | None = None,
    ) -> None:
        """``health``: judge nodes by this instead of the spec's (``plan`` and ``status``
        look once, so they judge on a single probe)."""
        self.spec = spec
        self.provider = provider
        self.clock: Clock = clock or SystemClock()
        self.region = region or spec.regions[0]
        if self.region not in spec.regions:
            raise InputError(
                f"region {self.region!r} is not one of the spec's regions: "
                + ", ".join(spec.regions)
            )
        self.on_event = on_event or (lambda event: None)
        self.deploy_id = deploy_id or plog.new_deploy_id()
        self.retry = retry or RetryPolicy()
        self.poll = poll_seconds if poll_seconds is not None else min(spec.health.interval, 2.0)
        self.pool = spec.load_balancer.pool
        # The store's back-offs sleep plainly (no guard, no lease renewal): the lease
        # itself goes through this store, and renewing it from inside its own retry
        # would recurse.
        self.store = RetryingStore(provider.store,
                                   RetryingCaller(provider, clock=self.clock, retry=self.retry))
        # Reads of the cloud: retried, their back-offs renewing the lease while it is held.
        self.reads = RetryingCaller(provider, clock=self.clock, retry=self.retry,
                                    sleep=self._sleep)
        self.ledger = Ledger(self.store, spec.app, self.region)
        self.records = Records(self.store, spec.app)
        self._lock: DeployLock | None = None
        # A lock the caller holds (a multi-region run): renewed here, never released.
        self._held_lock = lock
        self.journal = Journal(self.records, app=spec.app, region=self.region,
                               deploy_id=self.deploy_id, strategy=spec.rollout.strategy,
                               generation=self._generation)
        self.observer = Observer(
            provider, app=spec.app, region=self.region, pool=self.pool,
            health=health or spec.health, clock=self.clock, reads=self.reads,
            ledger=self.ledger)
        self.spec_digest = spec_digest(spec)
        self.steps_done = 0
        self.last_observed: Observed | None = None  # by verdict(), for watch's metrics
        self.history: list[str] = []
        self._requests_at_start = request_tally.snapshot_of(provider.requests)
        plog.register_secrets(spec.secret_values)
        self.hooks = HookPoints(spec, self.store, region=self.region, deploy_id=self.deploy_id,
                                keepalive=lambda: self._heartbeat(self.clock.now()))

    # --- observe -------------------------------------------------------------------

    def resolve(self, observed: Observed, now: datetime, known: list[ReleaseRecord]) -> Release:
        """The release the spec means in this region now (``resolve_release``)."""
        return resolve_release(self.spec, self.provider, region=self.region, now=now,
                               known=known, call=self.reads.call,
                               observed_releases={n.release for n in observed.nodes})

    def observe(self) -> Observed:
        """Read the region's nodes, pool members and health (``Observer``)."""
        return self.observer.observe()

    # --- the loop --------------------------------------------------------------------

    def converge(
        self,
        target: Target,
        release: Release | LazyRelease | None,
        deadline: datetime,
        *,
        patient: bool = False,
    ) -> Plan:
        """Loop until the target is reached (CONVERGED) or cannot be (FAILED).

        ``patient`` (a rollback putting the old release back): an API that fails, or a
        region that stops answering, is waited out until ``deadline`` instead of ending
        the attempt; giving up there would leave a half-switched pool for a person."""
        executor = self._executor(release)
        # The health gate's deadline belongs to this attempt, not to the nodes' age.
        target = dataclasses.replace(target, attempt_started=self.clock.now())
        last_wait: tuple[Wait, ...] = ()
        last_counts: Counts | None = None
        last_steps: tuple[Step, ...] = ()
        flaky_polls = 0
        first_look = True
        while True:
            now = self.clock.now()
            if now >= deadline:
                return Plan(Phase.FAILED, failure=_deadline_failure(last_wait, last_steps),
                            waits=last_wait)
            try:
                if first_look and isinstance(lb := self.provider.load_balancer, PoolKeeper):
                    # Reads never start a local balancer; a deploy is an actor, and its
                    # pool must be up to take members and report them online.
                    self._heartbeat(now)
                    executor.call(partial(lb.ensure_pool, self.region, self.pool), LB)
                observed = self.observe()
                self.hooks.look(target, observed)  # post_switch, once only the target serves
                if first_look:
                    # Boots an earlier run made do not count against this one's retries.
                    target = dataclasses.replace(target, boot_base=boot_base(target, observed))
                    first_look = False
                current = plan(target, observed, now)
                counts = progress_counts(target, observed)
                if counts != last_counts:
                    last_counts = counts
                    self.on_event(Event(EventKind.PROGRESS, counts.describe(), progress=Progress(
                        counts, target.attempt_started or now, now, deadline)))
                # After the reads and the plan, right before acting on them: a deploy
                # stalled in the middle of its reads (SIGSTOP) while another took over
                # must not act on what it saw (issue 13).
                self._heartbeat(self.clock.now())
                if current.phase in (Phase.CONVERGED, Phase.FAILED):
                    return current
                if current.steps:
                    if current.steps == last_steps:
                        # The same steps again: the cloud took them but did not change
                        # (yet). Back off instead of hammering its API until the deadline.
                        log.warning("no progress, backing off", steps=list(current.describe()))
                        self._sleep(self.poll)
                    last_steps = current.steps
                    lines = tuple(current.describe())
                    self.on_event(Event(EventKind.STEPS, f"{len(lines)} step(s)", lines))
                    executor.run(current.steps)
                    self.steps_done += len(current.steps)
                    self.history.extend(lines)
                    flaky_polls = 0
                    continue
            except (Transient, RegionUnavailable) as exc:
                # A call failed even after its retries. Like a controller's requeue, the
                # next poll re-reads the world and tries again (every step is
                # idempotent); only an API that keeps failing poll after poll is an
                # outage, and fails the attempt (a region-level failure).
                flaky_polls += 1
                if not patient and (isinstance(exc, RegionUnavailable)
                                    or flaky_polls > MAX_FLAKY_POLLS):
                    raise
                log.warning("the cloud's API failed beyond retries; trying again next poll",
                            error=str(exc), poll=flaky_polls)
                self._sleep(min(self.poll * 2 ** min(flaky_polls - 1, 6), 10.0))
                continue
            flaky_polls = 0
            last_steps = ()
            if current.waits != last_wait:
                last_wait = current.waits
                log.info("waiting", waiting_for=list(current.waiting_for))
                self.on_event(Event(EventKind.WAITING, "waiting for", current.waiting_for,
                                    waits=current.waits))
            pause = self.poll
            if current.wake_at is not None:
                pause = min(pause, max(0.01, (current.wake_at - now).total_seconds()))
            self._sleep(pause)

    def _heartbeat(self, now: datetime) -> None:
        """Once per poll, before its mutations: stop if the lease was lost (one GET),
        and renew it when due; a dead deploy's lease lapses within its ttl."""
        if self._lock is not None:
            self._lock.heartbeat(now)

    def _sleep(self, seconds: float) -> None:
        """Every wait of a lease holder renews the lease meanwhile (a back-off of ten
        seconds must not lose a five-second lease to a contender). A wait shorter than
        a quarter TTL just sleeps: the next poll's heartbeat comes soon enough."""
        if self._lock is not None and seconds > self._lock.ttl / 4:
            self._lock.wait(self.clock, seconds)
        else:
            self.clock.sleep(seconds)

    def _guard(self) -> None:
        """Before each attempt of a step: fence again if the poll's check went stale
        (a stall between the heartbeat and this step)."""
        if self._lock is not None:
            self._lock.guard(self.clock.now())

    # --- public actions --------------------------------------------------------------

    def deploy(self) -> DeployResult:
        """Deploy the spec's release; roll back and raise ``DeployFailed`` on failure."""
        return self._locked(self._deploy)

    def rollback(self, to_release: str | None = None) -> DeployResult:
        """Put the previous good release (or ``to_release``) back in service."""
        return self._locked(lambda: self._rollback(to_release))

    def deploy_release(self, release_id: str, action: str, *,
                       why: str | None = None) -> DeployResult:
        """Put a recorded release into this region with the full health gate (failover,
        failback): unlike a rollback, members already in the pool must prove healthy.
        ``why`` (watch's reason for acting) is recorded as the result's reason."""
        return self._locked(lambda: self._deploy_recorded(release_id, action, why))

    def repave(self) -> DeployResult:
        """Replace every node of the serving release with a fresh boot of the same
        release (the answer to a suspected compromise): rolling, within max_surge and
        max_unavailable, each replacement health-gated; a failure puts the old nodes
        back as they served."""
        return self._locked(self._repave)

    def verdict(self, *, probes: int = 1) -> Verdict:
        """Watch's look at the region: observe (``probes`` probe rounds, ``health.interval``
        apart; the health tracker's counts go on from one call to the next) and judge."""
        observed = self.observe()
        for _ in range(probes - 1):
            if all(h.status is Health.HEALTHY for h in observed.health.values()):
                break  # nothing in doubt: no need to probe again
            self.clock.sleep(self.spec.health.interval)
            observed = self.observe()
        self.last_observed = observed
        serving = serving_release(observed)
        if serving is None:
            return Verdict(None)
        target = self.target_for(serving, self.spec.count)
        return judge(self.spec, target, observed, self.clock.now())

    def heal(self, verdict: Verdict) -> DeployResult:
        """Act on watch's verdict: replace sick nodes of the serving release (at most
        ``heal.max_parallel`` at once) and repave the one ``verdict.repave`` names,
        health-gated like a deploy, under the app's lease (``LockHeld`` while a deploy
        holds it: watch then waits for its next round); a failure puts the old boots
        back."""
        return self._locked(lambda: self._heal(verdict))

    def retire(self) -> bool:
        """Take the app out of this region: drain, remove and delete every node.

        Used once traffic has moved to another region; True when nothing is left."""
        return self._locked(lambda: self._retire())

    # --- internals -------------------------------------------------------------------

    def _retire(self) -> bool:
        started = self.clock.now()
        calls_before = self._requests_at_start
        deadline = started + timedelta(seconds=self._restore_budget())
        final = self.converge(self.target_for(NO_RELEASE, 0, fast=True), None, deadline)
        if final.converged:
            self.journal.clear()  # nothing is left half-done in an empty region
            # Recorded, so that a later failed deploy here restores nothing rather than
            # what this region ran before the app moved away.
            result = self._result("retire", NO_RELEASE, None, Outcome.SUCCEEDED, started,
                                  calls_before)
            self._record(result, started)
        return final.converged

    def new_lock(self) -> DeployLock:
        """The app's deploy lock for this deploy id (a lease renewed while it loops)."""
        return DeployLock(self.store, self.spec.app, self.deploy_id,
                          ttl=self.spec.rollout.lease_ttl)

    def _locked(self, body: Callable[[], T]) -> T:
        # The action's requests count from here: taking the lease is part of its cost.
        self._requests_at_start = request_tally.snapshot_of(self.provider.requests)
        plog.bind_deploy(app=self.spec.app, deploy_id=self.deploy_id, region=self.region)
        if self._held_lock is not None:
            self._lock = self._held_lock
            self.ledger.hold()
            try:
                return body()
            finally:
                self._lock = None
                self.ledger.release()
        lock = self.new_lock()
        # A deploy waits for watch's heal to finish; watch never waits for anyone.
        patience = 0.0 if self.deploy_id.startswith(WATCH_PREFIX) else self.spec.rollout.deadline
        lock.acquire(self.clock, patience=patience)
        self._lock = lock
        self.ledger.hold()
        try:
            return body()
        finally:
            self._lock = None
            self.ledger.release()
            lock.release(self.clock.now())
            plog.unbind_deploy()

    def _deploy(self) -> DeployResult:
        started = self.clock.now()
        observed = self.observe()
        adopted = self.journal.adopt_interrupted(started)
        known = self.records.releases()
        try:
            release = self.resolve(observed, started, known)
            self._preflight_quota(release, observed)
        except (ProviderError, InputError) as exc:
            if adopted is None:
                raise  # nothing was changed: the region is as the last run left it
            # A run stopped half-way here: put back what served before it, not the mix.
            self._run_failed_before_start("deploy", adopted, exc, started)
        plog.bind_deploy(
            app=self.spec.app, deploy_id=self.deploy_id, region=self.region, release=release.id
        )
        target = self.target_for(release.id, self.spec.count)
        previous = self._previous(observed, release.id, adopted)
        self.records.save_release(release.record)
        log.info("deploy started", previous=previous[0] if previous else None)
        return self._run("deploy", release, target, previous, started)

    def _run_failed_before_start(
        self, action: str, adopted: AttemptRecord, error: PhoenixError, started: datetime
    ) -> NoReturn:
        """The spec's release could not even be resolved, after a run that stopped
        half-way: restore what served before that run, then fail (exit 1)."""
        failure = f"{type(error).__name__}: {error}"
        radius = radius_of(error)
        previous = self._adopted_previous(adopted)
        log.error("deploy failed before it started, restoring", reason=failure)
        self.on_event(Event(EventKind.FAILED, failure))
        calls_before = self._requests_at_start
        self.journal.start(action, adopted.release, previous, started)
        restored = self._restore(adopted.release, previous,
                                 patient=radius != BlastRadius.REGION)
        result = self._result(action, adopted.release, previous,
                              Outcome.ROLLED_BACK if restored else Outcome.FAILED, started,
                              calls_before,
                              reason=failure, radius=radius)
        self._finish_failed(result, previous, restored, started, interrupted=False)

    def _rollback(self, to_release: str | None) -> DeployResult:
        started = self.clock.now()
        observed = self.observe()
        self.journal.adopt_interrupted(started)
        serving = serving_release(observed)
        wanted = to_release or self.records.last_good_release(excluding=serving)
        if wanted is None:
            raise InputError(
                f"nothing to roll back to: no earlier successful release of {self.spec.app}"
                " in the history (phoenix history lists them)"
            )
        release = self._recorded_release(wanted)
        target = self.target_for(release.id, self.spec.count, fast=True)
        previous = (serving, self.spec.count) if serving and serving != wanted else None
        return self._run("rollback", release, target, previous, started)

    def _repave(self) -> DeployResult:
        started = self.clock.now()
        observed = self.observe()
        self.journal.adopt_interrupted(started)
        serving = serving_release(observed)
        if serving is None:
            raise InputError(
                f"nothing to repave: no release of {self.spec.app} serves in {self.region}"
                " (`phoenix deploy` first)"
            )
        release = self._recorded_release(serving)
        plog.bind_deploy(
            app=self.spec.app, deploy_id=self.deploy_id, region=self.region, release=serving
        )
        rolling = self.spec.rollout.model_copy(update={"strategy": "rolling"})
        base = self.target_for(serving, self.spec.count)
        current = incoming_nodes(base, observed)
        target = dataclasses.replace(
            base, rollout=rolling, restore=False,
            replace=frozenset(n.name for n in current if n.state is NodeState.ACTIVE),
        )
        log.info("repave started", nodes=sorted(target.replace))
        return self._run("repave", release, target, (serving, self.spec.count), started)

    def _heal(self, verdict: Verdict) -> DeployResult:
        started = self.clock.now()
        observed = self.observe()
        serving = serving_release(observed)
        if serving is None or serving != verdict.release:
            raise InputError(f"{self.spec.app}: the serving release changed; judged again"
                             " next round")
        release = self._recorded_release(serving)
        plog.bind_deploy(
            app=self.spec.app, deploy_id=self.deploy_id, region=self.region, release=serving
        )
        target = dataclasses.replace(
            self.target_for(serving, self.spec.count),
            heal_parallel=self.spec.heal.max_parallel, replace=verdict.repave,
        )
        action = "heal" if verdict.sick or verdict.in_flight else "repave-age"
        # Judged again under the lease: another watcher may have healed it meanwhile,
        # and a stale verdict must not act, or be recorded as if it had.
        fresh = judge(self.spec, target, observed, started)
        if fresh.idle or fresh.circuit_open:
            return self._result(action, serving, (serving, self.spec.count), Outcome.UNCHANGED,
                                started, self._requests_at_start)
        log.info(f"{action} started", reason=verdict.describe())
        return self._run(action, release, target, (serving, self.spec.count), started,
                         why=verdict.describe())

    def _deploy_recorded(self, release_id: str, action: str,
                         why: str | None = None) -> DeployResult:
        started = self.clock.now()
        observed = self.observe()
        adopted = self.journal.adopt_interrupted(started)
        release = self._recorded_release(release_id)
        plog.bind_deploy(
            app=self.spec.app, deploy_id=self.deploy_id, region=self.region, release=release.id
        )
        target = self.target_for(release.id, self.spec.count, fast=True, restore=False)
        previous = self._previous(observed, release.id, adopted)
        self._preflight_quota(release, observed)
        log.info(f"{action} started", previous=previous[0] if previous else None, why=why)
        return self._run(action, release, target, previous, started, why=why)

    def _run(
        self,
        action: str,
        release: Release,
        target: Target,
        previous: tuple[str, int] | None,
        started: datetime,
        *,
        why: str | None = None,
    ) -> DeployResult:
        """Converge on ``target``; record the result (``why``: what made an automatic
        action run, its reason on success) or restore ``previous``."""
        calls_before = self._requests_at_start
        deadline = started + timedelta(seconds=self.spec.rollout.deadline)
        failure: str | None = None
        radius: BlastRadius | None = None
        waits: tuple[Wait, ...] = ()
        interrupted = False
        self.journal.start(action, release.id, previous, started)
        self.hooks.begin(action, release.id, previous, self.journal.adopted)
        try:
            final = self.converge(target, release, deadline)
            if final.converged:
                self.hooks.finish()  # post_deploy; an abort hook failing there rolls back
                result = self._result(action, release.id, previous, Outcome.SUCCEEDED, started,
                                      calls_before, reason=why)
                self._record(result, started)
                self.journal.clear()
                self.on_event(Event(EventKind.CONVERGED, f"{release.id} serves in {self.region}"))
                log.info("converged", steps=self.steps_done)
                return result
            failure = final.failure or "unknown failure"
            radius = final.radius
            waits = final.waits
        except KeyboardInterrupt:
            interrupted = True
            failure = "interrupted by the user"
        except ProviderError as exc:
            failure = f"{type(exc).__name__}: {exc}"
            radius = radius_of(exc)
        except InputError as exc:
            failure = str(exc)
            radius = radius_of(exc)
        log.error("deploy failed, rolling back", reason=failure)
        self.on_event(Event(EventKind.FAILED, failure))
        restored = self._restore(release.id, previous,
                                 patient=radius != BlastRadius.REGION)
        outcome = (Outcome.INTERRUPTED if interrupted
                   else Outcome.ROLLED_BACK if restored else Outcome.FAILED)
        result = self._result(action, release.id, previous, outcome, started, calls_before,
                              reason=failure, radius=radius, waits=waits)
        self._finish_failed(result, previous, restored, started, interrupted=interrupted)

    def _finish_failed(
        self,
        result: DeployResult,
        previous: tuple[str, int] | None,
        restored: bool,
        started: datetime,
        *,
        interrupted: bool,
    ) -> NoReturn:
        """Record a failed run and raise what it ended with."""
        self._record(result, started)
        failure = result.reason or "unknown failure"
        if not restored:
            # Kept, so the next run restores the release that served before this one.
            try:
                self.journal.start(result.action, result.release, previous, started,
                                   state="restore-failed")
            except PhoenixError as exc:  # the "running" record stays: as good a hint
                log.warning("could not update the attempt record", error=str(exc))
            raise RestoreFailed(
                result=result,
                message=f"{failure}; then the rollback could not restore"
                f" {previous[0] if previous else 'a clean state'}: run `phoenix status` and"
                " `phoenix deploy` again, or restore by hand"
            )
        self.journal.clear()
        if interrupted:
            raise Interrupted(f"interrupted; {self._restored_text(previous)}", result=result)
        raise DeployFailed(f"{failure}; rolled back: {self._restored_text(previous)}",
                           result=result)

    def _restore(
        self, failed: str, previous: tuple[str, int] | None, *, patient: bool = True
    ) -> bool:
        """Bring the previous release back to full service and remove the failed one.

        Patient (outages and API failures are waited out within the restore budget)
        unless the failure was the region's own: then the caller moves on to another
        region, and a restore that waits here would only delay that."""
        self.on_event(Event(EventKind.ROLLBACK,
                            f"restoring {previous[0] if previous else 'nothing'}"))
        self.hooks.restoring()  # from here a failing hook only warns
        deadline = self.clock.now() + timedelta(seconds=self._restore_budget())
        release: LazyRelease | None = None
        try:
            if previous is None:
                target = self.target_for(NO_RELEASE, 0, fast=True)
            else:
                name, count = previous
                target = self.target_for(name, count, fast=True)
                record = self.records.release(name)
                if record is not None:
                    # Looked up only if a node must be built: the old release usually
                    # still serves, and an image service that is down must not stop
                    # the traffic from going back to it.
                    release = LazyRelease(lambda: self._recorded_release(record))
            final = self.converge(target, release, deadline, patient=patient)
            if not final.converged:
                log.error("rollback failed", reason=final.failure)
            else:
                self.hooks.finish()  # on_rollback: the old release serves again
            return final.converged
        except (ProviderError, InputError) as exc:
            log.error("rollback failed", reason=str(exc))
            return False

    def _recorded_release(self, which: str | ReleaseRecord) -> Release:
        """A recorded release (by id, or its record), to be built in this region: its
        golden image is looked up here, since image ids differ between regions."""
        record = which if isinstance(which, ReleaseRecord) else self.records.release(which)
        if record is None:
            raise InputError(
                f"release {which} has no record in the store; `phoenix history` lists the"
                " releases that can be deployed again"
            )
        image_id = self.reads.call(
            lambda: image_in_region(record, self.provider, region=self.region), IMAGE)
        release = release_from_record(record, self.spec)
        return dataclasses.replace(release, image_id=image_id)

    def _restore_budget(self) -> float:
        """Seconds a rollback may take. At least the deploy's own deadline, and never less
        than one drain plus one health gate: a deploy that failed *because* its deadline
        was short must still be able to drain its new members and bring the old release
        back, or a short deadline would leave a half-switched pool."""
        rollout = self.spec.rollout
        return max(rollout.deadline, rollout.drain_timeout + self.spec.health.deadline + 60.0)

    def _restored_text(self, previous: tuple[str, int] | None) -> str:
        if previous is None:
            return "nothing was serving before; the new nodes were removed"
        return f"{previous[0]} serves with {previous[1]} node(s)"

    def target_for(
        self, release: str, count: int, *, fast: bool = False, restore: bool | None = None
    ) -> Target:
        """``fast``: blue-green, no canary bake; ``restore`` (default: ``fast``): members
        that serve count as they are (putting a release back as it was)."""
        rollout = self.spec.rollout
        if fast:
            # Restoring service: never below count, no canary bake.
            rollout = rollout.model_copy(update={"strategy": "blue-green"})
        keep = (
            self.records.recent_good_releases(excluding=release, limit=rollout.keep_previous)
            if rollout.keep_previous and count > 0
            else []  # an app leaving the region (count 0) leaves nothing standing by
        )
        return Target(
            app=self.spec.app,
            region=self.region,
            release=release,
            count=count,
            rollout=rollout,
            health=self.spec.health,
            member_port=self.spec.load_balancer.member_port,
            keep_releases=tuple(keep),
            restore=fast if restore is None else restore,
            deploy_id=self.deploy_id,
        )

    def _adopted_previous(self, adopted: AttemptRecord) -> tuple[str, int] | None:
        """What served before a run that stopped half-way, at full size."""
        if adopted.previous_release is None:
            return None
        return adopted.previous_release, max(adopted.previous_count, self.spec.count)

    def _previous(
        self, observed: Observed, target: str, adopted: AttemptRecord | None = None
    ) -> tuple[str, int] | None:
        """What a failed deploy restores: the release that served before this deploy (or
        before the half-done run it resumes), brought back to at least ``count`` nodes
        (a crash may have left it smaller)."""
        if adopted is not None and adopted.previous_release not in (None, target):
            return self._adopted_previous(adopted)
        if adopted is not None and adopted.previous_release is None:
            return None  # nothing served before the half-done first deploy
        serving = serving_counts(observed)
        others = [(r, c) for r, c in serving.most_common() if r != target]
        if others:
            release, serving_now = others[0]
            return release, max(serving_now, self.spec.count)
        if serving.get(target):
            return target, max(serving[target], self.spec.count)
        # Nothing serves here: restore what this region last ran (not what another
        # region ran: a failed failover must leave a fresh region empty).
        last = self.records.last_good_release(excluding=target, region=self.region)
        return (last, self.spec.count) if last else None

    def _preflight_quota(self, release: Release, observed: Observed) -> None:
        """Fail before creating anything when the region's quota cannot fit the peak."""
        needs = new_node_needs(self.spec.count, release, observed)
        if needs is not None:
            quota = self.reads.call(lambda: self.provider.compute.quota(self.region))
            check_quota(needs, quota, release, self.region)

    def _executor(self, release: Release | LazyRelease | None) -> Executor:
        def build(step: CreateNode) -> NodeRequest:
            if release is None:
                raise InputError(
                    f"cannot build {step.name}: no record of how its release was built"
                )
            resolved = release.get() if isinstance(release, LazyRelease) else release
            return resolved.node_request(
                step, region=self.region, spec_digest=self.spec_digest,
                deploy_id=self.deploy_id, lease=self._generation(),
            )

        return Executor(
            self.provider,
            region=self.region,
            pool=self.pool,
            clock=self.clock,
            build_request=build,
            retry=self.retry,
            workers=self.spec.rollout.max_parallel_calls,
            guard=self._guard,
            sleep=self._sleep,
            ledger=self.ledger,
            hooks=self.hooks,
        )

    def _result(
        self,
        action: str,
        release: str,
        previous: tuple[str, int] | None,
        outcome: Outcome,
        started: datetime,
        calls_before: dict[str, int] | None,
        *,
        reason: str | None = None,
        radius: BlastRadius | None = None,
        waits: tuple[Wait, ...] = (),
    ) -> DeployResult:
        calls_after = request_tally.snapshot_of(self.provider.requests)
        requests = (request_tally.since(calls_before, calls_after)
                    if calls_after is not None and calls_before is not None else None)
        nodes: tuple[str, ...] = ()
        with contextlib.suppress(PhoenixError):
            listed = self.reads.call(
                lambda: self.provider.compute.list_nodes(self.region, self.spec.app))
            nodes = tuple(sorted(n.name for n in listed
                                 if n.release == release and n.state is not NodeState.DELETING))
        return DeployResult(
            app=self.spec.app,
            action=action,
            deploy_id=self.deploy_id,
            region=self.region,
            release=release,
            previous_release=previous[0] if previous else None,
            outcome=(Outcome.UNCHANGED if outcome is Outcome.SUCCEEDED and self.steps_done == 0
                     else outcome),
            steps=self.steps_done,
            seconds=round((self.clock.now() - started).total_seconds(), 3),
            nodes=nodes,
            reason=reason,
            radius=radius,
            waits=waits,
            hooks=tuple(self.hooks.runs),
            provider_calls=sum(requests.values()) if requests is not None else None,
            provider_requests=requests,
            history=tuple(self.history),
            endpoint=(
                lb.url(self.region, self.pool)
                if isinstance(lb := self.provider.load_balancer, PoolEndpoint)
                else None
            ),
        )

    def _record(self, result: DeployResult, started: datetime) -> None:
        self.journal.save(DeployRecord.of(
            result, strategy=self.spec.rollout.strategy, started=started,
            finished=self.clock.now(), lease=self._generation()))

    def _generation(self) -> int | None:
        """The lease generation this run acts under (tagged on what it writes)."""
        return self._lock.generation if self._lock is not None else None


def _deadline_failure(waiting: tuple[Wait, ...], steps: tuple[Step, ...]) -> str:
    """Why the deploy ran out of time, naming what it was still waiting for."""
    text = "the deploy's deadline (rollout.deadline) passed"
    if waiting:
        return f"{text} while waiting for " + "; ".join(wait.text for wait in waiting)
    if steps:
        return f"{text} while the cloud did not take: " + "; ".join(
            step.describe() for step in steps)
    return text
