"""A Phoenix session: one app's spec and what every action on it shares.

Like httpx's ``Client`` behind ``httpx.get``: ``phoenix.Phoenix(spec)`` opens the spec's
provider once (or takes an open one) and holds the clock, the retry policy, the retried
calls and the app's records; it makes the leases, engines and region movers, all sharing
them. The ``phoenix.api`` functions are one-call wrappers (open a session, act, close);
a program that does several things keeps one open: ``watch`` holds one per app.

    with phoenix.Phoenix(spec) as session:
        print(session.plan().steps)
        result = session.deploy()

A provider the caller passed in stays the caller's to close; one the session opened is
closed with it.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from phoenix.clock import SystemClock
from phoenix.engine import DeployResult, Engine, EventSink, serving_release
from phoenix.errors import InputError, PhoenixError
from phoenix.executor import IMAGE, RetryingStore
from phoenix.image_retention import (
    ImageFinder,
    ImageUse,
    PruneChoice,
    choose,
    inventory,
    one_per_image,
)
from phoenix.lease import DeployLock
from phoenix.log import get_logger
from phoenix.model import Image
from phoenix.planner import plan as plan_steps
from phoenix.providers.base import Clock, ImageDeleter, ImageImporter, ImageQuery, Provider
from phoenix.providers.registry import open_provider
from phoenix.records import DeployRecord, Records, ReleaseRecord
from phoenix.regions import RegionMover, dns_managed
from phoenix.retrying import RetryingCaller, RetryPolicy
from phoenix.spec import HealthSpec, Spec
from phoenix.status_report import StatusReport, build_status, single_probe
from phoenix.teardown import DestroyResult, destroy
from phoenix.validation import validate, validate_region
from phoenix.vocabulary import Wait

log = get_logger("phoenix.session")


@dataclass(frozen=True)
class PlanReport:
    """A dry run: which release the spec means and what the next steps would be."""

    app: str
    region: str
    release: str
    new_release: bool
    serving_release: str | None
    steps: tuple[str, ...]
    waiting_for: tuple[str, ...]
    converged: bool
    waits: tuple[Wait, ...] = ()  # waiting_for, typed: each with its reason code and node


@dataclass(frozen=True)
class DrillResult:
    """A simulated region outage started or ended (local provider)."""

    app: str
    region: str
    action: str  # outage | recover
    killed_pids: tuple[int, ...] = ()
    changed: bool = True


class Phoenix:
    """One app's session: its spec, provider, clock, retries, records and leases."""

    def __init__(
        self,
        spec: Spec,
        *,
        provider: Provider | None = None,
        clock: Clock | None = None,
        on_event: EventSink | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``provider``: an open provider (tests pass the in-memory cloud), left open on
        close; without it the spec's provider is opened on first use. ``on_event``:
        where the actions' progress events go."""
        self.spec = spec
        self.clock: Clock = clock or SystemClock()
        self.on_event = on_event
        self.retry = retry or RetryPolicy()
        self._given = provider
        self._opened: Provider | None = None

    # --- what the session owns ----------------------------------------------------------

    @property
    def provider(self) -> Provider:
        """The open provider; opened on first use, so that ``validate`` runs before it."""
        if self._given is not None:
            return self._given
        if self._opened is None:
            self._opened = open_provider(self.spec, clock=self.clock)
        return self._opened

    @functools.cached_property
    def caller(self) -> RetryingCaller:
        """Provider calls retried with the session's policy (reads, and changes made
        outside an engine such as destroy's)."""
        return RetryingCaller(self.provider, clock=self.clock, retry=self.retry)

    @functools.cached_property
    def records(self) -> Records:
        """The app's history, releases and attempts, through the retried store."""
        return Records(RetryingStore(self.provider.store, self.caller), self.spec.app)

    def lease(self, owner: str) -> DeployLock:
        """The app's lease, as held (or looked at) by ``owner``."""
        return DeployLock(self.provider.store, self.spec.app, owner,
                          ttl=self.spec.rollout.lease_ttl)

    def engine(self, region: str | None = None, *, deploy_id: str | None = None,
               health: HealthSpec | None = None) -> Engine:
        """An engine for one region (default: the primary), sharing the session's
        provider, clock, retry policy and event sink."""
        return Engine(self.spec, self.provider, clock=self.clock, region=region,
                      on_event=self.on_event, deploy_id=deploy_id, retry=self.retry,
                      health=health)

    def mover(self, *, deploy_id: str | None = None) -> RegionMover:
        """Moves between regions (deploy with failover, failover, failback)."""
        return RegionMover(self.spec, self.provider, clock=self.clock,
                           on_event=self.on_event, deploy_id=deploy_id, retry=self.retry)

    def dns_managed(self) -> bool:
        """Whether the app moves between regions by a DNS record (see ``dns_managed``)."""
        return dns_managed(self.spec, self.provider)

    def serving_region(self) -> str | None:
        """Where the DNS record points (None: the primary). A DNS service that does not
        answer must not stand in the way of a rollback: the primary is assumed, and
        said so."""
        if not self.dns_managed():
            return None
        try:
            return self.mover().serving_region()
        except PhoenixError as exc:
            log.warning("cannot tell where DNS points; acting in the primary region"
                        " (use --region to choose)", error=str(exc))
            return None

    def close(self) -> None:
        """Close the provider if the session opened it."""
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()

    def __enter__(self) -> Phoenix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- actions that change the cloud ----------------------------------------------------

    def validate(self, *, region: str | None = None) -> None:
        """Check the region and the rendered template before any provider call."""
        validate(self.spec, region=region)

    def deploy(self, *, region: str | None = None) -> DeployResult:
        """Build the spec's release, health-gate it, move traffic, retire the old
        release; with a DNS record and no ``region``, fail over on a region's loss.

        Raises ``DeployFailed`` (rolled back, old release serving), ``RestoreFailed``,
        ``LockHeld``, ``Interrupted`` or an ``InputError``."""
        self.validate(region=region)
        if region is None and self.dns_managed():
            return self.mover().deploy()
        return self.engine(region).deploy()

    def failover(self, to: str) -> DeployResult:
        """Move the app to region ``to``: deploy the serving release there
        (health-gated), point the DNS record at it, then retire the region it left
        (when reachable). Raises ``DeployFailed`` with the DNS record untouched when the
        release does not become healthy in ``to``."""
        self.validate(region=to)
        return self._dns_mover().failover(to)

    def failback(self) -> DeployResult:
        """Move the app back to the primary region (the spec's first), health-gated."""
        self.validate()
        return self._dns_mover().failback()

    def rollback(self, *, to_release: str | None = None,
                 region: str | None = None) -> DeployResult:
        """Put the previous good release (or ``to_release``) back in service, where the
        app serves unless ``region`` says otherwise."""
        self.validate(region=region)
        return self.engine(region or self.serving_region()).rollback(to_release)

    def repave(self, *, region: str | None = None) -> DeployResult:
        """Replace every node of the serving release with a fresh boot of the same
        release (rolling, health-gated; the old nodes are put back if a replacement
        fails)."""
        self.validate(region=region)
        return self.engine(region or self.serving_region()).repave()

    def destroy(self, *, purge_records: bool = False, timeout: float = 600.0) -> DestroyResult:
        """Take the app out of every region and wait until nothing is listed."""
        return destroy(self.spec, self.provider, self.clock, self.caller,
                       purge_records=purge_records, timeout=timeout)

    def unlock(self, *, force: bool = False, by: str | None = None) -> str | None:
        """Break the app's lease; returns whom it broke (None: nobody held it).

        Refuses (``LockHeld``) a holder that looks alive: a process on this host that
        still runs, or one elsewhere whose lease has not expired. ``force`` breaks it
        anyway (a person who knows the holder is dead, or wants it stopped): the
        holder's next poll finds the newer generation and stops without touching
        anything more."""
        lock = DeployLock(self.provider.store, self.spec.app, "unlock")
        who = by or f"phoenix unlock{' --force' if force else ''} by {lock.owner}"
        holder = lock.break_lease(self.clock.now(), force=force, by=who)
        return holder.owner if holder else None

    def import_image(self, source: Path, *, name: str | None = None,
                     region: str | None = None) -> Image:
        """Import a directory as an immutable image (providers that can, e.g. local)."""
        validate_region(self.spec, region)
        compute = self.provider.compute
        if not isinstance(compute, ImageImporter):
            raise InputError(
                f"the {self.provider.name} provider cannot import a directory as an image;"
                " upload the golden image to the cloud instead"
            )
        if not source.is_dir():
            raise InputError(f"{source}: not a directory")
        return compute.import_image(region or self.spec.regions[0], source.resolve(), name)

    def drill(self, *, region: str, end: bool = False) -> DrillResult:
        """Cut a local region's power (SIGKILL its balancers and nodes; its API then
        answers "unavailable") or end that outage: a failover drill on this machine.

        Only the local provider can do this; on a real cloud an outage is not ours to
        cause."""
        validate_region(self.spec, region)
        if self.spec.provider.name != "local":
            raise InputError(
                f"provider.name: drills cut the power of local regions; the"
                f" {self.spec.provider.name} provider's regions are real (use"
                " `phoenix failover --to REGION` to rehearse)"
            )
        from phoenix.providers.local.outage import end_outage, start_outage
        from phoenix.providers.local.provider import LocalCompute

        compute = self.provider.compute
        assert isinstance(compute, LocalCompute)
        state_dir = compute.cloud.state_dir
        if end:
            return DrillResult(self.spec.app, region, "recover",
                               changed=end_outage(state_dir, region))
        killed = start_outage(state_dir, region, reason="drill (phoenix drill outage)")
        return DrillResult(self.spec.app, region, "outage", tuple(killed))

    # --- looks that change nothing --------------------------------------------------------

    def plan(self, *, region: str | None = None) -> PlanReport:
        """What ``deploy`` would do first, computed by the same planner."""
        self.validate(region=region)
        # One look, no history: judge health on a single probe, as `status` does.
        engine = self.engine(region or self.serving_region(),
                             health=single_probe(self.spec))
        observed = engine.observe()
        known = engine.records.releases()
        now = self.clock.now()
        release = engine.resolve(observed, now, known)
        # As deploy would see it: an attempt starting now (see Target.attempt_started).
        target = dataclasses.replace(engine.target_for(release.id, self.spec.count),
                                     attempt_started=now)
        first = plan_steps(target, observed, now)
        return PlanReport(
            app=self.spec.app,
            region=engine.region,
            release=release.id,
            new_release=all(r.id != release.id for r in known),
            serving_release=serving_release(observed),
            steps=tuple(first.describe()),
            waiting_for=first.waiting_for,
            converged=first.converged,
            waits=first.waits,
        )

    def status(self, *, check_health: bool = True) -> StatusReport:
        """What runs where: nodes, their health and pool membership, per region."""
        return build_status(self.spec, self.provider, self.clock, check_health=check_health)

    def history(self) -> list[DeployRecord]:
        """Every deploy, rollback and failover of the app, oldest first."""
        return self.records.deploys()

    def images(self, *, region: str | None = None) -> list[Image]:
        """Every image the provider has in ``region`` (default: the primary), newest
        first."""
        validate_region(self.spec, region)
        found = self.provider.compute.find_images(region or self.spec.regions[0],
                                                  ImageQuery())
        return sorted(found, key=lambda i: (i.created_at is not None, i.created_at),
                      reverse=True)

    def image_inventory(self, *, region: str | None = None,
                        every_image: bool = False) -> list[ImageUse]:
        """The app's golden images in ``region`` (default: every region of the spec),
        newest first, each with its age and the recorded releases (of the base spec and
        every environment) that use it; ``every_image``: the regions' other images too."""
        validate_region(self.spec, region)
        releases = self._instance_releases()
        rows: list[ImageUse] = []
        for where in [region] if region else self.spec.regions:
            rows += inventory(self.spec, where, self._image_finder(where), releases,
                              self.clock.now(), every_image=every_image)
        return rows

    def prune_images(self, *, keep: int, dry_run: bool = False,
                     region: str | None = None) -> list[PruneChoice]:
        """Delete the app's golden images but the ``keep`` newest and every one a
        recorded release could roll back to (``phoenix.image_retention``); ``dry_run``
        only says which. Under the app's lease, so that no deploy of it records a
        release between the look and the deletes."""
        if keep < 1:
            raise InputError("--keep: keep at least 1 image (the newest, which a deploy"
                             " would use)")
        validate_region(self.spec, region)
        compute = self.provider.compute
        if not dry_run and not isinstance(compute, ImageDeleter):
            raise InputError(f"the {self.provider.name} provider cannot delete images;"
                             " delete them in the cloud's own tools")
        lease = self.lease(f"image-prune-{id(self):x}")
        lease.acquire(self.clock, patience=self.spec.rollout.deadline)
        try:
            per_region = [choice for where in ([region] if region else self.spec.regions)
                          for choice in choose(self.image_inventory(region=where), keep)]
            choices = one_per_image(per_region)
            doomed = {choice.use.image.id for choice in choices if choice.delete}
            for choice in per_region:
                if choice.use.image.id in doomed and not dry_run:
                    assert isinstance(compute, ImageDeleter)
                    lease.guard(self.clock.now())
                    image, where = choice.use.image, choice.use.region
                    self.caller.call(partial(compute.delete_image, where, image.id), IMAGE)
                    log.info("image deleted", image=image.id, name=image.name, region=where)
            return choices
        finally:
            lease.release(self.clock.now())

    # --- internals ------------------------------------------------------------------------

    def _instance_releases(self) -> list[ReleaseRecord]:
        """The recorded releases of the base spec and every environment: they share the
        golden images."""
        store = RetryingStore(self.provider.store, self.caller)
        return [record for app in self.spec.instances
                for record in Records(store, app).releases()]

    def _image_finder(self, region: str) -> ImageFinder:
        compute = self.provider.compute

        def find(query: ImageQuery) -> list[Image]:
            found: list[Image] = self.caller.call(
                partial(compute.find_images, region, query), IMAGE)
            return found

        return find

    def _dns_mover(self) -> RegionMover:
        if not self.dns_managed():
            raise InputError(
                "dns: failover and failback switch the spec's DNS record between regions;"
                " add dns: {zone: ..., record: ...} to the spec"
                + ("" if self.provider.dns is not None
                   else f" (and the {self.provider.name} provider needs a DNS service)")
            )
        return self.mover()
