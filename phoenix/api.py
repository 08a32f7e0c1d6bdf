"""The library API: what the CLI, a CI deploy stage or a Python program call.

Each function takes a loaded ``Spec`` and, optionally, an already-open ``Provider`` and a
``Clock`` (tests pass the in-memory cloud and a fake clock); without them it opens the
provider the spec names and uses the wall clock. Nothing here touches a terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

from phoenix.clock import SystemClock
from phoenix.cloud_config_schema import check_cloud_config
from phoenix.engine import DeployResult, Engine, EventSink, serving_release
from phoenix.errors import BadRequest, InputError, PhoenixError, TemplateError
from phoenix.executor import COMPUTE, DNS, LB, RetryingStore
from phoenix.health import build_tracker
from phoenix.lease import DeployLock
from phoenix.log import get_logger
from phoenix.model import TAG_LEASE, Health, Image, Member, MemberState, Node, NodeState
from phoenix.planner import Observed
from phoenix.planner import plan as plan_steps
from phoenix.providers.base import (
    Clock,
    ImageImporter,
    ImageQuery,
    PoolDeleter,
    PoolEndpoint,
    PoolProblems,
    Provider,
    RecordFrontend,
    RecordProblems,
)
from phoenix.providers.registry import open_provider
from phoenix.records import DeployRecord, Records
from phoenix.regions import RegionMover, dns_managed
from phoenix.release import PLACEHOLDER_RELEASE, resolve_release
from phoenix.render import RenderContext, render_user_data, template_sources
from phoenix.retrying import RetryingCaller
from phoenix.spec import HealthSpec, Spec

log = get_logger("phoenix.api")


@contextlib.contextmanager
def _provider(spec: Spec, provider: Provider | None, clock: Clock) -> Iterator[Provider]:
    if provider is not None:
        yield provider
        return
    opened = open_provider(spec, clock=clock)
    try:
        yield opened
    finally:
        opened.close()


def validate(spec: Spec, *, region: str | None = None) -> None:
    """Check what can be checked before any provider call: the region, and the template
    rendered for every region and node index, each distinct rendering checked against
    cloud-init's own schema (``phoenix.cloud_config_schema``) with the template line.

    A bad input must stop a deploy before it touches the cloud (exit code 2, nothing
    half-done), so ``deploy``, ``plan`` and ``rollback`` run this first.
    """
    validate_region(spec, region)
    # Every template a tag names, rendered or not: a release records them all, so one
    # that leaves the template's folder must stop here with its file and line.
    sources = _shown_sources(spec, template_sources(spec.template_path))
    checked: set[str] = set()  # digests of the texts checked against cloud-init's schema
    for region in spec.regions:
        for index in range(spec.count):
            text = render_user_data(
                spec.template_path,
                RenderContext(
                    app=spec.app,
                    release=PLACEHOLDER_RELEASE,
                    region=region,
                    index=index,
                    vars=spec.resolved_vars,
                ),
            )
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest not in checked:  # nodes often render alike: check each text once
                checked.add(digest)
                check_cloud_config(text, template=str(spec.template_path), sources=sources)
            if spec.provider.name == "local":
                _check_local_user_data(spec, text)


def _shown_sources(spec: Spec, sources: dict[str, str]) -> dict[str, str]:
    """``template_sources`` keyed as messages name them: the spec's template first (as
    the spec names it), an included one by its path."""
    top = spec.template_path.name
    shown = {str(spec.template_path): sources[top]} if top in sources else {}
    shown.update((str(spec.template_path.parent / name), text)
                 for name, text in sources.items() if name != top)
    return shown


def _check_local_user_data(spec: Spec, text: str) -> None:
    """The local provider applies a documented subset of cloud-init: say so up front."""
    from phoenix.providers.local.cloudinit import parse_user_data

    try:
        parse_user_data(text)
    except BadRequest as exc:
        raise TemplateError(
            str(exc), template=str(spec.template_path)
        ) from exc


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
    validate(spec, region=region)
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        if region is None and dns_managed(spec, opened):
            return RegionMover(spec, opened, clock=clock, on_event=on_event).deploy()
        engine = Engine(spec, opened, clock=clock, region=region, on_event=on_event)
        return engine.deploy()


def serving_region_of(spec: Spec, opened: Provider, clock: Clock) -> str | None:
    """Where the DNS record points (None: the primary). A DNS service that does not answer
    must not stand in the way of a rollback: the primary is assumed, and said so."""
    if not dns_managed(spec, opened):
        return None
    try:
        return RegionMover(spec, opened, clock=clock).serving_region()
    except PhoenixError as exc:
        log.warning("cannot tell where DNS points; acting in the primary region"
                    " (use --region to choose)", error=str(exc))
        return None


def failover(
    spec: Spec,
    *,
    to: str,
    provider: Provider | None = None,
    clock: Clock | None = None,
    on_event: EventSink | None = None,
) -> DeployResult:
    """Move the app to region ``to``: deploy the serving release there (health-gated),
    point the DNS record at it, then retire the region it left (when reachable).

    For planned maintenance, or an outage seen elsewhere. Raises ``DeployFailed`` with the
    DNS record untouched when the release does not become healthy in ``to``.
    """
    validate(spec, region=to)
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        return _mover(spec, opened, clock, on_event).failover(to)


def failback(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    on_event: EventSink | None = None,
) -> DeployResult:
    """Move the app back to the primary region (the spec's first), health-gated."""
    validate(spec)
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        return _mover(spec, opened, clock, on_event).failback()


def _mover(
    spec: Spec, opened: Provider, clock: Clock, on_event: EventSink | None
) -> RegionMover:
    if not dns_managed(spec, opened):
        raise InputError(
            "dns: failover and failback switch the spec's DNS record between regions; add"
            " dns: {zone: ..., record: ...} to the spec"
            + ("" if opened.dns is not None
               else f" (and the {opened.name} provider needs a DNS service)")
        )
    return RegionMover(spec, opened, clock=clock, on_event=on_event)


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
    validate(spec, region=region)
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        region = region or serving_region_of(spec, opened, clock)
        engine = Engine(spec, opened, clock=clock, region=region, on_event=on_event)
        return engine.rollback(to_release)


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
    validate(spec, region=region)
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        region = region or serving_region_of(spec, opened, clock)
        engine = Engine(spec, opened, clock=clock, region=region, on_event=on_event)
        return engine.repave()


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


def plan(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    region: str | None = None,
) -> PlanReport:
    """What ``deploy`` would do first, computed by the same planner; changes nothing."""
    validate(spec, region=region)
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        region = region or serving_region_of(spec, opened, clock)
        # One look, no history: judge health on a single probe, as `status` does.
        engine = Engine(spec, opened, clock=clock, region=region, health=_single_probe(spec))
        observed = engine.observe()
        known = engine.records.releases()
        release = resolve_release(
            spec,
            opened,
            region=engine.region,
            now=clock.now(),
            known=known,
            observed_releases={n.release for n in observed.nodes},
            call=engine.reads.call,
        )
        # As deploy would see it: an attempt starting now (see Target.attempt_started).
        target = dataclasses.replace(engine.target_for(release.id, spec.count),
                                     attempt_started=clock.now())
        first = plan_steps(target, observed, clock.now())
        return PlanReport(
            app=spec.app,
            region=engine.region,
            release=release.id,
            new_release=all(r.id != release.id for r in known),
            serving_release=serving_release(observed),
            steps=tuple(first.describe()),
            waiting_for=first.waiting_for,
            converged=first.converged,
        )


@dataclass(frozen=True)
class NodeStatus:
    name: str
    release: str
    index: int
    state: str
    address: str | None
    health: str
    health_detail: str
    member: str | None  # SERVING | DRAINING | None (not in the pool)
    fault: str | None = None
    lease: int | None = None  # the lease generation of the actor that created it


@dataclass(frozen=True)
class RegionStatus:
    region: str
    serving_release: str | None
    nodes: tuple[NodeStatus, ...]
    stray_members: tuple[str, ...] = ()
    error: str | None = None
    endpoint: str | None = None  # where clients reach the pool, when the provider can tell
    dns_points_here: bool = False  # the app's DNS record points at this region


@dataclass(frozen=True)
class StatusReport:
    app: str
    regions: tuple[RegionStatus, ...]
    dns: str | None = None
    lock_holder: str | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)
    serving_region: str | None = None  # where DNS sends clients (None: no DNS record)
    last_move: str | None = None  # the newest failover/failback, as history records it


