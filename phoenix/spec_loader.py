"""Load ``phoenix.yaml`` into a :class:`~phoenix.spec.Spec`, reporting every problem by line.

A deploy spec is edited by hand and read in CI, where the only feedback is a log. So one
run reports *all* the problems in the file, each as ``file:line: field: message`` that an
editor can jump to, instead of a pydantic traceback or the first error only.

Pydantic knows field paths but not lines, so the document is composed into YAML nodes
first and a map from key path to line is built from the node marks; every validation
error is placed at the line of the deepest part of its path that exists in the file.
The same pass catches duplicate keys, which PyYAML would otherwise silently let the last
one win. YAML 1.1 timestamps are not resolved: a value like ``2024-05-01`` stays a
string, which is what a template variable wants and what every spec field expects.

After the model validates, template variables are resolved (``env`` from the
environment, ``file`` relative to the spec) and the template's existence is checked.
Secret values never appear in a message: problems name fields, variables and paths.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from phoenix.environments import (
    ENVIRONMENTS_KEY,
    NAME_PATTERN,
    NAME_RULE,
    deep_merge,
    instance_names,
    overlay_file,
    overlay_files,
    valid_name,
)
from phoenix.errors import SpecError
from phoenix.input_files import InputFileError, read_var_file, resolve_inside
from phoenix.model_paths import field_names_at
from phoenix.spec import SecretVar, Spec

__all__ = ["load_spec", "spec_json_schema"]

KeyPath = tuple[Any, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_INT_TAG = "tag:yaml.org,2002:int"
# A spec is a few hundred values and a few kilobytes. These bounds keep a hostile or
# broken file (an alias bomb, thousands of nested brackets, a huge file) from hanging or
# crashing a command: each is refused fast, with its place, as a spec error.
_MAX_BYTES = 1024 * 1024
_MAX_NODES = 100_000  # values after expanding every alias
_MAX_DEPTH = 64  # nested mappings and lists
_MAX_INT_DIGITS = 100
# Echoing a long input back makes a message harder to read, not easier.
_MAX_ECHO = 60


class _Refused(yaml.MarkedYAMLError):
    """A document past one of the loader's bounds (reported without "syntax error")."""


