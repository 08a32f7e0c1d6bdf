"""The desired member list the OpenStack balancer sends in one batch member update
(``PUT /lbaas/pools/{id}/members``): a table of changes in, Octavia entries out. Pure,
no cloud; the batch against real Octavia is in the contract suite and
test_openstack_deploy.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from phoenix.model import MemberAction, MemberChange
from phoenix.providers.openstack.balancer import _desired_members, _member_body, _member_key

ADD, DRAIN, REMOVE = MemberAction.ADD, MemberAction.DRAIN, MemberAction.REMOVE


def entry(name: str, address: str, *, weight: int = 1, up: bool = True,
          **extra: Any) -> dict[str, Any]:
    return {"name": name, "address": address, "protocol_port": 8080, "weight": weight,
            "admin_state_up": up, "backup": False, **extra}


def pool(*entries: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {_member_key(e): e for e in entries}


def names(members: dict[tuple[str, int], dict[str, Any]]) -> dict[str, tuple[str, int]]:
    return {e["name"]: (e["address"], e["weight"]) for e in members.values()}


@pytest.mark.parametrize(("before", "changes", "after"), [
    # adds, drains and removals of a blue-green switch, in one list
    ([entry("a", "192.0.2.1"), entry("b", "192.0.2.2")],
     [MemberChange(ADD, "c", "192.0.2.3", 8080), MemberChange(DRAIN, "a"),
      MemberChange(REMOVE, "b")],
     {"a": ("192.0.2.1", 0), "c": ("192.0.2.3", 1)}),
    # no-ops: adding a present member, draining a draining one, removing a missing one;
    # draining a missing member is ignored
    ([entry("a", "192.0.2.1"), entry("b", "192.0.2.2", weight=0)],
     [MemberChange(ADD, "a", "192.0.2.1", 8080), MemberChange(DRAIN, "b"),
      MemberChange(REMOVE, "x"), MemberChange(DRAIN, "y")],
     {"a": ("192.0.2.1", 1), "b": ("192.0.2.2", 0)}),
    # adding a draining (or disabled) member serves it again
    ([entry("a", "192.0.2.1", weight=0), entry("b", "192.0.2.2", up=False)],
     [MemberChange(ADD, "a", "192.0.2.1", 8080), MemberChange(ADD, "b", "192.0.2.2", 8080)],
     {"a": ("192.0.2.1", 1), "b": ("192.0.2.2", 1)}),
    # a same-named member at another address is replaced (Octavia cannot move one)
    ([entry("a", "192.0.2.1")], [MemberChange(ADD, "a", "192.0.2.9", 8080)],
     {"a": ("192.0.2.9", 1)}),
    # an address taken over by a new name (a reused IP) is renamed, not duplicated
    ([entry("old", "192.0.2.1")],
     [MemberChange(ADD, "new", "192.0.2.1", 8080), MemberChange(DRAIN, "old")],
     {"new": ("192.0.2.1", 1)}),
    # adds go in before removals, whatever the order given
    ([], [MemberChange(REMOVE, "a"), MemberChange(ADD, "a", "192.0.2.1", 8080)], {}),
])
def test_desired_members(before: list[dict[str, Any]], changes: list[MemberChange],
                         after: dict[str, tuple[str, int]]) -> None:
    current = pool(*before)
    frozen = {k: dict(v) for k, v in current.items()}
    assert names(_desired_members(current, changes)) == after
    assert current == frozen  # the read is left as it was


def test_unchanged_members_are_sent_back_exactly_as_they_are() -> None:
    """Octavia resets whatever a batch entry leaves out to its create default, so an
    untouched member's every set field goes back as read, and an unchanged rerun equals
    what was read (no PUT at all)."""
    raw = SimpleNamespace(
        name="other", address="2001:DB8::1", protocol_port=443, weight=7,
        is_admin_state_up=False, backup=True, subnet_id="s-1", monitor_address="192.0.2.7",
        monitor_port=9000, tags=["keep"], provisioning_status="ACTIVE",
    )
    body = _member_body(raw)
    assert body == {"name": "other", "address": "2001:DB8::1", "protocol_port": 443,
                    "weight": 7, "admin_state_up": False, "backup": True, "subnet_id": "s-1",
                    "monitor_address": "192.0.2.7", "monitor_port": 9000, "tags": ["keep"]}
    current = pool(body, entry("a", "192.0.2.1"))
    desired = _desired_members(current, [MemberChange(ADD, "a", "192.0.2.1", 8080),
                                         MemberChange(DRAIN, "gone")])
    assert desired == current
    # An address given in another spelling is the same member.
    assert _member_key(body) == ("2001:db8::1", 443)