def status(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    check_health: bool = True,
) -> StatusReport:
    """What runs where: nodes, their health and pool membership, per region."""
    clock = clock or SystemClock()
    once = _single_probe(spec)
    with _provider(spec, provider, clock) as opened:
        regions = []
        problems: list[str] = []
        holder = DeployLock(opened.store, spec.app, "status").holder()
        records = Records(opened.store, spec.app)
        for region in spec.regions:
            try:
                nodes = opened.compute.list_nodes(region, spec.app)
                members = opened.load_balancer.list_members(region, spec.load_balancer.pool)
            except PhoenixError as exc:
                regions.append(RegionStatus(region, None, (), error=str(exc)))
                problems.append(f"{region}: {exc}")
                continue
            lb = opened.load_balancer
            if isinstance(lb, PoolProblems):  # e.g. a local balancer that is not running
                problems.extend(f"{region}: {problem}"
                                for problem in lb.pool_problems(region, spec.load_balancer.pool))
            if holder is None:  # a deploy at work is expected to look half-done
                problems.extend(_unfinished(spec, region, nodes, members, records))
            health = {}
            if check_health and nodes:
                tracker = build_tracker(
                    once, clock=clock, health_source=opened.health_source, region=region
                )
                health = tracker.check_sync(nodes)
            by_member = {m.name: m for m in members}
            rows = []
            for node in sorted(nodes, key=lambda n: (n.release, n.index, n.attempt)):
                known = health.get(node.name)
                member = by_member.get(node.name)
                rows.append(
                    NodeStatus(
                        name=node.name,
                        release=node.release,
                        index=node.index,
                        state=node.state.value,
                        address=node.address,
                        health=known.status.value if known else Health.UNKNOWN.value,
                        health_detail=known.detail if known else "not checked",
                        member=member.state.value if member else None,
                        fault=node.fault,
                        lease=_lease_of(node),
                    )
                )
                if member is not None and member.state is MemberState.SERVING and (
                    node.state is NodeState.ERROR
                    or (known is not None and known.status is Health.UNHEALTHY)
                ):
                    problems.append(
                        f"{region}: {node.name} is in the pool but"
                        f" {'in ERROR' if node.state is NodeState.ERROR else 'unhealthy'}:"
                        f" {node.fault or (known.detail if known else '')}"
                    )
            names = {n.name for n in nodes}
            stray = tuple(sorted(m.name for m in members if m.name not in names))
            problems.extend(f"{region}: pool member {m} has no server" for m in stray)
            observed = Observed(region, tuple(nodes), tuple(members), health)
            lb = opened.load_balancer
            endpoint = lb.url(region, spec.load_balancer.pool) if isinstance(
                lb, PoolEndpoint) else None
            regions.append(
                RegionStatus(region, serving_release(observed), tuple(rows), stray,
                             endpoint=endpoint)
            )
        dns_text, serving_region = None, None
        if dns_managed(spec, opened):
            dns_text, serving_region, regions = _dns_view(spec, opened, clock, regions,
                                                          problems)
        return StatusReport(
            app=spec.app,
            regions=tuple(regions),
            dns=dns_text,
            lock_holder=f"{holder.owner} (lease generation {holder.generation})"
            if holder else None,
            problems=tuple(problems),
            serving_region=serving_region,
            last_move=_last_move(Records(opened.store, spec.app).deploys()),
        )


