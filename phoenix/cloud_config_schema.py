"""Check rendered ``#cloud-config`` user-data against cloud-init's own JSON schema.

``render.check_user_data`` proves the rendered text is YAML holding a mapping; this module
proves the mapping means what cloud-init expects: ``runcmd`` is a list, a
``write_files`` entry has a string ``path``, ``packages`` is not a number. A mistake of
that kind otherwise costs a whole boot cycle (cloud-init logs a warning, skips or
half-applies the module, and the health check times out minutes later).

- The schema is cloud-init's ``schema-cloud-config-v1.json`` (``CLOUD_INIT_VERSION``,
  JSON Schema draft-04), vendored in ``phoenix/schemas/`` with its licence notice and
  refreshed by ``scripts/refresh_cloud_config_schema.sh``. It is validated as cloud-init
  validates it: draft-04, format checks, and bytes (YAML ``!!binary``) count as strings.
- That schema allows unknown top-level keys (cloud-init ignores them; only 23.4 and later
  reject them). A typo such as ``runcmdd`` would pass it, so one check is Phoenix's own:
  a top-level key the schema does not know that is close to one it does is a problem.
- Only ``#cloud-config`` documents are checked. Other user-data (a ``#!`` script, MIME
  multipart, ``## template: jinja``) passes through unchecked: the schema describes none
  of them, and ``render.check_user_data`` decides which forms are accepted at all.
- jsonschema is imported and the schema compiled on first use, once per process: a CLI
  command that validates nothing never pays for them.
- Problems name the key path (``write_files.1.permissions``), the rendered line and, when
  it can be found, the template file and line. They never quote a value: rendered
  user-data holds secrets.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from phoenix.errors import TemplateError

CLOUD_INIT_VERSION = "22.4.2"
"""The cloud-init release whose schema is vendored (see ``phoenix/schemas/NOTICE``)."""

SCHEMA_RESOURCE = "schemas/schema-cloud-config-v1.json"
"""The vendored schema, relative to the ``phoenix`` package."""

_HEADER = "#cloud-config"
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Top-level keys cloud-init reads that its 22.4.2 schema does not list (merging, system
# and datasource configuration): never reported as a near miss of a schema key.
_KNOWN_OUTSIDE_SCHEMA = frozenset({
    "merge_how", "merge_type", "datasource", "datasource_list", "system_info", "output",
    "log_cfg", "logcfg", "network", "manual_cache_clean", "vendor_data2", "version",
    "apt_sources", "apt_mirror", "apt_mirror_search", "apt_proxy", "apt_preserve_sources_list",
})
_NEAR_MISS = 0.8  # difflib ratio: runcmdd/runcmd 0.92, packges/packages 0.93

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class SchemaProblem:
    """One way the rendered document breaks the schema."""

    path: KeyPath  # keys and list indexes from the top: ("write_files", 1, "permissions")
    message: str  # what is wrong; never quotes a value
    line: int | None  # the line of the rendered text (1-based) that holds the key, if known

    @property
    def key(self) -> str:
        """The dotted key path as cloud-init prints it: ``write_files.1.permissions``."""
        return ".".join(str(part) for part in self.path) or "(the whole document)"


@dataclass(frozen=True)
class LocatedProblem:
    """A ``SchemaProblem`` with where to fix it: a template file and line when found."""

    problem: SchemaProblem
    template: str
    line: int | None  # a line of ``template``; None when no template line matched

    def __str__(self) -> str:
        where = f"{self.template}:{self.line}" if self.line is not None else self.template
        rendered = f" (rendered line {self.problem.line})" if self.problem.line else ""
        return f"{where}: {self.problem.key}: {self.problem.message}{rendered}"


class CloudConfigSchemaError(TemplateError):
    """Rendered user-data breaks cloud-init's schema; ``problems`` lists every place.

    ``template`` and ``line`` are those of the first problem.
    """

    def __init__(self, problems: Sequence[LocatedProblem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        count = len(self.problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(
            f"the rendered #cloud-config breaks cloud-init {CLOUD_INIT_VERSION}'s schema"
            f" ({count} problem{'s' if count > 1 else ''}); cloud-init would skip or"
            " half-apply these modules on a real server — fix the template (`phoenix render`"
            f" shows the rendered text):\n{lines}",
            template=first.template,
            line=first.line,
        )


def schema_problems(text: str) -> list[SchemaProblem]:
    """Every schema problem of rendered user-data ``text``, sorted by key path.

    Returns nothing for user-data that is not a ``#cloud-config`` mapping of valid YAML
    (a ``#!`` script, MIME multipart, ``## template: jinja``): the schema describes only
    cloud-config, and ``render.check_user_data`` reports broken YAML with its line.
    """
    if text.split("\n", 1)[0].rstrip() != _HEADER:
        return []
    try:
        document = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError:
        return []
    if not isinstance(document, dict):
        return []
    found: dict[tuple[KeyPath, str], None] = {}  # ordered and without repeats
    for error in _errors(document):
        if _empty_list(error):
            continue
        found.setdefault(_explain(error), None)
    for key in document:
        message = _near_miss(key)
        if message:
            found.setdefault(((key,), message), None)
    if not found:
        return []
    root = _compose(text)
    return [
        SchemaProblem(path, message, _node_lines(root, path)[-1] if path else None)
        for path, message in sorted(found, key=lambda item: [str(p) for p in item[0]])
    ]


def check_cloud_config(
    text: str, *, template: str, sources: Mapping[str, str] | None = None
) -> None:
    """Raise ``CloudConfigSchemaError`` when rendered ``text`` breaks cloud-init's schema.

    ``template`` names the template in messages; ``sources`` (name as shown -> text, the
    top template first, e.g. from ``render.template_sources``) are searched for the line
    each problem was rendered from. Without a match a problem names the template and the
    rendered line. User-data that is not ``#cloud-config`` passes unchecked.
    """
    problems = schema_problems(text)
    if not problems:
        return
    named = dict(sources) if sources else {}
    rendered = text.split("\n")
    root = _compose(text)
    located = []
    for problem in problems:
        where = None
        # The key's own line first, then its parents' (a list item rendered from an
        # expression has no literal line in the template; its parent key usually has).
        for line in reversed(_node_lines(root, problem.path) if problem.path else []):
            where = _template_line(rendered, line, named)
            if where:
                break
        file, line = where if where else (template, None)
        located.append(LocatedProblem(problem, file, line))
    raise CloudConfigSchemaError(located)


# --- the schema --------------------------------------------------------------------------


def load_schema() -> dict[str, Any]:
    """The vendored schema as a dict (read from the installed package's data)."""
    data = resources.files("phoenix").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(data)
    return schema


def _empty_list(error: Any) -> bool:
    """An empty list where the schema wants items (``write_files: []``): what a template
    loop over nothing renders. cloud-init warns and runs nothing for it, which is what
    was meant, so it is not refused."""
    return bool(error.validator == "minItems" and error.instance == [])


def _errors(document: dict[Any, Any]) -> Iterable[Any]:
    """jsonschema's errors for ``document``, a mapping.

    The 22.4.2 schema is ``allOf`` one ``{type: object, properties: ...}`` per module, so
    each top-level key is checked against only the modules' subschemas for that key: the
    same errors as the whole schema gives, for about a tenth of the time (the whole
    schema costs ~1 ms a document, which a 1,000-node spec rendering a different text
    per node would feel). A refreshed schema of any other shape is checked whole.
    """
    by_key = _subschemas()
    if by_key is None:
        yield from _validator(None).iter_errors(document)
        return
    for key, value in document.items():
        if isinstance(key, str) and key in by_key:
            for error in _validator(key).iter_errors(value):
                error.path.appendleft(key)  # where the whole schema would have put it
                yield error


@functools.cache
def _validator(key: str | None) -> Any:
    """The compiled draft-04 validator of the whole schema (``None``) or of one top-level
    key's subschemas, made once per process on first use."""
    # Imported here: jsonschema (with referencing, rpds, attrs) costs ~50 ms at start-up.
    from jsonschema import Draft4Validator, FormatChecker
    from jsonschema.validators import extend

    # As cloud-init does: bytes (``content: !!binary ...``) are strings.
    types = Draft4Validator.TYPE_CHECKER.redefine(
        "string", lambda _checker, instance: isinstance(instance, str | bytes)
    )
    validator_class = extend(Draft4Validator, type_checker=types)
    schema = _schema()
    if key is not None:
        by_key = _subschemas() or {}
        schema = {"$schema": schema.get("$schema"), "$defs": schema.get("$defs", {}),
                  "allOf": by_key[key]}
    return validator_class(schema, format_checker=FormatChecker())


@functools.cache
def _schema() -> dict[str, Any]:
    return load_schema()


_MODULE_KEYWORDS = {"type", "properties", "additionalProperties", "description", "$comment"}


@functools.cache
def _subschemas() -> dict[str, list[dict[str, Any]]] | None:
    """Each top-level key's subschemas, one per module describing it; ``None`` when the
    schema is not the ``allOf`` of plain ``{type: object, properties}`` modules."""
    schema = _schema()
    if set(schema) - {"$schema", "$defs", "allOf"}:
        return None
    by_key: dict[str, list[dict[str, Any]]] = {}
    for part in schema.get("allOf", []):
        ref = part.get("$ref", "") if set(part) == {"$ref"} else ""
        if not ref.startswith("#/$defs/"):
            return None
        module = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        if (not isinstance(module, dict) or set(module) - _MODULE_KEYWORDS
                or module.get("type", "object") != "object"
                or module.get("additionalProperties", True) is not True):
            return None
        for key, subschema in module.get("properties", {}).items():
            by_key.setdefault(key, []).append(subschema)
    return by_key


@functools.cache
def _schema_keys() -> frozenset[str]:
    """The top-level keys the schema describes (each module's ``properties``)."""
    schema = _schema()
    keys: set[str] = set()
    for part in schema.get("allOf", []):
        ref = part.get("$ref", "")
        definition = schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {})
        keys.update(definition.get("properties", {}))
    keys.update(schema.get("properties", {}))
    return frozenset(keys)


def _near_miss(key: object) -> str | None:
    if not isinstance(key, str) or key in _KNOWN_OUTSIDE_SCHEMA:
        return None
    known = _schema_keys()
    if key in known:
        return None
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=_NEAR_MISS)
    if not close:
        return None
    return (
        f"unknown key (did you mean {close[0]!r}?); cloud-init ignores a top-level key it"
        " does not know, so this module would never run"
    )


