"""Parse Phoenix's own source for the tests that read it (import graph, one helper).

CPython 3.11 checks its recursion bookkeeping while it builds the AST's Python objects,
and fails with ``SystemError: AST constructor recursion depth mismatch`` when the
recursion limit changes under it. A garbage-collected generator can do exactly that
mid-parse: hypothesis raises the limit for a test and restores it in a ``finally`` that
runs whenever the collector gets to the abandoned generator (seen once in a full run,
right after a hypothesis test). So the collector runs first, and not during the parse.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def no_finalizers() -> Iterator[None]:
    """Collect now, then keep the collector (and the finalizers it runs) off."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
