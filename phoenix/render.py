"""Render a node's cloud-init user-data from the spec's jinja2 template, and check it.

A mistake in user-data costs a whole boot cycle to notice: Nova accepts the server, it
boots, cloud-init fails or ignores the file, and the health check times out minutes later.
So everything that can be checked before a server exists is checked here, and every
failure is a ``TemplateError`` naming the file, the line and what to do.

- Templates run in jinja's sandbox with ``StrictUndefined``: a spec is shared input and a
  misspelt variable must stop the deploy, not render as an empty string.
- The rendered text must be ``#cloud-config`` YAML (a mapping) or a ``#!`` script, and it
  must fit Nova's user-data limit once base64-encoded.
- ``mask_secrets`` hides secret var values in output meant for people (``phoenix render``).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import (
    DictLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
)
from jinja2.environment import Environment
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from phoenix import secret_mask
from phoenix.errors import TemplateError
from phoenix.input_files import TEMPLATE_FILE_LIMIT, InputFileError, read_limited, resolve_inside

NOVA_USER_DATA_LIMIT = 65535
"""Nova's limit, in bytes, on the base64-encoded ``user_data`` of a server."""

_TEMPLATE_NAMES = ("app", "release", "region", "index", "vars")
_CLOUD_CONFIG = "#cloud-config"


@dataclass(frozen=True)
class RenderContext:
    """What a template sees: the node's identity plus the spec's resolved ``vars``."""

    app: str
    release: str
    region: str
    index: int
    vars: Mapping[str, Any]


def render_user_data(template_path: Path, context: RenderContext) -> str:
    """Render ``template_path`` for one node and return user-data that passed the checks.

    Raises ``TemplateError`` for a missing or unreadable template, a jinja syntax error,
    an undefined variable, an operation the sandbox forbids, any other failure while
    rendering, and anything ``check_user_data`` refuses.
    """
    shown = str(template_path)
    path = Path(os.path.abspath(template_path))
    return _render_checked(lambda: _load(path, shown), context, path, shown)


def render_recorded(
    sources: Mapping[str, str], name: str, context: RenderContext, *, shown: str
) -> str:
    """Render template ``name`` of a release record's ``sources`` (name -> text) for one
    node, from memory: a rollback writes no file anywhere (``shown`` names it in
    errors). Includes resolve among ``sources`` only."""
    items = tuple(sorted(sources.items()))
    return _render_checked(lambda: _compile_recorded(items, name), context, Path(name), shown)


def _render_checked(
    template: Callable[[], Template], context: RenderContext, path: Path, shown: str
) -> str:
    """Render one node's user-data with what a template sees, then check it."""
    try:
        text = template().render(
            app=context.app,
            release=context.release,
            region=context.region,
            index=context.index,
            vars=_scoped(context.vars, "vars"),
        )
    except TemplateError:
        raise  # already says where
    except Exception as exc:  # the template is user code: any failure is the template's
        raise _render_failure(exc, path, shown) from exc
    check_user_data(text, template=shown)
    return text


@functools.lru_cache(maxsize=16)
def _compile_recorded(items: tuple[tuple[str, str], ...], name: str) -> Template:
    environment = _configured(SandboxedEnvironment(
        loader=DictLoader(dict(items)),
        undefined=_Undefined,
        keep_trailing_newline=True,
        autoescape=False,
    ))
    return environment.get_template(name)


def check_user_data(text: str, *, template: str) -> None:
    """Refuse rendered user-data that cloud-init or Nova would not accept.

    Accepted: ``#cloud-config`` on the first line followed by YAML that is a mapping, or
    a script starting with ``#!``. Either way its base64 encoding must fit in
    ``NOVA_USER_DATA_LIMIT`` bytes. ``template`` names the source in error messages.
    """
    first_line = text.split("\n", 1)[0].rstrip()
    if first_line == _CLOUD_CONFIG:
        _check_size(text, template)
        _check_cloud_config(text, template)
    elif text.startswith("#!"):
        _check_size(text, template)
    else:
        raise TemplateError(
            f"the rendered user-data {_describe_start(text)}; cloud-init accepts two forms:"
            f" '{_CLOUD_CONFIG}' alone on the first line followed by YAML, or a script"
            " starting with '#!' — put one of them on the template's very first line",
            template=template,
        )


