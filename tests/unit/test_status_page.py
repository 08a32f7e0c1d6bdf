"""watch's status page escapes everything it shows (details carry cloud and spec text)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from phoenix.model import Node, NodeState
from phoenix.status_page import AppView, NodeRow, render

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_details_are_escaped_and_ages_are_short() -> None:
    node = Node(id="i-1", name="web-r1-a-0", region="r", app="web", release="r1-a", index=0,
                state=NodeState.ACTIVE, created_at=NOW - timedelta(hours=50))
    view = AppView("web", "r", "failed", 'cannot look: <script>alert("x")</script>', "r1-a",
                   "heal", "failed", NOW.isoformat(), [NodeRow(node, "UNHEALTHY", False)])

    page = render([view], NOW, NOW)

    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert '<td class="UNHEALTHY">UNHEALTHY</td><td>-</td><td>2d</td>' in page
    assert "Last action: heal (failed)" in page


def test_an_empty_watch_says_so() -> None:
    assert "No app yet." in render([], NOW, None)
    assert "not yet" in render([], NOW, None)
