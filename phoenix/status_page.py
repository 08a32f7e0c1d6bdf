"""The read-only HTML page ``phoenix watch`` serves at ``/``: the facts ``phoenix status``
shows (apps, regions, nodes with health and age, the last thing watch did), for a person
with a browser. Everything shown is escaped: details carry text from clouds and specs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from phoenix.model import Node


@dataclass(frozen=True)
class NodeRow:
    node: Node
    health: str
    serving: bool


@dataclass(frozen=True)
class AppView:
    app: str
    region: str
    state: str
    detail: str
    release: str | None
    action: str | None
    outcome: str | None
    at: str
    nodes: Sequence[NodeRow]


def render(apps: Sequence[AppView], now: datetime, last_round: datetime | None) -> str:
    """The whole page; it refreshes itself every 10 seconds."""
    when = last_round.isoformat(timespec="seconds") if last_round else "not yet"
    sections = "\n".join(_app(view, now) for view in apps) or "<p>No app yet.</p>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<title>phoenix watch</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }}
.HEALTHY {{ color: #176b1e; }} .UNHEALTHY {{ color: #b00020; }} .UNKNOWN {{ color: #8a6d00; }}
</style>
</head>
<body>
<h1>phoenix watch</h1>
<p>Last round: <span id="last-round">{escape(when)}</span></p>
{sections}
</body>
</html>
"""


def _app(view: AppView, now: datetime) -> str:
    acted = (f"<p>Last action: {escape(view.action)} ({escape(view.outcome or '?')})</p>"
             if view.action else "")
    rows = "\n".join(
        f"<tr><td>{escape(row.node.name)}</td><td>{escape(row.node.release)}</td>"
        f"<td>{escape(row.node.state.value)}</td>"
        f'<td class="{escape(row.health)}">{escape(row.health)}</td>'
        f"<td>{'in the pool' if row.serving else '-'}</td>"
        f"<td>{_age(now, row.node.created_at)}</td></tr>"
        for row in sorted(view.nodes, key=lambda r: (r.node.index, r.node.name))
    )
    return f"""<section id="app-{escape(view.app)}">
<h2>{escape(view.app)} in {escape(view.region)}: {escape(view.state)}</h2>
<p>Serving release: {escape(view.release or "none")}. {escape(view.detail)}</p>
{acted}
<table>
<tr><th>Node</th><th>Release</th><th>State</th><th>Health</th><th>Pool</th><th>Age</th></tr>
{rows}
</table>
</section>"""


def _age(now: datetime, created: datetime) -> str:
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