def _unfinished(
    spec: Spec, region: str, nodes: list[Node], members: list[Member], records: Records
) -> list[str]:
    """What a run that stopped half-way (killed, or its restore failed) left, while no
    deploy is at work: each names what is wrong and the command that finishes it."""
    problems: list[str] = []
    attempt = records.attempt(region)
    if attempt is not None:
        how = ("its rollback could not restore the previous release"
               if attempt.state == "restore-failed" else "it was stopped (killed or crashed)")
        problems.append(
            f"{region}: {attempt.action} {attempt.deploy_id} of {attempt.release} did not"
            f" finish: {how}; run `phoenix deploy` again to finish it (a failure restores"
            f" {attempt.previous_release or 'nothing'})"
        )
    by_name = {n.name: n for n in nodes}
    serving = [m for m in members if m.state is MemberState.SERVING and m.name in by_name]
    releases = sorted({by_name[m.name].release for m in serving})
    if len(releases) > 1:
        problems.append(f"{region}: the pool serves a mix of releases ({', '.join(releases)})")
    draining = sorted(m.name for m in members if m.state is MemberState.DRAINING)
    if draining:
        problems.append(f"{region}: member(s) left draining: {', '.join(draining)}")
    if len(releases) == 1 and len(serving) < spec.count:
        problems.append(
            f"{region}: {releases[0]} serves with {len(serving)} of {spec.count} node(s)")
    return problems