def template_sources(template_path: Path) -> dict[str, str]:
    """The template and every template it names in an include, import or extends tag,
    rendered or not (``{% if false %}``), by name relative to its folder.

    Names are resolved by the loader rendering uses, so a release records exactly what
    rendering reads. Raises ``TemplateError`` naming the file and line of a tag whose
    name leaves the folder (absolute, ``..``, a symlink out) or names a file that is not
    a readable regular file within ``TEMPLATE_FILE_LIMIT``. A missing file is skipped
    (``ignore missing`` allows it; rendering reports one it needs), as is a name
    computed at render time, which the loader checks when rendering.
    """
    path = Path(os.path.abspath(template_path))
    environment, loader = _environment(str(path.parent))
    sources: dict[str, str] = {}
    # (name as written, the file naming it as shown in messages, the tag's line)
    pending: list[tuple[str, str, int | None]] = [(path.name, str(template_path), None)]
    while pending:
        name, referrer, line = pending.pop()
        try:
            filename = loader.resolve(name)
            key = "/".join(split_template_path(name))
            if key in sources or not os.path.exists(filename):
                continue
            text, _, _ = loader.get_source(environment, name)
        except InputFileError as exc:
            raise TemplateError(str(exc), template=referrer, line=line) from None
        except _NotUtf8 as exc:
            raise _render_failure(exc, path, str(template_path)) from None
        sources[key] = text
        shown = str(template_path) if key == path.name else filename
        pending.extend((ref, shown, lineno) for ref, lineno in _named_templates(environment, text))
    return sources


def _named_templates(environment: Environment, text: str) -> list[tuple[str, int]]:
    """Each literal template name in ``text``'s include/import/extends tags, with its line."""
    try:
        tree = environment.parse(text)
    except TemplateSyntaxError:  # reported, with its line, by rendering
        return []
    found: list[tuple[str, int]] = []
    tags = (nodes.Extends, nodes.FromImport, nodes.Import, nodes.Include)
    for tag in tree.find_all(tags):
        if not isinstance(tag, tags):  # always true: narrows the type for mypy
            continue
        named = tag.template
        candidates = named.items if isinstance(named, nodes.List | nodes.Tuple) else [named]
        found.extend(
            (candidate.value, tag.lineno)
            for candidate in candidates
            if isinstance(candidate, nodes.Const) and isinstance(candidate.value, str)
        )
    return found


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with the secret var values hidden (``phoenix.secret_mask.mask``, the one
    masker logs and all CLI output use too)."""
    return secret_mask.mask(text, secrets)


# --- loading ------------------------------------------------------------------------------


class _NotUtf8(Exception):
    """A template (or an included one) is not UTF-8; carries where, for the message."""

    def __init__(self, filename: str, line: int) -> None:
        super().__init__(filename, line)
        self.filename = filename
        self.line = line


class _Utf8Loader(FileSystemLoader):
    """A ``FileSystemLoader`` for one folder that keeps every template inside it.

    On top of jinja's own rules (``/``-separated names, no ``..``) it refuses an absolute
    name and a symlink that leads out of the folder, refuses a file that is not a regular
    file or is larger than ``TEMPLATE_FILE_LIMIT``, and reports an undecodable file with
    its name and line. ``template_sources`` resolves names through this same loader, so
    what a release records is exactly what rendering reads.
    """

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        filename = self.resolve(template)
        if not os.path.exists(filename):
            raise TemplateNotFound(template)
        data = read_limited(Path(filename), limit=TEMPLATE_FILE_LIMIT)
        try:
            contents = data.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise _NotUtf8(filename, data[: exc.start].count(b"\n") + 1) from exc
        mtime = os.path.getmtime(filename)

        def uptodate() -> bool:
            try:
                return os.path.getmtime(filename) == mtime
            except OSError:
                return False

        return contents, filename, uptodate

    def resolve(self, template: str) -> str:
        """The path of template ``template`` in this loader's folder.

        Raises ``InputFileError`` for a name that leaves the folder.
        """
        if template.startswith("/"):
            raise InputFileError(
                f"{template!r} is an absolute path — name included templates relative to"
                f" the template's folder {self.searchpath[0]}"
            )
        try:
            pieces = split_template_path(template)
        except TemplateNotFound:
            raise InputFileError(
                f"{template!r} leaves the template's folder {self.searchpath[0]} — included"
                " templates must be inside it"
            ) from None
        # Checked through symlinks, but named as jinja names it (messages and the
        # traceback frames that carry template lines use this name).
        resolve_inside(Path(self.searchpath[0]), "/".join(pieces) or ".")
        return os.path.join(self.searchpath[0], *pieces)


class _Undefined(StrictUndefined):
    """``StrictUndefined`` whose message names the variable as the spec author wrote it."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        obj, name = self._undefined_obj, self._undefined_name
        if obj is missing:
            hint = _did_you_mean(str(name), _TEMPLATE_NAMES)
            return (
                f"undefined variable {name!r} — templates see {', '.join(_TEMPLATE_NAMES)};"
                f" a var from the spec is read as vars.{name}{hint}"
            )
        if isinstance(obj, _Scope):
            full = _child_name(obj._phoenix_name, name)
            hint = _did_you_mean(str(name), [str(key) for key in obj])
            return (
                f"undefined variable {full!r} — define it under vars: in the spec, or give"
                f" a fallback with {{{{ {full} | default(...) }}}}{hint}"
            )
        return f"{super()._undefined_message} — check the spelling of the expression"


