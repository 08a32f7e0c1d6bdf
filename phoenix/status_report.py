"""``phoenix status``: what runs where, per region, and what looks wrong about it.

A read-only look (no lease taken, single probes): nodes, their health and pool
membership, where DNS points, and each problem named with the command that fixes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from phoenix.engine import serving_release
from phoenix.errors import PhoenixError
from phoenix.health import build_tracker
from phoenix.lease import DeployLock
from phoenix.model import TAG_LEASE, Health, Member, MemberState, Node, NodeState
from phoenix.planner import Observed
from phoenix.providers.base import (
    Clock,
    PoolEndpoint,
    PoolProblems,
    Provider,
    RecordProblems,
)
from phoenix.records import DeployRecord, Records
from phoenix.regions import RegionMover, dns_managed
from phoenix.spec import HealthSpec, Spec


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


def build_status(
    spec: Spec, opened: Provider, clock: Clock, *, check_health: bool = True
) -> StatusReport:
    """What runs where: nodes, their health and pool membership, per region."""
    once = single_probe(spec)
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


def _lease_of(node: Node) -> int | None:
    tag = node.metadata.get(TAG_LEASE)
    return int(tag) if tag is not None and tag.isdigit() else None



def single_probe(spec: Spec) -> HealthSpec:
    """Health settings for a one-off look (status, plan): one probe decides."""
    return spec.health.model_copy(
        update={"healthy_threshold": 1, "unhealthy_threshold": 1, "grace": 0.0}
    )