def _dns_view(
    spec: Spec, opened: Provider, clock: Clock, regions: list[RegionStatus],
    problems: list[str],
) -> tuple[str | None, str | None, list[RegionStatus]]:
    """Where the DNS record points, which region that is, and what looks wrong about it."""
    mover = RegionMover(spec, opened, clock=clock)
    dns_text, serving_region = None, None
    try:
        serving_region = mover.serving_region()
        dns_text = mover.dns_text()
        if spec.dns is not None and isinstance(opened.dns, RecordProblems):
            problems.extend(f"dns: {problem}" for problem in
                            opened.dns.record_problems(spec.dns.zone, spec.dns.record))
    except PhoenixError as exc:
        problems.append(f"dns: {exc}")
    if dns_text is not None and serving_region is None:
        problems.append(f"dns points at {dns_text}, which is none of the regions' load"
                        " balancers")
    for region in regions:
        live = [n for n in region.nodes if n.state != NodeState.DELETING.value]
        if region.region != serving_region and live:
            problems.append(f"{region.region}: {len(live)} server(s) but DNS does not point"
                            " here (left by a failover?); the next deploy or failback that"
                            " reaches it retires them")
        if region.region == serving_region and region.error:
            problems.append(f"{serving_region}: DNS points at a region that cannot be read;"
                            " `phoenix failover --to REGION` moves the app")
    marked = [dataclasses.replace(r, dns_points_here=r.region == serving_region)
              for r in regions]
    return dns_text, serving_region, marked


def _last_move(deploys: list[DeployRecord]) -> str | None:
    """The newest successful failover, failback or deploy that changed region."""
    regions_of: dict[str, set[str]] = {}
    for record in deploys:
        regions_of.setdefault(record.deploy_id, set()).add(record.region)
    moves = [r for r in deploys
             if r.outcome == "succeeded" and r.action != "retire"
             and (r.action in ("failover", "failback") or len(regions_of[r.deploy_id]) > 1)]
    return _describe_move(moves[-1]) if moves else None


def _describe_move(record: DeployRecord) -> str:
    return (f"{record.finished_at}: {record.action} of {record.release} to {record.region}"
            f" {record.outcome}" + (f" ({record.reason})" if record.reason else ""))


def history(
    spec: Spec, *, provider: Provider | None = None, clock: Clock | None = None
) -> list[DeployRecord]:
    """Every deploy, rollback and failover of the app, oldest first."""
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        return Records(opened.store, spec.app).deploys()


@dataclass(frozen=True)
class DestroyResult:
    app: str
    deleted_nodes: tuple[str, ...]
    removed_members: tuple[str, ...]
    purged_records: int


def destroy(
    spec: Spec,
    *,
    provider: Provider | None = None,
    clock: Clock | None = None,
    purge_records: bool = False,
    timeout: float = 600.0,
) -> DestroyResult:
    """Take the app out of every region: members removed, servers deleted and gone.

    Waits until the provider no longer lists any of the app's servers, so that nothing
    is left behind when it returns.
    """
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        lock = DeployLock(opened.store, spec.app, f"destroy-{id(spec):x}",
                          ttl=spec.rollout.lease_ttl)
        lock.acquire(clock, patience=spec.rollout.deadline)  # a heal under way finishes
        try:
            deleted: list[str] = []
            removed: list[str] = []
            caller = RetryingCaller(opened, clock=clock)
            call = caller.call
            records = Records(RetryingStore(opened.store, caller), spec.app)

            def mutate(fn: Callable[[], object], service: str) -> None:
                # The lease's fence before every change: a destroy stalled after its
                # reads must not delete what a newer actor now serves with.
                lock.guard(clock.now())
                call(fn, service)

            pool = spec.load_balancer.pool
            compute, lb = opened.compute, opened.load_balancer
            for region in spec.regions:
                lock.heartbeat(clock.now())
                nodes = call(partial(compute.list_nodes, region, spec.app))
                names = {n.name for n in nodes}
                for member in call(partial(lb.list_members, region, pool), LB):
                    if member.name in names or member.name.startswith(f"{spec.app}-"):
                        mutate(partial(lb.remove_member, region, pool, member.name), LB)
                        removed.append(member.name)
                for node in nodes:
                    if node.state is not NodeState.DELETING:
                        mutate(partial(compute.delete_node, region, node.id), COMPUTE)
                    deleted.append(node.name)
            if isinstance(lb, PoolDeleter):
                for region in spec.regions:
                    mutate(partial(lb.delete_pool, region, pool), LB)
            if spec.dns is not None and isinstance(opened.dns, RecordFrontend):
                mutate(partial(opened.dns.stop_frontend, spec.dns.zone, spec.dns.record), DNS)
            deadline = clock.now() + timedelta(seconds=timeout)
            for region in spec.regions:
                while call(partial(compute.list_nodes, region, spec.app)):
                    if clock.now() >= deadline:
                        raise PhoenixError(
                            f"servers of {spec.app} still listed in {region} after {timeout:g}s;"
                            " run `phoenix destroy` again"
                        )
                    lock.wait(clock, 0.5)
            # Nothing is left half-done: a later deploy must not restore what ran before.
            lock.guard(clock.now())
            for region in spec.regions:
                records.clear_attempt(region)
            purged = 0
            if purge_records:
                # All but the lease's newest generation (this destroy's): generation
                # numbers must keep growing, or a stalled actor's fence could pass again.
                keep = lock.key(lock.generation) if lock.generation is not None else None
                for key in opened.store.list(f"apps/{spec.app}/"):
                    if key != keep:
                        opened.store.delete(key)
                        purged += 1
            return DestroyResult(spec.app, tuple(sorted(deleted)), tuple(sorted(removed)), purged)
        finally:
            lock.release(clock.now())