# --- describing a jsonschema error without quoting the value ------------------------------


def _explain(error: Any) -> tuple[KeyPath, str]:
    """The key path and a message for one jsonschema ``ValidationError``."""
    validator, expected, instance = error.validator, error.validator_value, error.instance
    path: KeyPath = tuple(error.absolute_path)
    if validator in ("oneOf", "anyOf") and error.context:
        branch = _matching_branch(error.context)
        if branch is not None:
            return _explain(branch)
        kinds = _branch_kinds(error.context)
        if kinds:
            return path, f"must be {_or(kinds)}, not {_kind(instance)}"
        return path, "matches none of the forms the schema allows for this key"
    if validator == "oneOf":
        return path, "matches more than one of the forms the schema allows; make it one"
    if validator == "type":
        wanted = expected if isinstance(expected, list) else [expected]
        return path, f"must be {_or([_type_name(t) for t in wanted])}, not {_kind(instance)}"
    if validator == "required":
        missing = [key for key in expected if key not in instance]
        return path, f"missing required key{'s' if len(missing) > 1 else ''} {_keys(missing)}"
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        extra = [key for key in instance if key not in allowed
                 and not any(re.search(pattern, str(key)) for pattern in patterns)]
        hint = ""
        if allowed:
            close = [difflib.get_close_matches(str(key), allowed, n=1) for key in extra]
            guesses = sorted({match[0] for match in close if match})
            hint = f" (did you mean {_keys(guesses)}?)" if guesses else ""
            hint += f"; allowed: {_keys(allowed[:20])}{', ...' if len(allowed) > 20 else ''}"
        return path, f"unknown key{'s' if len(extra) > 1 else ''} {_keys(extra)}{hint}"
    if validator == "enum":
        return path, f"must be one of {', '.join(json.dumps(v, default=str) for v in expected)}"
    messages = {
        "minItems": f"must have at least {expected} item(s)",
        "maxItems": f"must have at most {expected} item(s)",
        "minLength": f"must be at least {expected} character(s) long",
        "maxLength": f"must be at most {expected} character(s) long",
        "minimum": f"must be at least {expected}",
        "maximum": f"must be at most {expected}",
        "pattern": f"must match the pattern {expected}",
        "format": f"must be a valid {expected}",
        "uniqueItems": "must not repeat an item",
        "minProperties": f"must have at least {expected} key(s)",
        "not": "is a form the schema forbids here",
    }
    return path, messages.get(validator, f"breaks the schema's {validator!r} rule")


