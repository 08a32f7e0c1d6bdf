"""Results as text for a person: the reports of deploy, plan, status, history and destroy,
in plain aligned columns (stable for grep and awk, and for any terminal width)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phoenix import api
    from phoenix.engine import DeployResult
    from phoenix.records import DeployRecord
    from phoenix.spec import Spec


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Plain aligned columns: stable for grep/awk and for any terminal width."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m{value % 60:04.1f}s"


def deploy_text(result: DeployResult) -> list[str]:
    lines = [
        f"{result.app}: {result.action} {result.outcome} in {result.region}"
        f" ({result.deploy_id})",
        f"  release   {result.release}",
        f"  previous  {result.previous_release or 'none'}",
        f"  nodes     {len(result.nodes)}"
        + (f": {', '.join(result.nodes)}" if result.nodes else ""),
        f"  steps     {result.steps} in {_seconds(result.seconds)}",
    ]
    if result.reason:
        lines.append(f"  reason    {result.reason}")
    if result.endpoint and result.outcome in ("succeeded", "unchanged"):
        lines.append(f"  url       {result.endpoint}")
    if result.dns is not None:
        lines.append(f"  dns       {result.dns}")
    if len(result.attempts) > 1 or any(a.outcome == "failed" for a in result.attempts):
        lines.append("  regions tried:")
        lines.extend(f"    {number}. {attempt.describe()}"
                     for number, attempt in enumerate(result.attempts, 1))
    lines.extend(_hooks_text(result))
    return lines


def _hooks_text(result: DeployResult) -> list[str]:
    """The hooks a run ran: counted by moment and outcome (a deploy of many nodes runs
    many), then each one that did not simply succeed on its own line, with why."""
    if not result.hooks:
        return []
    counts: dict[tuple[str, str], int] = {}
    for run in result.hooks:
        counts[(run.moment, run.outcome)] = counts.get((run.moment, run.outcome), 0) + 1
    lines = ["  hooks     " + "; ".join(f"{moment} {count} {outcome}"
                                        for (moment, outcome), count in counts.items())]
    lines.extend(f"    ! {run.describe()}" for run in result.hooks
                 if run.outcome in ("failed", "warned"))
    return lines


def plan_text(report: api.PlanReport) -> list[str]:
    built = "new: deploy builds it" if report.new_release else "already built"
    lines = [
        f"{report.app} in {report.region}",
        f"  release   {report.release} ({built})",
        f"  serving   {report.serving_release or 'nothing'}",
    ]
    if report.converged:
        lines.append(f"  nothing to do: {report.release} already serves as the spec says")
        return lines
    if report.steps:
        lines.append("  first steps:")
        lines.extend(f"    - {step}" for step in report.steps)
    if report.waiting_for:
        lines.append("  waiting for:")
        lines.extend(f"    - {item}" for item in report.waiting_for)
    if not report.steps and not report.waiting_for:
        lines.append("  nothing to do")
    return lines


def status_text(spec: Spec, report: api.StatusReport, checked: bool) -> list[str]:
    lines = [report.app]
    for number, region in enumerate(report.regions):
        label = f"{region.region} (primary)" if number == 0 else region.region
        if region.dns_points_here:
            label += " [DNS points here]"
        if region.error is not None:
            lines.append(f"{label}: could not be read: {region.error}")
            continue
        serving = f"{region.serving_release} serves" if region.serving_release else "nothing serves"
        lines.append(f"{label}: {serving}, {len(region.nodes)} server(s)")
        if region.endpoint and region.serving_release:
            lines.append(f"  url {region.endpoint}")
        if region.nodes:
            rows = [
                [
                    node.name,
                    node.release,
                    node.state,
                    node.address or "-",
                    _health_cell(node, checked),
                    node.member or "-",
                    str(node.lease) if node.lease is not None else "-",
                    node.fault or "-",
                ]
                for node in region.nodes
            ]
            headers = ["NAME", "RELEASE", "STATE", "ADDRESS", "HEALTH", "POOL", "LEASE",
                       "FAULT"]
            lines.extend(table(headers, rows))
        for member in region.stray_members:
            lines.append(f"  stray pool member without a server: {member}")
    if spec.dns is not None:
        target = f" ({report.serving_region} serves)" if report.serving_region else ""
        lines.append(
            f"dns {spec.dns.record}.{spec.dns.zone}: {report.dns or 'not set'}{target}"
        )
    if report.last_move:
        lines.append(f"last region move: {report.last_move}")
    lines.append(f"lock: held by {report.lock_holder}" if report.lock_holder else "lock: free")
    if report.problems:
        lines.append(f"problems ({len(report.problems)}):")
        lines.extend(f"  - {problem}" for problem in report.problems)
    else:
        lines.append("problems: none")
    return lines


def _health_cell(node: api.NodeStatus, checked: bool) -> str:
    if not checked:
        return "-"
    if node.health in ("HEALTHY", "UNKNOWN"):
        return node.health
    return f"{node.health} ({node.health_detail})"


def history_text(app_name: str, records: Sequence[DeployRecord]) -> list[str]:
    if not records:
        return [f"no deploys of {app_name} recorded yet"]
    rows = [
        [
            _when(record.started_at),
            record.action,
            record.release,
            record.region,
            record.outcome,
            record.previous_release or "-",
            str(record.lease) if record.lease is not None else "-",
            record.reason or "",
        ]
        for record in records
    ]
    # LEASE: the lease generation the actor held, so that who did what is plain even
    # when two actors overlapped.
    headers = ["STARTED (UTC)", "ACTION", "RELEASE", "REGION", "OUTCOME", "PREVIOUS", "LEASE",
               "REASON"]
    return table(headers, rows, indent="")


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def destroy_text(result: api.DestroyResult) -> list[str]:
    if not result.deleted_nodes and not result.removed_members and not result.purged_records:
        return [f"nothing to destroy: {result.app} has no servers or pool members"]
    lines = [
        f"destroyed {result.app}: {len(result.deleted_nodes)} server(s) deleted,"
        f" {len(result.removed_members)} pool member(s) removed"
        + (f", {result.purged_records} record(s) purged" if result.purged_records else "")
    ]
    lines.extend(f"  - {name}" for name in result.deleted_nodes)
    return lines
