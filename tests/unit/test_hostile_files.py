"""Issue 12, items 1 and 4: files named by a spec, a template or a release record stay
inside their folder, and a file that is not a small regular file is refused at once.

Item 1: a template tag naming a file outside the template's folder (even one never
rendered) fails validate with its file and line, and a tampered release record cannot
make `rollback` write outside its own temporary directory. Item 4: var files resolve
inside the spec's folder and must be regular files of at most ``VAR_FILE_LIMIT`` bytes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import phoenix
from phoenix import api
from phoenix import cli as phoenix_cli
from phoenix.errors import ExitCode, InputError, SpecError, TemplateError
from phoenix.input_files import (
    TEMPLATE_FILE_LIMIT,
    VAR_FILE_LIMIT,
    InputFileError,
    read_var_file,
)
from phoenix.records import Records, ReleaseRecord
from phoenix.release import release_from_record
from phoenix.render import RenderContext, render_user_data, template_sources
from phoenix.spec_loader import load_spec
from tests.e2e.conftest import REGION, World, make_world

HEADER = "#cloud-config\n"
OUTSIDE_TEXT = "#cloud-config\nstolen: outside-the-folder\n"


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Fail a test that blocks (on a FIFO, say) after 5 s instead of hanging the run."""

    def give_up(signum: int, frame: object) -> None:
        raise TimeoutError("blocked for 5 s: a file read hangs")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(5)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path / "project")


@pytest.fixture
def project(world: World) -> Path:
    """A memory spec in ``tmp/project``, with a file one level above it to steal."""
    world.tmp.mkdir()
    world.spec()
    (world.tmp.parent / "outside.j2").write_text(OUTSIDE_TEXT)
    return world.tmp


def _context() -> RenderContext:
    return RenderContext(app="web", release="r1", region=REGION, index=0,
                         vars={"greeting": "hi"})


# --- item 1: includes stay inside the template's folder ---------------------------------

# (case, template text, line of the offending tag)
ESCAPING_TEMPLATES = [
    ("dotdot include", HEADER + 'a: 1\n{% include "../outside.j2" %}\n', 3),
    ("absolute include", HEADER + "{% include '" + "{outside}" + "' %}\n", 2),
    ("include never rendered", HEADER + 'a: 1\nb: 2\n{% if false %}{% include "../outside.j2" %}'
     "{% endif %}\n", 4),
    ("import", HEADER + '{% import "../outside.j2" as m %}\n', 2),
    ("from import", HEADER + '{% from "sub/../../outside.j2" import x %}\n', 2),
    ("extends", '{% extends "../outside.j2" %}\n', 1),
    ("one of a list", HEADER + 'a: 1\n{% include ["ok.j2", "../outside.j2"] %}\n', 3),
    ("symlink out", HEADER + '{% include "link.j2" %}\n', 2),
]


@pytest.mark.parametrize(
    ("text", "line"),
    [(text, line) for _, text, line in ESCAPING_TEMPLATES],
    ids=[case for case, _, _ in ESCAPING_TEMPLATES],
)
def test_a_tag_naming_a_file_outside_the_folder_fails_validate_with_file_and_line(
    project: Path, text: str, line: int
) -> None:
    outside = project.parent / "outside.j2"
    (project / "link.j2").symlink_to(outside)
    (project / "ok.j2").write_text("ok: 1\n")
    template = project / "web.yaml.j2"
    template.write_text(text.replace("{outside}", str(outside)))
    spec = load_spec(project / "phoenix.yaml")

    with pytest.raises(TemplateError) as caught:
        api.validate(spec)

    assert (caught.value.template, caught.value.line) == (str(spec.template_path), line)
    assert "outside" in str(caught.value) or "leaves" in str(caught.value)

    result = CliRunner().invoke(phoenix_cli.app, ["validate", str(project / "phoenix.yaml")])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert f"{spec.template_path}:{line}:" in result.output
    assert "Traceback" not in result.output


def test_an_included_template_is_named_with_its_own_line(project: Path) -> None:
    (project / "sub").mkdir()
    (project / "sub" / "part.j2").write_text('x: 1\n\n{% include "../outside.j2" %}\n')
    (project / "web.yaml.j2").write_text(HEADER + '{% include "sub/part.j2" %}\n')

    with pytest.raises(TemplateError) as caught:
        template_sources(project / "web.yaml.j2")

    assert (caught.value.template, caught.value.line) == (str(project / "sub" / "part.j2"), 3)


