"""Tests for phoenix.render: rendering, every failure's file and line, output checks, masking."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from phoenix.errors import TemplateError
from phoenix.render import (
    NOVA_USER_DATA_LIMIT,
    RenderContext,
    check_user_data,
    mask_secrets,
    render_user_data,
)

BASIC_TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "basic.yaml.j2"


def _context(**vars: Any) -> RenderContext:
    return RenderContext(app="web", release="v42", region="RegionOne", index=3, vars=vars)


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _render_error(path: Path, context: RenderContext | None = None) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        render_user_data(path, context or _context(greeting="hi"))
    return caught.value


# --- rendering ----------------------------------------------------------------------------


def test_renders_the_context_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.yaml.j2",
        "#cloud-config\n"
        "app: {{ app }}\n"
        "release: {{ release }}\n"
        "region: {{ region }}\n"
        "index: {{ index }}\n"
        "greeting: {{ vars.greeting }}\n"
        "host: {{ vars.db.host }}\n",
    )
    text = render_user_data(path, _context(greeting="hello", db={"host": "db1"}))
    assert text == (
        "#cloud-config\napp: web\nrelease: v42\nregion: RegionOne\nindex: 3\n"
        "greeting: hello\nhost: db1\n"
    )


def test_include_of_a_sibling_file(tmp_path: Path) -> None:
    _write(tmp_path, "common.j2", "timezone: UTC\nhostname: {{ app }}-{{ index }}\n")
    path = _write(tmp_path, "t.yaml.j2", '#cloud-config\n{% include "common.j2" %}\n')
    assert render_user_data(path, _context()) == (
        "#cloud-config\ntimezone: UTC\nhostname: web-3\n\n"
    )


def test_a_relative_template_path_is_reported_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "t.yaml.j2", "#cloud-config\na: {{ nope }}\n")
    monkeypatch.chdir(tmp_path)
    error = _render_error(Path("t.yaml.j2"))
    assert (error.template, error.line) == ("t.yaml.j2", 2)


def test_an_edited_template_is_rendered_afresh(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml.j2", "#cloud-config\na: 1\n")
    assert render_user_data(path, _context()) == "#cloud-config\na: 1\n"
    assert render_user_data(path, _context()) == "#cloud-config\na: 1\n"
    mtime = path.stat().st_mtime_ns
    path.write_text("#cloud-config\na: 2\n", encoding="utf-8")
    os.utime(path, ns=(mtime + 1_000_000_000, mtime + 1_000_000_000))
    assert render_user_data(path, _context()) == "#cloud-config\na: 2\n"


def test_an_edited_include_is_rendered_afresh(tmp_path: Path) -> None:
    part = _write(tmp_path, "part.j2", "a: 1\n")
    path = _write(tmp_path, "t.yaml.j2", '#cloud-config\n{% include "part.j2" %}')
    assert render_user_data(path, _context()) == "#cloud-config\na: 1\n"
    mtime = part.stat().st_mtime_ns
    part.write_text("a: 2\n", encoding="utf-8")
    os.utime(part, ns=(mtime + 1_000_000_000, mtime + 1_000_000_000))
    assert render_user_data(path, _context()) == "#cloud-config\na: 2\n"


def test_vars_named_like_internals_are_still_vars(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml.j2", "#cloud-config\nname: {{ vars.phoenix_name }}\n")
    assert render_user_data(path, _context(phoenix_name="x")) == "#cloud-config\nname: x\n"


def test_a_template_cannot_change_the_callers_vars(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.yaml.j2",
        "#cloud-config\n{% set _ = vars.packages.append('evil') %}packages: {{ vars.packages }}\n",
    )
    packages = ["nginx"]
    context = _context(packages=packages)
    render_user_data(path, context)
    render_user_data(path, context)
    assert packages == ["nginx"]


# --- failures: file, line and what to do ----------------------------------------------------


def test_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml.j2", "#cloud-config\na: 1\nb: {{ vars.x | }}\nc: 3\n")
    error = _render_error(path)
    assert (error.template, error.line) == (str(path), 3)
    assert "syntax error" in str(error)
    assert str(error).startswith(f"{path}:3: ")


def test_unknown_filter_reports_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml.j2", "#cloud-config\n\na: {{ app | shout }}\n")
    error = _render_error(path)
    assert (error.template, error.line) == (str(path), 3)
    assert "shout" in str(error)


def test_syntax_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    included = _write(tmp_path, "part.j2", "x: 1\ny: {% if %}\n")
    path = _write(tmp_path, "t.yaml.j2", '#cloud-config\n{% include "part.j2" %}\n')
    error = _render_error(path)
    assert (error.template, error.line) == (str(included), 2)


def test_undefined_var_names_it_and_says_where_to_define_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml.j2", "#cloud-config\na: 1\n\ngreeting: {{ vars.greting }}\n")
    error = _render_error(path, _context(greeting="hello"))
    assert (error.template, error.line) == (str(path), 4)
    message = str(error)
    assert "undefined variable 'vars.greting'" in message
    assert "define it under vars: in the spec" in message
    assert "did you mean 'greeting'?" in message


def test_undefined_nested_var_is_named_with_its_full_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml.j2", "#cloud-config\nhost: {{ vars.db.hots }}\n")
    error = _render_error(path, _context(db={"host": "db1"}))
    assert error.line == 2
    assert "undefined variable 'vars.db.hots'" in str(error)


def test_undefined_top_level_name_lists_what_templates_see(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml.j2", "#cloud-config\nrelease: {{ relase }}\n")
    error = _render_error(path)
    assert error.line == 2
    message = str(error)
    assert "undefined variable 'relase'" in message
    assert "app, release, region, index, vars" in message
    assert "did you mean 'release'?" in message


def test_undefined_var_in_a_condition_inside_a_loop_reports_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.yaml.j2",
        "#cloud-config\n"
        "runcmd:\n"
        "{% for pkg in vars.packages %}\n"
        "  - echo {{ pkg }}\n"
        "{% if vars.debug %}\n"
        "  - echo debug\n"
        "{% endif %}\n"
        "{% endfor %}\n",
    )
    error = _render_error(path, _context(packages=["a"]))
    assert (error.template, error.line) == (str(path), 5)
    assert "'vars.debug'" in str(error)


def test_undefined_var_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    included = _write(tmp_path, "part.j2", "x: 1\ny: 2\nz: {{ vars.missing }}\n")
    path = _write(tmp_path, "t.yaml.j2", '#cloud-config\n{% include "part.j2" %}\n')
    error = _render_error(path)
    assert (error.template, error.line) == (str(included), 3)
    assert "'vars.missing'" in str(error)


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__",
        "''.__class__.__mro__[1].__subclasses__()",
        "().__class__.__base__.__subclasses__()",
        "vars.__class__",
        "app | attr('__class__')",
        "range.__globals__",
    ],
)
def test_sandbox_refuses_python_internals(tmp_path: Path, expression: str) -> None:
    path = _write(tmp_path, "t.yaml.j2", f"#cloud-config\n\nx: {{{{ {expression} }}}}\n")
    error = _render_error(path)
    assert (error.template, error.line) == (str(path), 3)
    assert "unsafe operation" in str(error)
    assert "sandbox" in str(error)


def test_missing_template_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml.j2"
    error = _render_error(path)
    assert (error.template, error.line) == (str(path), None)
    assert "not found" in str(error)
    assert "template:" in str(error)


def test_template_path_that_is_a_directory(tmp_path: Path) -> None:
    error = _render_error(tmp_path)
    assert (error.template, error.line) == (str(tmp_path), None)
    assert "not a regular file" in str(error)


def test_non_utf8_template_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml.j2"
    path.write_bytes(b"#cloud-config\na: 1\nb: caf\xe9\n")
    error = _render_error(path)
    assert (error.template, error.line) == (str(path), 3)
    assert "UTF-8" in str(error)


def test_non_utf8_included_file_names_that_file(tmp_path: Path) -> None:
    included = tmp_path / "part.j2"
    included.write_bytes(b"\xff\xfex: 1\n")
    path = _write(tmp_path, "t.yaml.j2", '#cloud-config\n{% include "part.j2" %}\n')
    error = _render_error(path)
    assert (error.template, error.line) == (str(included), 1)
    assert "UTF-8" in str(error)


def test_missing_include_reports_the_include_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml.j2", '#cloud-config\na: 1\n{% include "gone.j2" %}\n')
    error = _render_error(path)
    assert (error.template, error.line) == (str(path), 3)
    assert "'gone.j2' not found" in str(error)


def test_other_failures_while_rendering_report_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.yaml.j2", "#cloud-config\nratio: {{ index / 0 }}\n")
    error = _render_error(path)
    assert (error.template, error.line) == (str(path), 2)
    assert "ZeroDivisionError" in str(error)


# --- checks on the rendered output -----------------------------------------------------------


def test_invalid_yaml_reports_the_line_of_the_rendered_output(tmp_path: Path) -> None:
    # The loop makes template and output lines differ: the bad line is line 6 of the
    # template but line 8 of the output.
    path = _write(
        tmp_path,
        "t.yaml.j2",
        "#cloud-config\n"
        "packages:\n"
        "{% for p in vars.packages %}  - {{ p }}\n{% endfor %}"
        "runcmd:\n"
        "  - [echo, hi]\n"
        "bad: key: value\n",
    )
    error = _render_error(path, _context(packages=["a", "b", "c"]))
    assert error.template == str(path)
    assert error.line is None  # ``line`` means a template line; this one is the output's
    assert "line 8 of the rendered output" in str(error)
    assert "not of the template" in str(error)
    assert "phoenix render" in str(error)


def test_yaml_error_quotes_no_rendered_text() -> None:
    with pytest.raises(TemplateError) as caught:
        check_user_data("#cloud-config\npassword: hunter2: x\n", template="t.j2")
    assert "line 2 of the rendered output" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "found"), [("- a\n- b\n", "a list"), ("", "nothing"), ("just text\n", "a str")]
)
def test_cloud_config_must_be_a_mapping(body: str, found: str) -> None:
    with pytest.raises(TemplateError, match=f"holds {found}, not a mapping"):
        check_user_data("#cloud-config\n" + body, template="t.j2")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("packages: [a]\n", "starts with neither header"),
        ("\n#cloud-config\na: 1\n", "starts with an empty line"),
        ("  #cloud-config\na: 1\n", "starts with whitespace"),
        ("\ufeff#cloud-config\na: 1\n", "byte-order mark"),
        ("#cloud-config-archive\n- a\n", "more than '#cloud-config'"),
        ("", "is empty"),
    ],
)
def test_unknown_header_names_the_two_accepted_forms(text: str, why: str) -> None:
    with pytest.raises(TemplateError) as caught:
        check_user_data(text, template="t.j2")
    message = str(caught.value)
    assert why in message
    assert "'#cloud-config'" in message
    assert "'#!'" in message
    assert caught.value.template == "t.j2"


def test_a_script_is_accepted_as_is(tmp_path: Path) -> None:
    script = "#!/bin/sh\nset -eu\necho {{ vars.greeting }} > /etc/motd\n: [not yaml\n"
    path = _write(tmp_path, "boot.sh.j2", script)
    text = render_user_data(path, _context(greeting="hello"))
    assert text == "#!/bin/sh\nset -eu\necho hello > /etc/motd\n: [not yaml\n"


def test_cloud_config_header_may_have_trailing_whitespace() -> None:
    check_user_data("#cloud-config  \r\na: 1\r\n", template="t.j2")


def test_oversized_user_data_is_refused_with_both_numbers(tmp_path: Path) -> None:
    # 70 KB of cloud-config: each loop pass renders a 70-byte line.
    path = _write(
        tmp_path,
        "t.yaml.j2",
        "#cloud-config\nbootcmd:\n"
        "{% for i in range(1000) %}  - echo {{ '%05d' % i }} {{ 'x' * 54 }}\n{% endfor %}",
    )
    error = _render_error(path)
    raw = len("#cloud-config\nbootcmd:\n") + 1000 * 70
    encoded = len(base64.b64encode(b"x" * raw))
    assert error.template == str(path)
    assert f"{encoded} bytes base64-encoded" in str(error)
    assert f"({raw} bytes raw)" in str(error)
    assert f"at most {NOVA_USER_DATA_LIMIT}" in str(error)


def test_forty_kilobytes_of_user_data_is_accepted(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.yaml.j2",
        "#cloud-config\nbootcmd:\n"
        "{% for i in range(600) %}  - echo {{ '%05d' % i }} {{ 'x' * 54 }}\n{% endfor %}",
    )
    text = render_user_data(path, _context())
    assert 40_000 < len(text.encode()) < 45_000
    assert len(yaml.safe_load(text)["bootcmd"]) == 600


@pytest.mark.parametrize(("raw", "accepted"), [(49149, True), (49150, False)])
def test_size_limit_is_on_the_base64_encoding(raw: int, accepted: bool) -> None:
    text = "#!/bin/sh\n" + "x" * (raw - 10)
    encoded = len(base64.b64encode(text.encode()))
    assert (encoded <= NOVA_USER_DATA_LIMIT) is accepted
    if accepted:
        check_user_data(text, template="t.j2")
    else:
        with pytest.raises(TemplateError, match=f"{encoded} bytes base64-encoded"):
            check_user_data(text, template="t.j2")


def test_size_counts_utf8_bytes_not_characters() -> None:
    text = "#!/bin/sh\n# " + "é" * 30_000 + "\n"  # 30k characters, 60k bytes
    with pytest.raises(TemplateError, match=r"\(60013 bytes raw\)"):
        check_user_data(text, template="t.j2")


# --- masking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("token=abc123 again abc123", ["abc123"], "token=*** again ***"),
        ("pw=password", ["pass", "password"], "pw=***"),
        ("pw=password", ["password", "pass"], "pw=***"),
        ("xabcdx", ["abc", "bcd"], "x***x"),
        ("aaaa", ["aa"], "***"),
        ("a.b*c and a-b", ["a.b*c"], "*** and a-b"),
        ("nothing here", ["", "zzz"], "nothing here"),
        ("keep", [], "keep"),
        ("one two", ["one", "two"], "*** ***"),
    ],
)
def test_mask_secrets(text: str, secrets: list[str], expected: str) -> None:
    assert mask_secrets(text, secrets) == expected


def test_mask_secrets_accepts_any_iterable() -> None:
    assert mask_secrets("a=s1 b=s2", (s for s in ["s1", "s2"])) == "a=*** b=***"


# --- the shipped example template -------------------------------------------------------------


def test_basic_template_renders_cloud_config_with_the_greeting() -> None:
    text = render_user_data(BASIC_TEMPLATE, _context(greeting="hello, world", port=8080))
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    config_file = document["write_files"][0]
    assert config_file["path"] == "/etc/web/config.yaml"
    assert "hello, world" in config_file["content"]
    app_config = yaml.safe_load(config_file["content"])
    assert app_config == {
        "greeting": "hello, world",
        "listen_port": 8080,
        "release": "v42",
        "node_index": 3,
        "region": "RegionOne",
    }
    assert ["systemctl", "enable", "--now", "web.service"] in document["runcmd"]


def test_basic_template_needs_port(tmp_path: Path) -> None:
    error = _render_error(BASIC_TEMPLATE, _context(greeting="hello"))
    assert error.template == str(BASIC_TEMPLATE)
    assert error.line == 14
    assert "'vars.port'" in str(error)


def test_undefined_variable_through_tojson_is_named(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("#cloud-config\na: 1\nb: {{ vars.greting | tojson }}\n")
    with pytest.raises(TemplateError) as failed:
        render_user_data(template, RenderContext("app", "r1", "region", 0, {"greeting": "x"}))
    assert "vars.greting" in str(failed.value)
    assert failed.value.line == 3


def test_tojson_of_defined_values_still_works(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("#cloud-config\nb: {{ vars.names | tojson }}\n")
    text = render_user_data(template, RenderContext("app", "r1", "region", 0, {"names": [1, "a"]}))
    assert 'b: [1, "a"]' in text
