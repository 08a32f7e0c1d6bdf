"""One decoder of Phoenix's server tags (issue 16): every provider reads a server's app,
release, index and boot attempt through ``phoenix.model.tag_fields``."""

from __future__ import annotations

from pathlib import Path

import pytest

import phoenix
from phoenix.model import TAG_APP, TAG_ATTEMPT, TAG_INDEX, TAG_RELEASE, tag_fields

ROOT = Path(phoenix.__file__).parent


@pytest.mark.parametrize(("tags", "expected"), [
    ({TAG_APP: "web", TAG_RELEASE: "r1", TAG_INDEX: "2", TAG_ATTEMPT: "1"},
     {"app": "web", "release": "r1", "index": 2, "attempt": 1}),
    ({}, {"app": "", "release": "", "index": 0, "attempt": 0}),  # not made by Phoenix
    ({TAG_INDEX: "x", TAG_ATTEMPT: ""}, {"app": "", "release": "", "index": 0, "attempt": 0}),
])
def test_tags_decode_and_damaged_ones_read_as_zero(tags: dict[str, str],
                                                   expected: dict[str, object]) -> None:
    assert tag_fields(tags) == expected


def test_no_provider_decodes_the_tags_itself() -> None:
    """Only the model reads ``phoenix:index``/``phoenix:attempt`` back (the release
    writes them): four hand-written decoders had drifted apart before."""
    readers = [
        str(path.relative_to(ROOT)) for path in ROOT.rglob("*.py")
        if path.name != "model.py" and path.name != "release.py"
        and ("TAG_INDEX" in path.read_text() or "TAG_ATTEMPT" in path.read_text())
    ]
    assert readers == []