def test_rendering_refuses_a_computed_name_that_leaves_the_folder(project: Path) -> None:
    # A name computed at render time cannot be checked statically; the loader refuses it.
    template = project / "web.yaml.j2"
    template.write_text(HEADER + "a: 1\n{% include vars.part %}\n")
    context = dataclasses.replace(_context(), vars={"part": "../outside.j2"})

    with pytest.raises(TemplateError) as caught:
        render_user_data(template, context)

    assert (caught.value.template, caught.value.line) == (str(template), 3)
    assert "leaves the template's folder" in str(caught.value)


def test_sources_are_keyed_as_the_loader_resolves_them(project: Path) -> None:
    (project / "sub").mkdir()
    (project / "sub" / "a.j2").write_text("a: 1\n")
    (project / "web.yaml.j2").write_text(
        HEADER + '{% include "./sub/a.j2" %}\n{% include "sub//a.j2" ignore missing %}\n'
        '{% if false %}{% include "missing.j2" ignore missing %}{% endif %}\n'
    )

    sources = template_sources(project / "web.yaml.j2")

    assert set(sources) == {"web.yaml.j2", "sub/a.j2"}


@pytest.mark.parametrize("where", ["top", "included"])
def test_a_template_over_the_size_limit_is_refused(project: Path, where: str) -> None:
    big = HEADER + "# " + "x" * TEMPLATE_FILE_LIMIT + "\n"
    template = project / "web.yaml.j2"
    if where == "top":
        template.write_text(big)
    else:
        (project / "big.j2").write_text(big)
        template.write_text(HEADER + '{% include "big.j2" %}\n')

    with pytest.raises(TemplateError, match="larger than 256 KiB"):
        render_user_data(template, _context())


def test_an_included_fifo_is_refused_without_hanging(project: Path) -> None:
    os.mkfifo(project / "pipe.j2")
    template = project / "web.yaml.j2"
    template.write_text(HEADER + '{% if false %}{% include "pipe.j2" %}{% endif %}\n')

    with pytest.raises(TemplateError, match="not a regular file") as caught:
        template_sources(template)

    assert caught.value.line == 2


# --- item 1: a tampered release record writes nothing outside its directory -------------


