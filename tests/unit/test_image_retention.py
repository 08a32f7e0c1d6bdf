"""What ``image prune`` keeps, as properties over any set of images."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix.image_retention import ImageUse, choose
from phoenix.model import Image

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@st.composite
def regions_images(draw: st.DrawFn) -> list[ImageUse]:
    count = draw(st.integers(0, 12))
    rows = []
    for n in range(count):
        age = draw(st.none() | st.floats(0, 400 * 86400))
        created = None if age is None else NOW - timedelta(seconds=age)
        releases = tuple(f"web/r{k}" for k in range(draw(st.integers(0, 2))))
        rows.append(ImageUse(Image(f"img-{n}", "golden", created), "region-a", age,
                             releases, golden=draw(st.booleans())))
    return rows


@settings(max_examples=300, deadline=None)
@given(rows=regions_images(), keep=st.integers(1, 5))
def test_prune_never_deletes_what_may_be_needed(rows: list[ImageUse], keep: int) -> None:
    choices = choose(rows, keep)
    assert sorted(c.use.image.id for c in choices) == sorted(r.image.id for r in rows)
    doomed = [c.use for c in choices if c.delete]
    # Never an image a recorded release uses, one outside the spec's image:, or one of
    # unknown age.
    assert all(not u.used and u.golden and u.age_seconds is not None for u in doomed)
    # Never one of the `keep` newest golden images.
    golden = sorted((r for r in rows if r.golden),
                    key=lambda r: (r.age_seconds is not None, r.age_seconds or 0.0))
    newest = {r.image.id for r in golden[:keep]}
    assert not newest & {u.image.id for u in doomed}
    # And it does prune: every other unused golden image of known age goes.
    expected = {r.image.id for r in golden[keep:] if not r.used and r.age_seconds is not None}
    assert {u.image.id for u in doomed} == expected
    # Every choice says why.
    assert all(c.why for c in choices)


def test_keep_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="keep at least"):
        choose([], 0)


def test_one_region_at_a_time() -> None:
    rows = [ImageUse(Image("a", "golden", NOW), region, 0.0, (), True)
            for region in ("region-a", "region-b")]
    with pytest.raises(ValueError, match="one region"):
        choose(rows, 1)