_TYPES: dict[str, str] = {
    "array": "a list", "object": "a mapping", "string": "a string", "integer": "an integer",
    "number": "a number", "boolean": "true or false", "null": "empty (null)",
}



def _type_name(kind: object) -> str:
    return _TYPES.get(str(kind), str(kind))


def _matching_branch(context: Iterable[Any]) -> Any | None:
    """Of a oneOf/anyOf's failed alternatives, the one error to report when exactly one
    alternative has the value's type (its deeper error says what is wrong inside)."""
    by_branch: dict[Any, list[Any]] = {}
    for error in context:
        by_branch.setdefault(error.relative_schema_path[0], []).append(error)
    same_kind = [errors for errors in by_branch.values()
                 if not any(e.validator == "type" and not e.relative_path for e in errors)]
    if len(same_kind) != 1:
        return None
    return min(same_kind[0], key=lambda e: -len(e.absolute_path))


def _branch_kinds(context: Iterable[Any]) -> list[str]:
    kinds: list[str] = []
    for error in context:
        if error.validator == "type" and not error.relative_path:
            wanted = error.validator_value
            for kind in wanted if isinstance(wanted, list) else [wanted]:
                name = _type_name(kind)
                if name not in kinds:
                    kinds.append(name)
    return kinds


def _kind(value: object) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str | bytes):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        return "a date (quote it to make it a string)"
    return f"a {type(value).__name__}"