def _record(**changes: object) -> ReleaseRecord:
    record = ReleaseRecord(
        app="web", id="r1-abc", seq=1, digest="abc", image_id="img-1", image_name="golden",
        flavor="m1.small", network=None, server={}, template_name="web.yaml.j2",
        templates={"web.yaml.j2": OUTSIDE_TEXT}, vars={}, secret_names=[],
        created_at="2026-03-01T00:00:00+00:00",
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where rollback makes its temporary directory: ``tmp/tmp``."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


TAMPERED = [
    ("dotdot", "../../victim"),
    ("dotdot inside", "sub/../../../victim"),
    ("absolute", "{victim}"),
    ("empty", ""),
    ("the folder itself", "./"),
    ("backslash", "..\\..\\victim"),
]


@pytest.mark.parametrize("name", [name for _, name in TAMPERED], ids=[c for c, _ in TAMPERED])
@pytest.mark.parametrize("field", ["templates", "template_name"])
def test_a_tampered_record_is_refused_before_anything_is_written(
    project: Path, sandbox: Path, name: str, field: str
) -> None:
    victim = sandbox.parent / "victim"
    name = name.replace("{victim}", str(victim))
    changes: dict[str, object] = {"templates": {"web.yaml.j2": OUTSIDE_TEXT, name: "owned"}}
    if field == "template_name":
        changes = {"template_name": name, "templates": {name: "owned"}}
    spec = load_spec(project / "phoenix.yaml")

    with pytest.raises(InputError, match="tampered"):
        release_from_record(_record(**changes), spec)

    assert not victim.exists()
    assert list(sandbox.iterdir()) == []


def test_an_honest_record_renders_from_memory_writing_nothing(
    project: Path, sandbox: Path
) -> None:
    spec = load_spec(project / "phoenix.yaml")
    # "./sub/a.j2": records written before names were normalised keep tags as written.
    record = _record(templates={"web.yaml.j2": HEADER + '{% include "./sub/a.j2" %}\n',
                                "./sub/a.j2": "a: {{ vars.greeting }}\n"},
                     vars={"greeting": "hello"})

    release = release_from_record(record, spec)

    assert release.template_dir is None
    assert release.user_data(0, REGION) == HEADER + "a: hello\n\n"
    assert list(sandbox.iterdir()) == []  # no temporary directory, nothing written


def test_a_recorded_template_includes_only_what_the_record_holds(
    project: Path, sandbox: Path
) -> None:
    """From a record, an include resolves among the recorded sources, never on disk."""
    (project / "sub").mkdir()
    (project / "sub" / "a.j2").write_text("stolen: from-disk\n")
    record = _record(templates={"web.yaml.j2": HEADER + '{% include "sub/a.j2" %}\n'})
    release = release_from_record(record, load_spec(project / "phoenix.yaml"))

    with pytest.raises(TemplateError, match="not found"):
        release.user_data(0, REGION)


def test_rollback_to_a_tampered_record_writes_nothing_outside(
    world: World, project: Path, sandbox: Path
) -> None:
    first = phoenix.deploy(world.spec(), provider=world.provider(), clock=world.clock)
    phoenix.deploy(world.spec(greeting="v2"), provider=world.provider(), clock=world.clock)
    records = Records(world.provider().store, "web")
    record = records.release(first.release)
    assert record is not None
    victim = sandbox.parent / "victim"
    records.save_release(dataclasses.replace(
        record, templates={**record.templates, "../../victim": "owned", str(victim): "owned"}
    ))
    serving = world.serving()

    with pytest.raises(InputError, match="tampered"):
        phoenix.rollback(world.spec(greeting="v2"), provider=world.provider(), clock=world.clock)

    assert not victim.exists()
    assert list(sandbox.iterdir()) == []
    assert world.serving() == serving


# --- item 4: var files ------------------------------------------------------------------


def _var_spec(project: Path, file: str) -> Path:
    spec = project / "phoenix.yaml"
    text = spec.read_text().replace(
        "vars:\n", f"vars:\n  token: {{file: {file!r}, secret: true}}\n", 1
    )
    spec.write_text(text)
    return spec


def _var_line(spec: Path) -> int:
    return next(n for n, line in enumerate(spec.read_text().splitlines(), 1)
                if line.startswith("  token:"))


# (case, how to make it in the project folder -> the name the spec gives, what the error says)
def _absolute(project: Path) -> str:
    secret = project.parent / "secret.txt"
    secret.write_text("s3cret\n")
    return str(secret)


def _dotdot(project: Path) -> str:
    (project.parent / "secret.txt").write_text("s3cret\n")
    return "../secret.txt"


def _home(project: Path) -> str:
    return "~/phoenix-test-no-such-file"


def _symlink_out(project: Path) -> str:
    (project / "link.txt").symlink_to("/dev/zero")
    return "link.txt"


def _dev_zero(project: Path) -> str:
    return "/dev/zero"


def _fifo(project: Path) -> str:
    os.mkfifo(project / "pipe")
    return "pipe"


def _directory(project: Path) -> str:
    (project / "keys").mkdir()
    return "keys"


def _too_large(project: Path) -> str:
    (project / "big.txt").write_bytes(b"x" * (VAR_FILE_LIMIT + 1))
    return "big.txt"


HOSTILE_VAR_FILES = [
    ("absolute", _absolute, "not a path relative to"),
    ("dotdot", _dotdot, "leaves its folder"),
    ("home", _home, "not a path relative to"),
    ("symlink to /dev/zero", _symlink_out, "outside"),
    ("/dev/zero", _dev_zero, "not a path relative to"),
    ("fifo", _fifo, "is a device, pipe or socket, not a regular file"),
    ("directory", _directory, "is a directory, not a regular file"),
    ("too large", _too_large, "larger than 1024 KiB"),
]
_IDS = [case for case, _, _ in HOSTILE_VAR_FILES]
_CASES = [(make, says) for _, make, says in HOSTILE_VAR_FILES]


@pytest.mark.parametrize(("make", "says"), _CASES, ids=_IDS)
def test_a_hostile_var_file_is_refused(project: Path, make: object, says: str) -> None:
    name = make(project)  # type: ignore[operator]

    with pytest.raises(InputFileError, match=says) as caught:
        read_var_file(project, name)

    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(("make", "says"), _CASES, ids=_IDS)
def test_load_spec_refuses_a_hostile_var_file_at_its_line(
    project: Path, make: object, says: str
) -> None:
    spec = _var_spec(project, make(project))  # type: ignore[operator]

    with pytest.raises(SpecError) as caught:
        load_spec(spec)

    [problem] = caught.value.problems
    assert problem.startswith(f"{spec}:{_var_line(spec)}: vars.token: ")
    assert says in problem


def test_a_var_file_inside_the_folder_is_read(project: Path) -> None:
    (project / "secrets").mkdir()
    (project / "secrets" / "token.txt").write_text("t0ken\n")
    (project / "exact.txt").write_bytes(b"y" * VAR_FILE_LIMIT)
    (project / "inner-link.txt").symlink_to(project / "secrets" / "token.txt")

    assert read_var_file(project, "secrets/token.txt") == "t0ken\n"
    assert read_var_file(project, "./secrets/token.txt") == "t0ken\n"
    assert read_var_file(project, "inner-link.txt") == "t0ken\n"
    assert len(read_var_file(project, "exact.txt")) == VAR_FILE_LIMIT


def test_a_missing_var_file_keeps_its_message(project: Path) -> None:
    with pytest.raises(InputFileError) as caught:
        read_var_file(project, "keys/tls.pem")

    resolved = (project / "keys" / "tls.pem").resolve()
    assert str(caught.value) == f"cannot read file {resolved}: No such file or directory"


# --- the template and image.path stay inside the spec's folder --------------------------


def _edited_spec(project: Path, old: str, new: str) -> Path:
    spec = project / "phoenix.yaml"
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))
    return spec


