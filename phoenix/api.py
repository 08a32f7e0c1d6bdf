"""The library API: what the CLI, a CI deploy stage or a Python program call.

Each function is one action of a ``phoenix.session.Phoenix`` session, opened for that
call and closed after it, as ``httpx.get`` is one request of a throw-away ``Client``.
Each takes a loaded ``Spec`` and, optionally, an already-open ``Provider`` (left open)
and a ``Clock`` (tests pass the in-memory cloud and a fake clock); without them the
spec's provider is opened and the wall clock used. A program doing several things keeps
one ``Phoenix`` open instead. Nothing here touches a terminal.
"""

from __future__ import annotations

from pathlib import Path

from phoenix.engine import DeployResult, EventSink
from phoenix.image_retention import ImageUse, PruneChoice
from phoenix.model import Image
from phoenix.providers.base import Clock, Provider
from phoenix.records import DeployRecord
from phoenix.session import DrillResult, Phoenix, PlanReport
from phoenix.spec import Spec
from phoenix.status_report import NodeStatus, RegionStatus, StatusReport
from phoenix.teardown import DestroyResult
from phoenix.validation import validate, validate_region

__all__ = [
    "DestroyResult", "DrillResult", "NodeStatus", "Phoenix", "PlanReport", "RegionStatus",
    "StatusReport", "deploy", "destroy", "drill", "failback", "failover", "history",
    "image_inventory", "images", "import_image", "plan", "prune_images", "repave",
    "rollback", "serving_region_of", "status", "unlock", "validate", "validate_region",
]


def deploy(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    region: str | None = None,
    on_event: EventSink | None = None,
) -> DeployResult:
    """Build the spec's release, health-gate it, move traffic, retire the old release.

    Raises ``DeployFailed`` (rolled back, old release serving), ``RestoreFailed``,
    ``LockHeld``, ``Interrupted`` or an ``InputError``.
    """
    with Phoenix(spec, provider=provider, clock=clock, on_event=on_event) as session:
        return session.deploy(region=region)


def serving_region_of(spec: Spec, opened: Provider, clock: Clock) -> str | None:
    """Where the DNS record points (None: the primary, also when DNS does not answer)."""
    return Phoenix(spec, provider=opened, clock=clock).serving_region()


def failover(
    spec: Spec,
    *,
    to: str,
    provider: Provider | None = None,
    clock: Clock | None = None,
    on_event: EventSink | None = None,
) -> DeployResult:
    """Move the app to region ``to`` (``Phoenix.failover``)."""
    with Phoenix(spec, provider=provider, clock=clock, on_event=on_event) as session:
        return session.failover(to)


def failback(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    on_event: EventSink | None = None,
) -> DeployResult:
    """Move the app back to the primary region (the spec's first), health-gated."""
    with Phoenix(spec, provider=provider, clock=clock, on_event=on_event) as session:
        return session.failback()


def rollback(
    spec: Spec,
    *,
    to_release: str | None = None,
    provider: Provider | None = None,
    clock: Clock | None = None,
    region: str | None = None,
    on_event: EventSink | None = None,
) -> DeployResult:
    """Put the previous good release (or ``to_release``) back in service."""
    with Phoenix(spec, provider=provider, clock=clock, on_event=on_event) as session:
        return session.rollback(to_release=to_release, region=region)


def repave(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    region: str | None = None,
    on_event: EventSink | None = None,
) -> DeployResult:
    """Replace every node of the serving release with a fresh boot of the same release
    (rolling, health-gated; the old nodes are put back if a replacement fails)."""
    with Phoenix(spec, provider=provider, clock=clock, on_event=on_event) as session:
        return session.repave(region=region)


def plan(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    region: str | None = None,
) -> PlanReport:
    """What ``deploy`` would do first, computed by the same planner; changes nothing."""
    with Phoenix(spec, provider=provider, clock=clock) as session:
        return session.plan(region=region)


def status(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    check_health: bool = True,
) -> StatusReport:
    """What runs where: nodes, their health and pool membership, per region."""
    with Phoenix(spec, provider=provider, clock=clock) as session:
        return session.status(check_health=check_health)


def history(
    spec: Spec, *, provider: Provider | None = None, clock: Clock | None = None
) -> list[DeployRecord]:
    """Every deploy, rollback and failover of the app, oldest first."""
    with Phoenix(spec, provider=provider, clock=clock) as session:
        return session.history()


def destroy(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    purge_records: bool = False,
    timeout: float = 600.0,
) -> DestroyResult:
    """Take the app out of every region: members removed, servers deleted and gone."""
    with Phoenix(spec, provider=provider, clock=clock) as session:
        return session.destroy(purge_records=purge_records, timeout=timeout)


def unlock(
    spec: Spec,
    *,
    force: bool = False,
    by: str | None = None,
    provider: Provider | None = None,
    clock: Clock | None = None,
) -> str | None:
    """Break the app's lease; returns whom it broke (``Phoenix.unlock``)."""
    with Phoenix(spec, provider=provider, clock=clock) as session:
        return session.unlock(force=force, by=by)


def images(
    spec: Spec,
    *,
    region: str | None = None,
    provider: Provider | None = None,
    clock: Clock | None = None,
) -> list[Image]:
    """Every image the provider has in ``region`` (default: the primary), newest first."""
    with Phoenix(spec, provider=provider, clock=clock) as session:
        return session.images(region=region)


def image_inventory(
    spec: Spec,
    *,
    region: str | None = None,
    every_image: bool = False,
    provider: Provider | None = None,
    clock: Clock | None = None,
) -> list[ImageUse]:
    """The app's golden images per region, newest first, with their age and the recorded
    releases that use them (``Phoenix.image_inventory``)."""
    with Phoenix(spec, provider=provider, clock=clock) as session:
        return session.image_inventory(region=region, every_image=every_image)


def prune_images(
    spec: Spec,
    *,
    keep: int,
    dry_run: bool = False,
    region: str | None = None,
    provider: Provider | None = None,
    clock: Clock | None = None,
) -> list[PruneChoice]:
    """Delete the app's golden images but the ``keep`` newest and every one a recorded
    release could roll back to (``Phoenix.prune_images``)."""
    with Phoenix(spec, provider=provider, clock=clock) as session:
        return session.prune_images(keep=keep, dry_run=dry_run, region=region)


def import_image(
    spec: Spec,
    source: Path,
    *,
    name: str | None = None,
    region: str | None = None,
    provider: Provider | None = None,
    clock: Clock | None = None,
) -> Image:
    """Import a directory as an immutable image (providers that can, e.g. local)."""
    with Phoenix(spec, provider=provider, clock=clock) as session:
        return session.import_image(source, name=name, region=region)


def drill(
    spec: Spec, *, region: str, end: bool = False, clock: Clock | None = None
) -> DrillResult:
    """Cut a local region's power, or end that outage (``Phoenix.drill``)."""
    with Phoenix(spec, clock=clock) as session:
        return session.drill(region=region, end=end)