class _Scope(dict[Any, Any]):
    """A copy of (part of) the spec's vars that knows its dotted name, for messages."""

    # Underscored so the sandbox hides it from templates (``vars.phoenix_name`` stays a var).
    __slots__ = ("_phoenix_name",)

    def __init__(self, items: Mapping[Any, Any], name: str) -> None:
        super().__init__(items)
        self._phoenix_name = name


def _scoped(value: Any, name: str) -> Any:
    """Copy ``value`` with every nested mapping made a ``_Scope`` that knows its name.

    A copy per render also means a template that mutates its vars cannot affect the
    next node's render.
    """
    if isinstance(value, Mapping):
        return _Scope({k: _scoped(v, _child_name(name, k)) for k, v in value.items()}, name)
    if isinstance(value, list | tuple):
        items = [_scoped(v, f"{name}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value


def _child_name(parent: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{parent}.{key}"
    return f"{parent}[{key!r}]"


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@functools.lru_cache(maxsize=16)
def _environment(directory: str) -> tuple[SandboxedEnvironment, _Utf8Loader]:
    loader = _Utf8Loader(directory, encoding="utf-8")
    environment = _configured(SandboxedEnvironment(
        loader=loader,
        undefined=_Undefined,
        keep_trailing_newline=True,
        autoescape=False,
        auto_reload=True,  # an included file edited between deploys is re-read
    ))
    return environment, loader


def _configured(environment: SandboxedEnvironment) -> SandboxedEnvironment:
    """What every template sees, from the spec's folder or from a release record."""
    environment.policies["json.dumps_function"] = _dumps_defined
    # ``{{ vars.x | quote }}``: one shell word whatever the value holds (runcmd, bootcmd).
    environment.filters["quote"] = lambda value: shlex.quote(str(value))
    return environment


def _dumps_defined(value: Any, **kwargs: Any) -> str:
    """``tojson`` that reports an undefined variable by name, as every other use does
    (plain ``json.dumps`` would fail with a TypeError about an ``_Undefined`` object)."""
    _fail_if_undefined(value)
    return json.dumps(value, **kwargs)


def _fail_if_undefined(value: Any) -> None:
    if isinstance(value, StrictUndefined):
        value._fail_with_undefined_error()
    elif isinstance(value, Mapping):
        for item in value.values():
            _fail_if_undefined(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _fail_if_undefined(item)


@functools.lru_cache(maxsize=64)
def _compile(path: str, mtime_ns: int, size: int) -> Template:
    # The key carries mtime and size so an edited template is recompiled. Loading
    # through the loader (not the environment's own cache) makes that recompile certain.
    del mtime_ns, size
    environment, loader = _environment(os.path.dirname(path))
    return loader.load(environment, os.path.basename(path), environment.make_globals(None))


def _load(path: Path, shown: str) -> Template:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise TemplateError(
            "template file not found — check template: in the spec (it is relative to the"
            " spec file)",
            template=shown,
        ) from None
    except OSError as exc:
        raise TemplateError(f"cannot read the template: {exc.strerror}", template=shown) from exc
    if not path.is_file():
        raise TemplateError(
            "the template is not a regular file — point template: in the spec at a file",
            template=shown,
        )
    try:
        return _compile(str(path), stat.st_mtime_ns, stat.st_size)
    except Exception as exc:
        raise _render_failure(exc, path, shown) from exc


# --- turning jinja's exceptions into TemplateError ---------------------------------------


def _render_failure(exc: Exception, path: Path, shown: str) -> TemplateError:
    """Translate a failure while compiling or rendering into a ``TemplateError``."""
    if isinstance(exc, _NotUtf8):
        return TemplateError(
            "the template is not valid UTF-8 text — save it as UTF-8",
            template=_shown_name(exc.filename, path, shown),
            line=exc.line,
        )
    if isinstance(exc, TemplateSyntaxError):
        return TemplateError(
            f"template syntax error: {exc.message or exc} — fix the jinja tag on this line",
            template=_shown_name(exc.filename or str(path), path, shown),
            line=exc.lineno,
        )
    filename, line = _template_frame(exc, path.parent)
    where = _shown_name(filename, path, shown) if filename else shown
    if isinstance(exc, UndefinedError):
        message = str(exc)
    elif isinstance(exc, SecurityError):
        message = (
            f"unsafe operation: {exc} Templates run in a sandbox; use only app, release,"
            " region, index, vars and jinja's filters"
        )
    elif isinstance(exc, TemplateNotFound):
        message = (
            f"included template {exc.name!r} not found — includes are looked up in {path.parent}"
        )
    elif isinstance(exc, InputFileError):
        message = str(exc)
    elif isinstance(exc, OSError):
        message = f"cannot read a template: {exc} — check the file and its permissions"
    else:
        message = f"rendering failed: {type(exc).__name__}: {exc} — fix the expression on this line"
    return TemplateError(message, template=where, line=line)


def _template_frame(exc: BaseException, directory: Path) -> tuple[str | None, int | None]:
    """Find the innermost traceback frame in a template file: its filename and line.

    Jinja rewrites tracebacks so frames of template code carry the template's filename
    and line, which are what a person needs to fix the template.
    """
    prefix = os.path.join(str(directory), "")
    found: tuple[str | None, int | None] = (None, None)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(prefix):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _shown_name(filename: str, path: Path, shown: str) -> str:
    """Name the top template as the caller did; an included one by its full path."""
    return shown if os.path.abspath(filename) == str(path) else filename


# --- checking the rendered output --------------------------------------------------------


def _check_size(text: str, template: str) -> None:
    raw = len(text.encode("utf-8"))
    encoded = 4 * ((raw + 2) // 3)  # the length of its base64 encoding
    if encoded > NOVA_USER_DATA_LIMIT:
        raise TemplateError(
            f"the rendered user-data is {encoded} bytes base64-encoded ({raw} bytes raw) but"
            f" Nova accepts at most {NOVA_USER_DATA_LIMIT} — move large files into the"
            " golden image or fetch them at boot",
            template=template,
        )


# libyaml's safe loader when PyYAML has it: parsing every node's user-data with the
# pure-Python one was most of a large deploy's CPU (issue 15).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_cloud_config(text: str, template: str) -> None:
    # Messages quote no rendered text: it may hold secret var values.
    try:
        document = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1} of the rendered output" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise TemplateError(
            f"the rendered user-data is not valid YAML{at} (a line of the output, not of the"
            f" template): {problem} — run `phoenix render` to see the rendered text",
            template=template,
        ) from exc
    except yaml.YAMLError as exc:
        raise TemplateError(
            f"the rendered user-data is not valid YAML: {exc} — run `phoenix render` to see"
            " the rendered text",
            template=template,
        ) from exc
    if not isinstance(document, dict):
        found = "nothing" if document is None else f"a {type(document).__name__}"
        raise TemplateError(
            f"the rendered #cloud-config holds {found}, not a mapping of cloud-init modules"
            " (write_files:, runcmd:, ...) — check the template's indentation",
            template=template,
        )


def _describe_start(text: str) -> str:
    if not text:
        return "is empty"
    if text.startswith("\ufeff"):
        return "starts with a byte-order mark (save the template as UTF-8 without BOM)"
    if text[0] in "\r\n":
        return (
            "starts with an empty line (a {% ... %} tag above the header leaves one; use"
            " {%- ... -%} or move the tag below the header)"
        )
    if text[0].isspace():
        return "starts with whitespace"
    if text.startswith(_CLOUD_CONFIG):
        return f"has more than '{_CLOUD_CONFIG}' on its first line"
    return "starts with neither header"