def unlock(
    spec: Spec,
    *,
    force: bool = False,
    by: str | None = None,
    provider: Provider | None = None,
    clock: Clock | None = None,
) -> str | None:
    """Break the app's lease; returns whom it broke (None: nobody held it).

    Refuses (``LockHeld``) a holder that looks alive: a process on this host that still
    runs, or one elsewhere whose lease has not expired. ``force`` breaks it anyway (a
    person who knows the holder is dead, or wants it stopped): the holder's next poll
    finds the newer generation and stops without touching anything more.
    """
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        lock = DeployLock(opened.store, spec.app, "unlock")
        who = by or f"phoenix unlock{' --force' if force else ''} by {lock.owner}"
        holder = lock.break_lease(clock.now(), force=force, by=who)
        return holder.owner if holder else None


def images(
    spec: Spec,
    *,
    region: str | None = None,
    provider: Provider | None = None,
    clock: Clock | None = None,
) -> list[Image]:
    """Every image the provider has in ``region`` (default: the primary), newest first."""
    validate_region(spec, region)
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        found = opened.compute.find_images(region or spec.regions[0], ImageQuery())
        return sorted(found, key=lambda i: (i.created_at is not None, i.created_at),
                      reverse=True)


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
    validate_region(spec, region)
    clock = clock or SystemClock()
    with _provider(spec, provider, clock) as opened:
        compute = opened.compute
        if not isinstance(compute, ImageImporter):
            raise InputError(
                f"the {opened.name} provider cannot import a directory as an image; upload"
                " the golden image to the cloud instead"
            )
        if not source.is_dir():
            raise InputError(f"{source}: not a directory")
        return compute.import_image(region or spec.regions[0], source.resolve(), name)


@dataclass(frozen=True)
class DrillResult:
    """A simulated region outage started or ended (local provider)."""

    app: str
    region: str
    action: str  # outage | recover
    killed_pids: tuple[int, ...] = ()
    changed: bool = True


def drill(
    spec: Spec, *, region: str, end: bool = False, clock: Clock | None = None
) -> DrillResult:
    """Cut a local region's power (SIGKILL its balancers and nodes; its API then answers
    "unavailable") or end that outage: a failover drill on this machine.

    Only the local provider can do this; on a real cloud an outage is not ours to cause.
    """
    validate_region(spec, region)
    if spec.provider.name != "local":
        raise InputError(
            f"provider.name: drills cut the power of local regions; the {spec.provider.name}"
            " provider's regions are real (use `phoenix failover --to REGION` to rehearse)"
        )
    from phoenix.providers.local.outage import end_outage, start_outage
    from phoenix.providers.local.provider import LocalCompute

    clock = clock or SystemClock()
    with _provider(spec, None, clock) as opened:
        compute = opened.compute
        assert isinstance(compute, LocalCompute)
        state_dir = compute.cloud.state_dir
        if end:
            return DrillResult(spec.app, region, "recover",
                               changed=end_outage(state_dir, region))
        killed = start_outage(state_dir, region, reason="drill (phoenix drill outage)")
        return DrillResult(spec.app, region, "outage", tuple(killed))


def validate_region(spec: Spec, region: str | None) -> None:
    """Refuse a region the spec does not list, before any provider call."""
    if region is not None and region not in spec.regions:
        raise InputError(
            f"--region {region}: not one of the spec's regions ({', '.join(spec.regions)})"
        )


def _lease_of(node: Node) -> int | None:
    tag = node.metadata.get(TAG_LEASE)
    return int(tag) if tag is not None and tag.isdigit() else None


def _single_probe(spec: Spec) -> HealthSpec:
    """Health settings for a one-off look (status, plan): one probe decides."""
    return spec.health.model_copy(
        update={"healthy_threshold": 1, "unhealthy_threshold": 1, "grace": 0.0}
    )