def _or(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _keys(keys: Iterable[object]) -> str:
    return ", ".join(repr(str(key)) for key in keys)


# --- finding the line ---------------------------------------------------------------------


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError:
        return None


def _node_lines(root: yaml.Node | None, path: KeyPath) -> list[int | None]:
    """The rendered line (1-based) of each step of ``path``: a mapping key's line, a list
    item's first line. Steps past what the node tree shows (merge keys) repeat the last."""
    lines: list[int | None] = [None]
    node = root
    for part in path:
        found: tuple[yaml.Node, int] | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:  # the last wins, as when loading
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    found = (value, key.start_mark.line + 1)
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and 0 <= part < len(node.value)):
            item = node.value[part]
            found = (item, item.start_mark.line + 1)
        if found is None:
            lines.append(lines[-1])
            node = None
            continue
        node, line = found
        lines.append(line)
    return lines[1:]


_KEY = re.compile(r"^(\s*(?:-\s+)*)([^\s#'\"{\[-][^:#]*|\"[^\"]*\"|'[^']*'):(?:\s|$)")


def _template_line(
    rendered: Sequence[str], line: int | None, sources: Mapping[str, str]
) -> tuple[str, int] | None:
    """The template file and line that rendered line ``line`` (1-based) came from, when
    the templates show it unambiguously: the same text, else the same ``key:`` at the
    same indentation, found once in the templates, or as often as in the rendered text
    (then the n-th rendered one is the n-th template one)."""
    if line is None or not 0 < line <= len(rendered) or not sources:
        return None
    target = rendered[line - 1].rstrip()
    key = _KEY.match(target)
    # The whole line, else its ``key:`` with the same indentation.
    for wanted, whole in ((target, True), (key.group(0).rstrip() if key else None, False)):
        if not wanted:
            continue
        hits = [(name, number) for name, text in sources.items()
                for number, candidate in enumerate(text.split("\n"), 1)
                if _same(candidate, wanted, whole)]
        if len(hits) == 1:
            return hits[0]
        if hits and len(hits) == sum(_same(c, wanted, whole) for c in rendered):
            return hits[sum(_same(c, wanted, whole) for c in rendered[: line - 1])]
    return None


def _same(candidate: str, wanted: str, whole: bool) -> bool:
    return candidate.rstrip() == wanted if whole else candidate.startswith(wanted)