class _SpecYamlLoader(yaml.SafeLoader):
    """SafeLoader without timestamp resolution (dates stay strings), and with bounds.

    PyYAML composes recursively and expands aliases only when the data is built (and
    every walk of that data then pays the expansion again), so the composer counts
    while it composes: the nesting depth, and the number of values the document stands
    for once each alias is replaced by what it names. An alias to its own anchor's
    unfinished node (recursive data) is refused too.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0  # values so far, each alias counted as its whole target
        self._sizes: dict[int, int] = {}  # id(finished node) -> its expanded size

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise _Refused(
                    None,
                    None,
                    f"the alias *{event.anchor} is inside its own anchor (recursive data"
                    " is not supported)",
                    mark,
                )
            self._count(size, mark, f"the alias *{event.anchor}")
            return node
        if self._depth >= _MAX_DEPTH:
            raise _Refused(
                None,
                None,
                f"nested more than {_MAX_DEPTH} levels deep; a spec needs only a few",
                mark,
            )
        self._depth += 1
        start = self._expanded
        try:
            self._count(1, mark, "this value")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._expanded - start
        return node

    def _count(self, size: int, mark: Any, what: str) -> None:
        self._expanded += size
        if self._expanded > _MAX_NODES:
            raise _Refused(
                None,
                None,
                f"{what} takes the document past {_MAX_NODES} values once aliases are"
                " expanded; a spec needs far fewer (an alias bomb?)",
                mark,
            )

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        # Python refuses to convert very long digit strings with a bare ValueError.
        if len(str(node.value)) > _MAX_INT_DIGITS:
            raise _Refused(
                None, None, f"a number longer than {_MAX_INT_DIGITS} digits", node.start_mark
            )
        return int(super().construct_yaml_int(node))


_SpecYamlLoader.add_constructor(_INT_TAG, _SpecYamlLoader.construct_yaml_int)
_SpecYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_spec(
    path: str | Path, *, environ: Mapping[str, str] | None = None, env: str | None = None
) -> Spec:
    """Read, validate and resolve the spec at ``path``; with ``env``, that environment's
    overlays merged over it (``phoenix.environments``).

    ``environ`` supplies ``env`` variables (default: ``os.environ``). Raises
    :class:`~phoenix.errors.SpecError` listing every problem found, each as
    ``file:line: field: message`` with ``file`` as the caller spelt ``path`` (or the
    environment's file beside it, for what that file set).
    """
    file = str(path)
    spec_path = Path(path)
    document = _parse(_read(spec_path, file), file)
    problems = list(document.problems)
    overlays = _take_environments(document, file, problems)
    environments = tuple(sorted(set(overlays) | set(overlay_files(spec_path))))
    instances = _instance_apps(document.data.get("app"), overlays, spec_path, environments)
    if env is not None:
        _apply_environment(document, overlays, env, spec_path, environments, problems)
    try:
        spec = Spec.model_validate(document.data)
    except ValidationError as exc:
        problems.extend(_validation_problems(exc, document, file))
        raise SpecError(_in_line_order(problems)) from None
    if problems:  # duplicate keys: the data validated, but it is not what the file says
        raise SpecError(_in_line_order(problems))

    base_dir = spec_path.parent
    resolved, secret_names = _resolve_vars(
        spec, base_dir, os.environ if environ is None else environ, document, file, problems
    )
    problems.extend(_folder_problems(spec, base_dir, document, file))
    if problems:
        raise SpecError(_in_line_order(problems))
    return spec.attach(spec_path, resolved, frozenset(secret_names),
                       environment=env, environments=environments, instances=instances)


def _read(spec_path: Path, file: str) -> str:
    try:
        with spec_path.open("rb") as stream:
            raw = stream.read(_MAX_BYTES + 1)
        if len(raw) > _MAX_BYTES:
            raise SpecError(
                [
                    f"{file}: the file is larger than {_MAX_BYTES // 1024} KiB; a spec is a"
                    " few kilobytes (is this the right file?)"
                ]
            )
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError([f"{file}: cannot read: not UTF-8 text"]) from None
    except OSError as exc:
        raise SpecError([f"{file}: cannot read: {exc.strerror or exc}"]) from None


# --- environments ----------------------------------------------------------------------


def _take_environments(
    document: _Document, file: str, problems: list[_Problem]
) -> dict[str, dict[str, Any]]:
    """Remove ``environments:`` from the document (it is not part of any instance's spec,
    so an overlay's change never changes another environment's release) and return the
    well-formed overlays by name; a malformed one is a problem at its line."""
    data = document.data
    if ENVIRONMENTS_KEY not in data:
        return {}
    given = data.pop(ENVIRONMENTS_KEY)
    where = (ENVIRONMENTS_KEY,)
    if given is None:
        return {}
    if not isinstance(given, dict):
        problems.append(_problem(file, document.line_of(where), ENVIRONMENTS_KEY,
                                 "expected a mapping of environment name to the fields it"
                                 f" changes (staging: {{count: 1}}), got {_kind(given)}"))
        return {}
    overlays: dict[str, dict[str, Any]] = {}
    for name, overlay in given.items():
        at = (*where, name)
        line, dotted = document.line_of(at), document.dotted(at)
        if not valid_name(name):
            problems.append(_problem(file, line, dotted,
                                     f"invalid environment name; use {NAME_RULE}"))
        elif overlay is not None and not isinstance(overlay, dict):
            problems.append(_problem(file, line, dotted, "expected a mapping of the fields"
                                     f" this environment changes, got {_kind(overlay)}"))
        elif isinstance(overlay, dict) and ENVIRONMENTS_KEY in overlay:
            problems.append(_problem(file, document.line_of((*at, ENVIRONMENTS_KEY)),
                                     f"{dotted}.{ENVIRONMENTS_KEY}",
                                     "an environment cannot define environments"))
        else:
            overlays[name] = overlay or {}
    return overlays


def _instance_apps(
    base_app: Any, overlays: dict[str, dict[str, Any]], spec_path: Path,
    environments: tuple[str, ...],
) -> tuple[str, ...]:
    """The app name of the base spec and of every environment: what shares this spec's
    golden images (``image prune`` keeps what any of them could roll back to). Read
    leniently: another environment's broken file must not stop this one's command."""
    if not isinstance(base_app, str):
        return ()
    apps = [base_app]
    for env in environments:
        app = overlays.get(env, {}).get("app")
        beside = overlay_file(spec_path, env)
        with contextlib.suppress(SpecError, AttributeError):
            if beside.is_file():
                app = _parse(_read(beside, str(beside)), str(beside)).data.get("app", app)
        apps.append(app if isinstance(app, str) else f"{base_app}-{env}")
    return tuple(dict.fromkeys(apps))


def _apply_environment(
    document: _Document,
    overlays: dict[str, dict[str, Any]],
    env: str,
    spec_path: Path,
    environments: tuple[str, ...],
    problems: list[_Problem],
) -> None:
    """Merge environment ``env`` over the document: its ``environments:`` overlay, then
    the file beside the spec, then the names that make it its own instance; each value
    keeps the line (and file) it came from."""
    file = str(spec_path)
    if not valid_name(env):
        raise SpecError([f"--env {env[:_MAX_ECHO]!r}: not an environment name; use"
                         f" {NAME_RULE}"])
    beside = overlay_file(spec_path, env)
    if env not in overlays and not beside.is_file():
        known = ", ".join(environments) or "none"
        raise SpecError([f"{file}: --env {env}: no such environment (defined: {known}); add"
                         f" environments: {{{env}: {{...}}}} to the spec, or a {beside.name}"
                         " beside it"])
    base = document.data
    overlay = overlays.get(env, {})
    _merge_into(document, overlay, document, (ENVIRONMENTS_KEY, env), file)
    added: dict[str, Any] = {}
    if beside.is_file():
        side_file = str(beside)
        side = _parse(_read(beside, side_file), side_file)
        problems.extend(side.problems)
        if ENVIRONMENTS_KEY in side.data:
            problems.append(_problem(side_file, side.line_of((ENVIRONMENTS_KEY,)),
                                     ENVIRONMENTS_KEY, "an environment's file cannot define"
                                     " environments; put them in the spec"))
            side.data.pop(ENVIRONMENTS_KEY)
        added = side.data
        _merge_into(document, added, side, (), side_file)
    document.data = deep_merge(document.data, instance_names(base, deep_merge(overlay, added),
                                                             env))


def _merge_into(
    document: _Document, overlay: dict[str, Any], source: _Document, prefix: KeyPath,
    file: str, at: KeyPath = (),
) -> None:
    """Merge ``overlay`` (found at ``prefix`` in ``source``, from ``file``) into the
    document at ``at``: its data, and the lines of what it replaced."""
    target = document.data
    for part in at:
        target = target[part]
    for key, value in overlay.items():
        path, found = (*at, key), (*prefix, *at, key)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(document, value, source, prefix, file, path)
            continue
        target[key] = value
        document.forget(path)
        for known, line in list(source.lines.items()):
            if known[: len(found)] == found:
                moved = (*path, *known[len(found):])
                document.lines[moved] = line
                document.files[moved] = file
        document.sequences.update([(*path, *known[len(found):]) for known in source.sequences
                                   if known[: len(found)] == found])


def _folder_problems(
    spec: Spec, base_dir: Path, document: _Document, spec_file: str
) -> list[_Problem]:
    """The template and ``image.path`` must be inside the spec's folder: a spec from a
    pull request must not make Phoenix read (and ship to nodes) a file of the machine."""
    problems: list[_Problem] = []
    named: list[tuple[KeyPath, str, str]] = [(("template",), spec.template, "file")]
    if spec.image.path is not None:
        named.append((("image", "path"), spec.image.path, "directory"))
    if spec.gates.load_test is not None:
        named.append((("gates", "load_test", "locustfile"), spec.gates.load_test.locustfile,
                      "file"))
    for path, name, kind in named:
        line, field = document.line_of(path), ".".join(map(str, path))
        file = document.file_of(path, spec_file)
        try:
            target = resolve_inside(base_dir, name)
        except InputFileError as exc:
            problems.append(_problem(file, line, field, str(exc)))
            continue
        if not target.exists():
            problems.append(_problem(file, line, field, f"no such {kind} {target}"))
        elif kind == "file" and not target.is_file():
            problems.append(_problem(file, line, field, f"not a file: {target}"))
        elif kind == "directory" and not target.is_dir():
            problems.append(_problem(file, line, field, f"not a directory: {target}"))
    return problems


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``phoenix.yaml`` (printed by ``phoenix schema``): the spec's
    fields, plus ``environments`` (which the loader merges and removes before the spec's
    model sees it)."""
    schema = Spec.model_json_schema()
    schema["properties"][ENVIRONMENTS_KEY] = {
        "type": "object",
        "description": "overlays by environment name (--env NAME), deep-merged over the"
        " spec; each environment is its own instance of the app",
        "propertyNames": {"pattern": NAME_PATTERN},
        "additionalProperties": {"type": ["object", "null"]},
    }
    return schema


# --- YAML: data, line map, duplicate keys ---------------------------------------------


@dataclass
class _Document:
    """The parsed file: its data plus where each key path sits in the file."""

    data: Any = None
    lines: dict[KeyPath, int] = field(default_factory=dict)
    sequences: set[KeyPath] = field(default_factory=set)
    problems: list[_Problem] = field(default_factory=list)
    # Key paths set by another file (an environment's ``phoenix.staging.yaml``): its name.
    files: dict[KeyPath, str] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int:
        """The line of the deepest prefix of ``path`` present in the file (1 at the top)."""
        return self.lines[self.existing_prefix(path)]

    def file_of(self, path: KeyPath, default: str) -> str:
        """The file that set ``path`` (its deepest present prefix): ``default``, the spec,
        unless an environment's file did."""
        return self.files.get(self.existing_prefix(path), default)

    def forget(self, path: KeyPath) -> None:
        """Drop what is known of ``path`` and below (a later value replaces it)."""
        for known in [known for known in self.lines if known[: len(path)] == path]:
            del self.lines[known]
            self.files.pop(known, None)
        self.sequences.difference_update(
            [known for known in self.sequences if known[: len(path)] == path])

    def existing_prefix(self, path: KeyPath) -> KeyPath:
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return path[:end]
        return ()

    def dotted(self, path: KeyPath) -> str:
        """``regions[1]``-style name of a key path."""
        text = ""
        for depth, part in enumerate(path):
            if path[:depth] in self.sequences and isinstance(part, int):
                text += f"[{part}]"
            else:
                text += f".{part}" if text else str(part)
        return text


def _parse(text: str, file: str) -> _Document:
    """Compose and construct one YAML document; raise SpecError if it is not a mapping."""
    loader = _SpecYamlLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise SpecError(
                [
                    f"{file}:1: the file is empty; expected a mapping of spec fields"
                    " (app, regions, image, ...)"
                ]
            )
        data = loader.construct_document(root)
        document = _Document(data=data, lines={(): 1})
        _LineMapper(loader, document, file).walk(root, ())
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_yaml_problem(exc, file)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"{file}: YAML error: {exc}"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError(
            [
                f"{file}:{root.start_mark.line + 1}: expected a mapping of spec fields"
                f" (app, regions, image, ...) at the top level, got {_kind(data)}"
            ]
        )
    return document


def _yaml_problem(exc: yaml.MarkedYAMLError, file: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{file}:{mark.line + 1}" if mark is not None else file
    what = exc.problem or exc.context or "invalid YAML"
    if isinstance(exc, _Refused):
        return f"{where}: {what}"
    if isinstance(exc, yaml.constructor.ConstructorError):
        return f"{where}: YAML error: {what}"
    return f"{where}: YAML syntax error: {what}"


class _LineMapper:
    """Walks composed nodes, recording the line of each key path and duplicate keys."""

    def __init__(self, loader: _SpecYamlLoader, document: _Document, file: str) -> None:
        self._loader = loader
        self._document = document
        self._file = file
        self._visited = 0
        self._stack: set[int] = set()  # node ids being walked: recursive aliases end here

    def walk(self, node: yaml.Node, path: KeyPath) -> None:
        self._visited += 1
        if self._visited > _MAX_NODES or id(node) in self._stack:
            return
        self._stack.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                self._walk_mapping(node, path)
            elif isinstance(node, yaml.SequenceNode):
                self._document.sequences.add(path)
                for index, item in enumerate(node.value):
                    self._document.lines[(*path, index)] = item.start_mark.line + 1
                    self.walk(item, (*path, index))
        finally:
            self._stack.discard(id(node))

    def _walk_mapping(self, node: yaml.MappingNode, path: KeyPath) -> None:
        explicit, merged = _entries(node)
        seen: set[Any] = set()
        for key_node, value_node in explicit:
            key = self._key(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                self._document.problems.append(
                    _problem(self._file, line, self._document.dotted((*path, key)), "duplicate key")
                )
                # PyYAML keeps the last value, so forget the first one's lines.
                self._document.forget((*path, key))
            seen.add(key)
            self._document.lines[(*path, key)] = line
            self.walk(value_node, (*path, key))
        # Merged (``<<: *anchor``) keys fill in only what the mapping did not set itself.
        for key_node, value_node in merged:
            key = self._key(key_node)
            if key not in seen:
                seen.add(key)
                self._document.lines[(*path, key)] = key_node.start_mark.line + 1
                self.walk(value_node, (*path, key))

    def _key(self, key_node: yaml.Node) -> Any:
        # Construct the key as PyYAML will in the data, so ``1`` and ``0x1`` collide and
        # paths match pydantic's error locations.
        if isinstance(key_node, yaml.ScalarNode):
            try:
                key = self._loader.construct_object(key_node, deep=True)
                hash(key)
                return key
            except (yaml.YAMLError, TypeError):
                pass
        return ("<complex key>", id(key_node))


def _entries(
    node: yaml.MappingNode,
) -> tuple[list[tuple[yaml.Node, yaml.Node]], list[tuple[yaml.Node, yaml.Node]]]:
    """A mapping's own entries, and the entries it merges in, in PyYAML's precedence."""
    explicit: list[tuple[yaml.Node, yaml.Node]] = []
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE_TAG:
            explicit.append((key_node, value_node))
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if isinstance(source, yaml.MappingNode):
                own, inherited = _entries(source)
                merged.extend(own + inherited)
    return explicit, merged


# --- validation errors -> problems ----------------------------------------------------


def _validation_problems(
    exc: ValidationError, document: _Document, spec_file: str
) -> list[_Problem]:
    problems: list[_Problem] = []
    # Errors from every member of a union that all failed, grouped by where they point.
    union_misses: dict[tuple[str, int, str], list[str]] = {}
    for error in exc.errors():
        loc = error["loc"]
        # A cross-field check on a model names the field it is about (``Spec._canary_fits``).
        at = (error.get("ctx") or {}).get("at")
        if isinstance(at, str):
            loc = (*loc, *at.split("."))
        present = _present_path(loc[:-1] if error["type"] == "missing" else loc, document)
        line = document.lines[present]
        file = document.file_of(present, spec_file)
        if error["type"] == "missing":
            # Name the missing field itself, at its parent's line.
            name = document.dotted((*present, loc[-1]))
            problems.append(_problem(file, line, name, "required field missing"))
            continue
        name = document.dotted(present) or "(top level)"
        if error["type"] == "extra_forbidden":
            problems.append(_problem(file, line, name, _unknown_key_message(tuple(loc))))
        elif loc and loc[-1] == "[key]":
            problems.append(_problem(file, line, name, "invalid key: " + _message(error, present)))
        elif len(present) < len(loc):  # a union member's tag is in the location
            union_misses.setdefault((file, line, name), []).append(_message(error, present))
        else:
            problems.append(_problem(file, line, name, _message(error, present)))
    for (file, line, name), messages in union_misses.items():
        distinct = list(dict.fromkeys(messages))
        message = distinct[0] if len(distinct) == 1 else "none of these fit: " + "; ".join(distinct)
        problems.append(_problem(file, line, name, message))
    return problems


def _present_path(loc: tuple[int | str, ...], document: _Document) -> KeyPath:
    """The parts of pydantic's location that are in the file (union tags are not)."""
    path: KeyPath = ()
    for part in loc:
        if (*path, part) in document.lines:
            path = (*path, part)
    return path


def _message(error: ErrorDetails, path: KeyPath) -> str:
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    # Echo what was given, unless the validator already did or it may be a secret.
    if (
        error["type"] != "value_error"
        and path[:1] != ("vars",)
        and "got " not in message
        and (value is None or isinstance(value, str | int | float | bool))
        and len(repr(value)) <= _MAX_ECHO
    ):
        message += f", got {value!r}"
    return message


def _unknown_key_message(loc: tuple[int | str, ...]) -> str:
    """``loc`` is pydantic's location of the key: the file's path plus union tags."""
    key = loc[-1] if loc else ""
    allowed = sorted(field_names_at(Spec, loc[:-1]))
    # 0.65: a typo ("evn" 0.67 alike to "env", "intervall" 0.94) is suggested, an
    # unrelated word ("colour", 0.62 alike to "rollout") is not.
    suggestion = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.65)
    if suggestion:
        return f"unknown key; did you mean {suggestion[0]!r}?"
    if allowed:
        return f"unknown key; expected one of: {', '.join(allowed)}"
    return "unknown key"


# --- vars -----------------------------------------------------------------------------


def _resolve_vars(
    spec: Spec,
    base_dir: Path,
    environ: Mapping[str, str],
    document: _Document,
    spec_file: str,
    problems: list[_Problem],
) -> tuple[dict[str, Any], set[str]]:
    """Read ``env`` and ``file`` variables; problems name the variable, never its value."""
    resolved: dict[str, Any] = {}
    secret_names: set[str] = set()
    for name, var in spec.vars.items():
        if not isinstance(var, SecretVar):
            resolved[name] = var
            continue
        if var.secret:
            secret_names.add(name)
        where = ("vars", name)
        line = document.line_of(where)
        file = document.file_of(where, spec_file)
        field_name = document.dotted(where)
        if var.env is not None:
            if var.env in environ:
                resolved[name] = environ[var.env]
            else:
                problems.append(
                    _problem(
                        file,
                        line,
                        field_name,
                        f"environment variable {var.env} is not set; set it before running phoenix",
                    )
                )
        elif var.file is not None:
            # Inside the spec's folder only, a regular file, bounded (input_files.py).
            try:
                resolved[name] = _strip_one_newline(read_var_file(base_dir, var.file))
            except InputFileError as exc:
                problems.append(_problem(file, line, field_name, str(exc)))
        else:
            resolved[name] = var.value
    return resolved, secret_names


def _strip_one_newline(text: str) -> str:
    # Editors add a final newline to a secret file; it is not part of the secret.
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text


# --- helpers ------------------------------------------------------------------------


class _Problem(NamedTuple):
    line: int
    text: str


def _problem(file: str, line: int, name: str, message: str) -> _Problem:
    return _Problem(line, f"{file}:{line}: {name}: {message}")


def _in_line_order(problems: list[_Problem]) -> list[str]:
    """Problem texts sorted by line (stable), repeats dropped."""
    ordered = sorted(problems, key=lambda problem: problem.line)
    return list(dict.fromkeys(problem.text for problem in ordered))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string {value[:_MAX_ECHO]!r}"
    return f"a {type(value).__name__}"