def _line_of(spec: Path, needle: str) -> int:
    return next(n for n, line in enumerate(spec.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("../outside.j2", "leaves its folder"),
        ("{outside}", "is not a path relative to"),
        ("~/outside.j2", "is not a path relative to"),
        ("link.j2", "a symlink leads out"),
    ],
    ids=["dotdot", "absolute", "home", "symlink out"],
)
def test_a_template_outside_the_spec_folder_is_refused_at_its_line(
    project: Path, name: str, says: str
) -> None:
    """A spec from a pull request must not make Phoenix render a file of the machine
    (``template: /home/ci/.aws/credentials``) into user-data shipped to every node."""
    outside = project.parent / "outside.j2"
    (project / "link.j2").symlink_to(outside)
    spec = _edited_spec(project, "template: web.yaml.j2",
                        f"template: {name.format(outside=outside)}")

    with pytest.raises(SpecError) as caught:
        load_spec(spec)

    [problem] = caught.value.problems
    assert problem.startswith(f"{spec}:{_line_of(spec, 'template:')}: template: ")
    assert says in problem


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("../outside-image", "leaves its folder"),
        ("{outside}", "is not a path relative to"),
        ("image-link", "a symlink leads out"),
        ("missing-image", "no such directory"),
        ("web.yaml.j2", "not a directory"),
    ],
)
def test_an_image_path_outside_the_spec_folder_is_refused_at_its_line(
    project: Path, name: str, says: str
) -> None:
    outside = project.parent / "outside-image"
    outside.mkdir()
    (outside / "app.py").write_text("print('stolen')\n")
    (project / "image-link").symlink_to(outside)
    spec = _edited_spec(project, "provider: {name: memory}", "provider: {name: local}")
    spec = _edited_spec(project, "image: {name: golden}",
                        f"image: {{path: {name.format(outside=outside)}}}")

    with pytest.raises(SpecError) as caught:
        load_spec(spec)

    [problem] = caught.value.problems
    assert problem.startswith(f"{spec}:{_line_of(spec, 'image:')}: image.path: ")
    assert says in problem


def test_an_image_path_inside_the_folder_loads(project: Path) -> None:
    (project / "app").mkdir()
    spec = _edited_spec(project, "provider: {name: memory}", "provider: {name: local}")
    spec = _edited_spec(project, "image: {name: golden}", "image: {path: app}")

    loaded = load_spec(spec)

    assert loaded.image_dir == (project / "app").resolve()
    assert loaded.template_path == (project / "web.yaml.j2").resolve()
