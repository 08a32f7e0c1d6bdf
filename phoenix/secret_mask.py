"""The one way Phoenix hides secret values in text: logs, CLI output, job summaries.

Every occurrence of every secret is found first, in each spelling it can take in
output (as is, escaped inside a JSON string, escaped inside a ``repr``), and the spans
are merged before anything is replaced: a secret inside or overlapping another
(``pass`` in ``password``, ``abc`` and ``bcd`` in ``abcd``) never leaves part of either
showing, which replacing one secret after another (or a regex alternation) would.
Standard library only: the CLI masks its output without loading the library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

REDACTED = "***"
"""What a secret is replaced with."""


def spellings(secret: str) -> set[str]:
    """``secret`` as it may appear in output: raw, in a JSON string, in a ``repr``."""
    return {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]} - {""}


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each non-empty secret (in each of its
    ``spellings``) replaced by ``***``; overlapping or touching occurrences merge."""
    spans: list[tuple[int, int]] = []
    for spelling in {s for secret in secrets if secret for s in spellings(secret)}:
        start = text.find(spelling)
        while start != -1:
            spans.append((start, start + len(spelling)))
            start = text.find(spelling, start + 1)
    if not spans:
        return text
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    pieces: list[str] = []
    position = 0
    for start, end in merged:
        pieces.append(text[position:start])
        pieces.append(REDACTED)
        position = end
    pieces.append(text[position:])
    return "".join(pieces)
