"""Which pydantic model fields a key path in a document leads to.

The spec loader and the provider options both say "unknown key; did you mean ...": for
that they walk from a root model along pydantic's error location (field names, list
indexes, dict keys, and the tags of tagged unions such as ``provider.memory.options``)
to the model(s) the offending mapping was validated against.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Tag


def unwrap_types(kinds: list[Any]) -> list[Any]:
    """Types with ``Annotated`` and unions unwrapped."""
    found: list[Any] = []
    for kind in kinds:
        origin = typing.get_origin(kind)
        if origin is typing.Annotated:
            found.extend(unwrap_types([typing.get_args(kind)[0]]))
        elif origin is typing.Union or origin is types.UnionType:
            found.extend(unwrap_types(list(typing.get_args(kind))))
        else:
            found.append(kind)
    return found


def field_names_at(root: type[BaseModel], loc: Sequence[int | str]) -> set[str]:
    """Field names of the model(s) the mapping at ``loc`` validates against; a union's
    tag in ``loc`` picks that member."""
    current: list[Any] = [root]
    for part in loc:
        tagged = _tagged(current, part)
        if tagged:
            current = tagged
            continue
        following: list[Any] = []
        for kind in unwrap_types(current):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                if isinstance(part, str) and part in kind.model_fields:
                    following.append(kind.model_fields[part].annotation)
            elif typing.get_origin(kind) is dict:
                following.append(typing.get_args(kind)[1])
            elif typing.get_origin(kind) is list and isinstance(part, int):
                following.append(typing.get_args(kind)[0])
        current = following
    return {
        name
        for kind in unwrap_types(current)
        if isinstance(kind, type) and issubclass(kind, BaseModel)
        for name in kind.model_fields
    }


def _tagged(kinds: list[Any], tag: int | str) -> list[Any]:
    """The members of a tagged union among ``kinds`` whose ``Tag`` is ``tag``."""
    found: list[Any] = []
    for kind in kinds:
        origin = typing.get_origin(kind)
        if origin is typing.Annotated:
            inner, *metadata = typing.get_args(kind)
            if any(isinstance(m, Tag) and m.tag == tag for m in metadata):
                found.append(inner)
            else:
                found.extend(_tagged([inner], tag))
        elif origin is typing.Union or origin is types.UnionType:
            found.extend(_tagged(list(typing.get_args(kind)), tag))
    return found
