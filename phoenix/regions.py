"""Regions in priority order: deploy where the app serves, fail over when a region can't.

The spec lists regions in priority order and names a DNS record (``dns:``). The app
serves from one region at a time: the one its DNS record points at. This module moves it:

* ``deploy`` goes to the serving region (the primary when nothing serves yet). When that
  region fails with a region-level failure (``phoenix.blast``), what was half-built there
  is torn down by the engine's rollback, and the next region in priority order is tried.
  A node- or provider-level failure stops at once: another region would not help.
* ``failover --to REGION`` and ``failback`` (to the primary) put the serving release into
  the chosen region.

Every move is health-gated: the DNS record is switched only after the engine converged
in the new region (every node passed its health check and serves in the pool) and the
region's load balancer itself answers the health check. After the switch Phoenix waits
one TTL (resolvers hold the old answer that long) and retires the region that was left,
when it can be reached; one that cannot (an outage) is cleaned up by the next move that
reaches it. Each region tried, and why it was left, is in the result's ``attempts``.

The whole run holds the app's deploy lock once, so a second deploy cannot start in
another region halfway through a failover.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
from collections.abc import Callable, Iterator
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from phoenix import log as plog
from phoenix.blast import BlastRadius, RegionAttempt, radius_of
from phoenix.engine import DeployResult, Engine, Event, EventSink
from phoenix.errors import (
    DeployFailed,
    InputError,
    OutcomeError,
    PhoenixError,
    ProviderError,
    RestoreFailed,
)
from phoenix.executor import DNS, LB
from phoenix.lease import WATCH_PREFIX, DeployLock
from phoenix.model import Health, MemberState
from phoenix.providers.base import Clock, Dns, PoolEndpoint, Provider
from phoenix.records import NO_RELEASE, DeployRecord, Records, ServingRecord
from phoenix.retrying import RetryingCaller, RetryPolicy
from phoenix.spec import DnsSpec, Spec
from phoenix.vocabulary import EventKind, Outcome

log = plog.get_logger("phoenix.regions")


class _NotReady(PhoenixError):
    """The release converged in a region that still may not take traffic (the gate)."""


def dns_managed(spec: Spec, provider: Provider) -> bool:
    """Whether Phoenix points a DNS record at the serving region (``dns:`` in the spec
    and a provider with a DNS service): only then can the app move between regions."""
    return spec.dns is not None and provider.dns is not None


class RegionMover:
    """Deploy, failover and failback of one app across the spec's regions."""

    def __init__(
        self,
        spec: Spec,
        provider: Provider,
        *,
        clock: Clock,
        on_event: EventSink | None = None,
        deploy_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.spec = spec
        self.retry = retry
        self.provider = provider
        self.clock = clock
        self.on_event = on_event or (lambda event: None)
        # watch passes its own id: its moves show as watch's in history and the lease
        self.deploy_id = deploy_id or plog.new_deploy_id()
        self._home = self._engine(spec.regions[0])
        self.store = self._home.store  # retried like every provider call
        self.call = RetryingCaller(provider, clock=clock, retry=retry).call
        self.records = Records(self.store, spec.app)

    # --- where the app serves ---------------------------------------------------------

    def serving_region(self) -> str | None:
        """The region the DNS record points at; None when it points nowhere we know."""
        dns, where = self._dns()
        record = self.call(lambda: dns.get_record(where.zone, where.record), DNS)
        if record is None:
            return None
        saved = self.records.serving()
        if saved is not None and tuple(saved.values) == tuple(record.values):
            return saved.region
        for region in self.spec.regions:
            with contextlib.suppress(PhoenixError):
                if self._address(region) in record.values:
                    return region
        return None

    # --- the three moves ----------------------------------------------------------------

    def deploy(self) -> DeployResult:
        """Deploy the spec's release where the app serves, failing over on region loss."""
        with self._lock() as lock:
            serving = self.serving_region()
            order = self._order(first=serving)
            return self._try_regions(
                "deploy", order, serving, lambda engine: engine.deploy(), lock
            )

    def failover(self, to: str, *, action: str = "failover",
                 why: str | None = None) -> DeployResult:
        """Put the serving release into ``to`` (health-gated), then point DNS at it.
        ``why``: what made watch move the app, recorded as the reason."""
        if to not in self.spec.regions:
            raise InputError(
                f"--to {to}: not one of the spec's regions ({', '.join(self.spec.regions)})"
            )
        with self._lock() as lock:
            serving = self.serving_region()
            release = self._serving_release(serving)
            return self._try_regions(
                action, [to], serving,
                lambda engine: engine.deploy_release(release, action, why=why), lock,
            )

    def failback(self, *, why: str | None = None) -> DeployResult:
        """Move the app back to the primary region (the spec's first)."""
        return self.failover(self.spec.regions[0], action="failback", why=why)

    # --- internals ----------------------------------------------------------------------

    def _try_regions(
        self,
        action: str,
        order: list[str],
        serving: str | None,
        run: Callable[[Engine], DeployResult],
        lock: DeployLock,
    ) -> DeployResult:
        attempts: list[RegionAttempt] = []
        last: DeployResult | None = None
        for number, region in enumerate(order):
            engine = self._engine(region, lock)
            try:
                self._address(region)  # DNS must be able to point here: check before building
                result = run(engine)
            except OutcomeError as failed:
                outcome = failed.result if isinstance(failed.result, DeployResult) else None
                radius = outcome.radius if outcome is not None else None
                attempts.append(RegionAttempt(
                    region, "failed", outcome.release if outcome else None,
                    outcome.reason if outcome else str(failed), radius,
                    cleaned_up=not isinstance(failed, RestoreFailed),
                ))
                last = outcome or last
                if radius != BlastRadius.REGION or number == len(order) - 1:
                    self._tidy_after_failure(serving, attempts, lock)
                    raise self._with_attempts(failed, attempts, last) from None
                self._moving_on(region, attempts[-1], order[number + 1])
                continue
            except ProviderError as exc:  # before anything was built (observe, quota)
                radius = radius_of(exc)
                # A region that refused at once may still hold what a killed run left.
                attempts.append(RegionAttempt(region, "failed", None, str(exc), radius,
                                              cleaned_up=self._no_unfinished_run(region)))
                self._record_failure(action, region, exc)
                if radius != BlastRadius.REGION or number == len(order) - 1:
                    self._tidy_after_failure(serving, attempts, lock)
                    raise self._all_failed(action, attempts, last, exc) from exc
                self._moving_on(region, attempts[-1], order[number + 1])
                continue
            try:
                return self._switched(action, region, serving, result, attempts, engine, lock)
            except _NotReady as gate:
                # Built, but not fit for traffic: a region-level failure like any other.
                # What was built goes (unless the region already served: DNS stays).
                cleaned = region == serving or self._retire(region, lock=lock)
                attempts.append(RegionAttempt(region, "failed", result.release, str(gate),
                                              BlastRadius.REGION, cleaned_up=cleaned))
                last = dataclasses.replace(result, outcome=Outcome.ROLLED_BACK, reason=str(gate),
                                           radius=BlastRadius.REGION)
                if number == len(order) - 1:
                    self._tidy_after_failure(serving, attempts, lock)
                    raise self._with_attempts(
                        DeployFailed(f"{gate}; DNS was not switched", result=last),
                        attempts, last,
                    ) from None
                self._moving_on(region, attempts[-1], order[number + 1])
        raise InputError(f"{action}: no region to try")  # an empty order; cannot happen

    def _switched(
        self,
        action: str,
        region: str,
        serving: str | None,
        result: DeployResult,
        attempts: list[RegionAttempt],
        engine: Engine,
        lock: DeployLock,
    ) -> DeployResult:
        """The release converged in ``region``: gate, point DNS at it, retire the old."""
        moved = serving is not None and serving != region
        lock.heartbeat(self.clock.now())  # only the holder may move traffic
        try:
            changed = self._point_dns(region, result.release, engine, lock)
        except ProviderError as exc:
            # DNS is one global service: another region would not help. The release
            # serves in the region, the record points where it did; a rerun finishes.
            attempts.append(RegionAttempt(region, "failed", result.release, str(exc),
                                          BlastRadius.PROVIDER))
            failed = dataclasses.replace(result, outcome=Outcome.FAILED, reason=str(exc),
                                         radius=BlastRadius.PROVIDER,
                                         attempts=tuple(attempts))
            raise DeployFailed(
                f"{result.release} serves in {region}, but the DNS record could not be"
                f" pointed at it ({type(exc).__name__}: {exc}); it still points where it"
                " did: run the same command again",
                result=failed,
            ) from exc
        outcome = result.outcome
        if changed and outcome is Outcome.UNCHANGED:
            outcome = Outcome.SUCCEEDED  # nothing to build, but traffic moved
        attempts.append(RegionAttempt(region, outcome, result.release))
        left = [serving] if moved and serving is not None else []
        left += [r for r in self.spec.regions
                 if r not in (region, serving) and self._holds_nodes(r)]
        notes: list[str] = []
        if left:
            _, where = self._dns()
            self.on_event(Event(EventKind.WAITING, "waiting for", (
                f"resolvers to drop the old answer ({where.ttl}s TTL) before retiring"
                f" {', '.join(left)}",)))
            lock.wait(self.clock, where.ttl)  # renewed meanwhile: the TTL may be a day
        for other in left:
            notes.append(self._retire_noted(other, lock=lock))
        dns_text = self.dns_text()
        self.on_event(Event(EventKind.CONVERGED, f"{result.release} serves from {region}"
                            + (f"; DNS now points at {region}" if changed else "")))
        return dataclasses.replace(
            result,
            action=action,
            outcome=outcome,
            attempts=tuple(attempts),
            dns=dns_text,
            history=result.history + tuple(notes),
        )

    def _point_dns(self, region: str, release: str, engine: Engine, lock: DeployLock) -> bool:
        """Point the record at the region's load balancer; True when it pointed elsewhere.

        A move is gated first. The record is written even when it already points here:
        every DNS service's ``set_record`` is idempotent, and writing it again finishes a
        switch that a crash interrupted (the local front end's members, say)."""
        dns, where = self._dns()
        address = self._address(region)
        current = self.call(lambda: dns.get_record(where.zone, where.record), DNS)
        moves = current is None or current.values != (address,) or current.ttl != where.ttl
        if moves:
            self._gate(region, engine)
            log.info("switching dns", record=f"{where.record}.{where.zone}", to=region,
                     address=address)
        # The gate probes for a while: a stall in it must not let a fenced actor move
        # traffic (the check is free when the last one is fresh).
        lock.guard(self.clock.now())
        self.call(lambda: dns.set_record(where.zone, where.record, (address,), where.ttl), DNS)
        self._save_serving(region, release, address)
        if moves:
            self.on_event(Event(EventKind.STEPS, "dns", (f"point {where.record}.{where.zone} at"
                                                 f" {region} ({address})",)))
        return moves

    def _gate(self, region: str, engine: Engine) -> None:
        """DNS never points at a region whose release is not healthy: check once more,
        from outside the pool (the region's load balancer must answer the check too)."""
        observed = engine.observe()
        serving = {m.name for m in observed.members if m.state is MemberState.SERVING}
        unhealthy = [
            name for name, health in observed.health.items()
            if name in serving and health.status is Health.UNHEALTHY
        ]
        if not serving or unhealthy:
            why = "no member serves" if not serving else "unhealthy: " + ", ".join(unhealthy)
            raise _NotReady(f"{region} is not healthy enough to take traffic ({why})")
        check = self.spec.health
        lb = self.provider.load_balancer
        if (
            check.mode != "active" or check.http is None
            or self.provider.health_source is not None or not isinstance(lb, PoolEndpoint)
        ):
            return
        url = lb.url(region, self.spec.load_balancer.pool).rstrip("/") + check.http.path
        passes, last = 0, ""
        for _ in range(max(3, check.healthy_threshold * 3)):
            try:
                response = httpx.get(url, timeout=max(check.timeout, 1.0))
                last = f"HTTP {response.status_code}"
                passes = passes + 1 if response.status_code == check.http.expect else 0
            except httpx.HTTPError as exc:
                passes, last = 0, f"{type(exc).__name__}: {exc}"
            if passes >= check.healthy_threshold:
                return
            # The nodes were just judged healthy; this only proves the balancer answers,
            # so probes come quickly: every tenth of a second counts during an outage.
            self.clock.sleep(min(check.interval, 0.1 if passes else 0.5))
        raise _NotReady(
            f"{region}'s load balancer does not pass the health check at {url} ({last})"
        )

    def _retire(self, region: str, *, lock: DeployLock) -> bool:
        """Take the app out of a region traffic does not reach; True when it is empty."""
        try:
            return self._engine(region, lock).retire()
        except PhoenixError as exc:
            log.warning("could not retire the region", region=region, error=str(exc))
            return False

    def _retire_noted(self, region: str, *, lock: DeployLock) -> str:
        if self._retire(region, lock=lock):
            return f"retired {region}: its nodes are deleted"
        return (f"left {region} as it is (it could not be emptied, e.g. unreachable); the"
                " next failback or deploy that reaches it cleans it up")

    def _no_unfinished_run(self, region: str) -> bool:
        try:
            return self.records.attempt(region) is None
        except PhoenixError:
            return False

    def _tidy_after_failure(
        self, serving: str | None, attempts: list[RegionAttempt], lock: DeployLock
    ) -> None:
        """Before a failed run returns: a region traffic does not reach keeps nothing
        (what a killed run built there before it failed over, say), as after a success.
        One that cannot be emptied is listed as not cleaned up (exit 3)."""
        if serving is None and self._dns_record_exists():
            return  # DNS points somewhere we cannot map to a region: touch nothing
        tried = {a.region for a in attempts}
        for region in self.spec.regions:
            if region == serving or (region in tried and self._no_unfinished_run(region)):
                continue
            if not self._holds_nodes(region) and self._no_unfinished_run(region):
                continue
            if self._retire(region, lock=lock):
                continue
            known = [a for a in attempts if a.region == region]
            if known:
                attempts[attempts.index(known[-1])] = dataclasses.replace(
                    known[-1], cleaned_up=False)
            else:
                attempts.append(RegionAttempt(
                    region, "failed", None, "left half-done by an earlier run; it could not"
                    " be emptied now", BlastRadius.REGION, cleaned_up=False))

    def _dns_record_exists(self) -> bool:
        dns, where = self._dns()
        try:
            return self.call(lambda: dns.get_record(where.zone, where.record), DNS) is not None
        except PhoenixError:
            return True  # cannot tell: assume it does, and touch nothing

    def _holds_nodes(self, region: str) -> bool:
        try:
            return bool(self.call(
                lambda: self.provider.compute.list_nodes(region, self.spec.app)))
        except PhoenixError:
            return False  # unreachable: nothing to do about it now

    def _record_failure(self, action: str, region: str, exc: ProviderError) -> None:
        """A region refused before the engine built anything: history still shows it."""
        now = _iso(self.clock)
        with contextlib.suppress(PhoenixError):
            self.records.save_deploy(DeployRecord(
                deploy_id=self.deploy_id, app=self.spec.app, action=action, release=NO_RELEASE,
                region=region, strategy=self.spec.rollout.strategy, started_at=now,
                finished_at=now, outcome=Outcome.FAILED, reason=f"{type(exc).__name__}: {exc}",
            ))

    def _moving_on(self, region: str, attempt: RegionAttempt, following: str) -> None:
        log.error("region failed, failing over", region=region, reason=attempt.reason,
                  next_region=following)
        self.on_event(Event(EventKind.FAILED, f"{region}: {attempt.reason}; failing over to"
                            f" {following}"))

    def _with_attempts(
        self, failed: OutcomeError, attempts: list[RegionAttempt], result: DeployResult | None
    ) -> OutcomeError:
        if result is None:
            return failed
        result = dataclasses.replace(result, attempts=tuple(attempts), dns=self.dns_text())
        message = str(failed)
        if len(attempts) > 1:
            message = "every region failed:\n" + "\n".join(a.describe() for a in attempts)
        # A region left half-done anywhere needs a person (exit 3), even when the last
        # region tried failed cleanly.
        error_type = RestoreFailed if any(not a.cleaned_up for a in attempts) else type(failed)
        return error_type(message, result=result)

    def _all_failed(
        self, action: str, attempts: list[RegionAttempt], last: DeployResult | None,
        exc: ProviderError,
    ) -> PhoenixError:
        if len(attempts) == 1 and radius_of(exc) != BlastRadius.REGION:
            return exc  # an input or credential problem: its own exit code
        summary = "\n".join(a.describe() for a in attempts)
        result = DeployResult(
            app=self.spec.app, action=action, deploy_id=self.deploy_id,
            region=attempts[-1].region, release=last.release if last else NO_RELEASE,
            previous_release=last.previous_release if last else None,
            outcome=Outcome.FAILED, steps=last.steps if last else 0, seconds=0.0, nodes=(),
            reason=str(exc), radius=radius_of(exc), attempts=tuple(attempts),
            dns=self.dns_text(), hooks=last.hooks if last else (),
        )
        prefix = "every region failed" if len(attempts) > 1 else f"{attempts[0].region} failed"
        error_type = (
            RestoreFailed if any(not a.cleaned_up for a in attempts) else DeployFailed
        )
        return error_type(f"{prefix}:\n{summary}", result=result)

    def _order(self, *, first: str | None) -> list[str]:
        regions = list(self.spec.regions)
        return [first, *(r for r in regions if r != first)] if first else regions

    def _serving_release(self, serving: str | None) -> str:
        saved = self.records.serving()
        if saved is not None and saved.region == serving:
            return saved.release
        release = self.records.last_good_release()
        if release is None:
            raise InputError(
                f"nothing to fail over: {self.spec.app} has no successful deploy yet;"
                " run `phoenix deploy` first"
            )
        return release

    def _address(self, region: str) -> str:
        lb = self.provider.load_balancer
        if not isinstance(lb, PoolEndpoint):
            raise InputError(
                f"the {self.provider.name} provider's load balancer cannot tell its address,"
                " so DNS cannot be pointed at a region"
            )
        url = self.call(lambda: lb.url(region, self.spec.load_balancer.pool), LB)
        host = (urlsplit(url).hostname or "").lower()
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        # A load balancer known by name (AWS ELB): a CNAME, where the DNS service can.
        if host and getattr(self.provider.dns, "accepts_hostnames", False):
            return host
        raise InputError(
            f"{region}: the load balancer is reached at {url!r}, not at an IP address, and"
            f" the {self.provider.name} provider's DNS writes A/AAAA records only; remove"
            " dns: from the spec or use an IP-addressed load balancer"
        )

    def _save_serving(self, region: str, release: str, address: str) -> None:
        saved = self.records.serving()
        if saved is not None and (saved.region, saved.release, saved.values) == (
            region, release, [address]
        ):
            return
        self.records.save_serving(ServingRecord(region, release, [address], _iso(self.clock)))

    def _dns(self) -> tuple[Dns, DnsSpec]:
        if self.spec.dns is None or self.provider.dns is None:
            raise InputError(
                "dns: the spec names no DNS record (dns: {zone, record}), or the provider"
                " has no DNS service; failover switches that record between regions"
            )
        return self.provider.dns, self.spec.dns

    def dns_text(self) -> str | None:
        """The record's values as text, or None (no record, or DNS unreachable)."""
        with contextlib.suppress(PhoenixError):
            dns, where = self._dns()
            record = self.call(lambda: dns.get_record(where.zone, where.record), DNS)
            return ", ".join(record.values) if record is not None else None
        return None

    def _engine(self, region: str, lock: DeployLock | None = None) -> Engine:
        return Engine(
            self.spec, self.provider, clock=self.clock, region=region,
            on_event=self.on_event, deploy_id=self.deploy_id, lock=lock, retry=self.retry,
        )

    @contextlib.contextmanager
    def _lock(self) -> Iterator[DeployLock]:
        plog.bind_deploy(app=self.spec.app, deploy_id=self.deploy_id)
        lock = self._home.new_lock()
        # A person's move waits for watch's heal; watch itself never waits (see Engine._locked).
        watching = self.deploy_id.startswith(WATCH_PREFIX)
        lock.acquire(self.clock, patience=0.0 if watching else self.spec.rollout.deadline)
        try:
            yield lock
        finally:
            lock.release(self.clock.now())
            plog.unbind_deploy()


def _iso(clock: Clock) -> str:
    now: datetime = clock.now()
    return now.isoformat()
