"""Rendered user-data is checked against cloud-init's own JSON schema (issue 16).

``phoenix validate`` (and so every deploy, plan and rollback, before any provider call)
refuses a ``#cloud-config`` that breaks the vendored schema, with exit code 2, the key
path, and the template file and line; the examples and templates of this repository
pass; the schema ships with the package.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from phoenix import cloud_config_schema
from phoenix.cli import app
from phoenix.cloud_config_schema import (
    CLOUD_INIT_VERSION,
    CloudConfigSchemaError,
    check_cloud_config,
    load_schema,
    schema_problems,
)
from phoenix.errors import ExitCode, TemplateError
from phoenix.render import RenderContext, render_user_data

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cret-value-never-printed"

SPEC = """\
app: demo
provider: {provider}
regions: [region-a]
image: {{name: golden}}
flavor: m1.small
count: 2
template: templates/app.yaml.j2
vars:
  token: {{value: {secret}, secret: true}}
health: {{http: {{port: 8080}}}}
load_balancer: {{pool: demo-pool, member_port: 8080}}
"""

GOOD = """\
#cloud-config
{# comment lines are dropped by jinja: template and rendered lines differ #}
write_files:
  - path: /etc/demo/token
    permissions: "0600"
    content: {{ vars.token | tojson }}
runcmd:
  - [systemctl, restart, demo]
"""


def _project(tmp_path: Path, template: str, provider: str | None = None) -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "app.yaml.j2").write_text(template, encoding="utf-8")
    state = tmp_path / "cloud.json"
    spec = tmp_path / "phoenix.yaml"
    provider = provider or f"{{name: memory, options: {{state_file: {state}}}}}"
    spec.write_text(SPEC.format(provider=provider, secret=SECRET), encoding="utf-8")
    return spec


def _validate(spec: Path, *extra: str) -> Result:
    return CliRunner().invoke(app, [*extra, "validate", str(spec)])


# --- phoenix validate --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "key", "line", "expected"),
    [
        # runcmd must be a list
        (['runcmd: "x"'], "runcmd", 3, "must be a list, not a string"),
        # a write_files entry's path must be a string
        (["write_files:", "  - path: 1", "    content: x"], "write_files.0.path", 4,
         "must be a string, not an integer"),
        (["write_files: [{path: 1}]"], "write_files.0.path", 3,
         "must be a string, not an integer"),
        # packages must be a list
        (["packages: 5"], "packages", 3, "must be a list, not an integer"),
        # unquoted 0644 is an octal integer in YAML 1.1; the schema wants a string
        (["write_files:", "  - path: /a", "    permissions: 0644"],
         "write_files.0.permissions", 5, "must be a string, not an integer"),
        (["write_files:", "  - path: /a", "    mode: '0644'"], "write_files.0", 4,
         "unknown key 'mode'"),
        (["bootcmd:", "  - [echo, {a: 1}]"], "bootcmd.0.1", 4, "must be a string, not a mapping"),
        (["power_state: {mode: halt, delay: now, tiemout: 5}"], "power_state", 3,
         "unknown key 'tiemout' (did you mean 'timeout'?)"),
    ],
)
def test_a_schema_error_exits_2_naming_key_template_file_and_line(
    tmp_path: Path, lines: list[str], key: str, line: int, expected: str
) -> None:
    # Line 2 is a jinja comment that leaves no line: rendered line n is template line n + 1.
    template = "#cloud-config\n{# a comment -#}\n" + "\n".join(lines) + "\n"
    spec = _project(tmp_path, template)

    result = _validate(spec)

    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    where = f"{tmp_path / 'templates' / 'app.yaml.j2'}:{line}"
    assert f"{where}: {key}: {expected}" in result.output
    assert f"cloud-init {CLOUD_INIT_VERSION}'s schema" in result.output
    assert f"(rendered line {line - 1})" in result.output


def test_a_typo_in_a_module_key_fails_validate(tmp_path: Path) -> None:
    # cloud-init 22.4.2's schema allows unknown top-level keys (only 23.4 and later
    # reject them): this near miss is Phoenix's own check.
    spec = _project(tmp_path, "#cloud-config\nruncmdd:\n  - echo hi\n")

    result = _validate(spec)

    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "app.yaml.j2:2: runcmdd: unknown key (did you mean 'runcmd'?)" in result.output


def test_deploy_stops_before_the_cloud_on_a_schema_error(tmp_path: Path) -> None:
    spec = _project(tmp_path, "#cloud-config\npackages: nginx\n")

    result = CliRunner().invoke(app, ["deploy", str(spec)])

    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "app.yaml.j2:2: packages: must be a list, not a string" in result.output
    assert not (tmp_path / "cloud.json").exists()  # the memory cloud was never opened


def test_the_json_output_names_the_template_and_line(tmp_path: Path) -> None:
    spec = _project(tmp_path, GOOD.replace("runcmd:", "runcmd: oops\nbootcmd:"))

    result = _validate(spec, "--output", "json")

    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    message = json.loads(result.stdout)["error"]["message"]
    assert message.startswith(f"{tmp_path / 'templates' / 'app.yaml.j2'}:7: ")
    assert "runcmd: must be a list, not a string" in message


@pytest.mark.parametrize(
    "provider",
    [None, "{name: local, options: {state_dir: STATE}}", "{name: openstack, cloud: nowhere}"],
    ids=["memory", "local", "openstack"],
)
def test_every_provider_checks_the_schema(tmp_path: Path, provider: str | None) -> None:
    if provider:
        provider = provider.replace("STATE", str(tmp_path / "state"))
    spec = _project(tmp_path, "#cloud-config\nwrite_files: [{path: 1, content: x}]\n",
                    provider)

    result = _validate(spec)

    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "app.yaml.j2:2: write_files.0.path: must be a string" in result.output


def test_a_problem_in_an_included_template_names_that_file(tmp_path: Path) -> None:
    spec = _project(tmp_path, '#cloud-config\n{% include "cmds.j2" %}\n')
    (tmp_path / "templates" / "cmds.j2").write_text("# commands\nruncmd:\n  - {a: 1}\n")

    result = _validate(spec)

    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert (f"{tmp_path / 'templates' / 'cmds.j2'}:3: runcmd.0: must be a list, a string or"
            " empty (null), not a mapping") in result.output


def test_messages_never_quote_a_value(tmp_path: Path) -> None:
    template = (
        "#cloud-config\n"
        "runcmd: {{ vars.token | tojson }}\n"
        "packages: {{ vars.token | tojson }}\n"
        "write_files:\n  - path: /a\n    content: x\n    {{ vars.token }}: 1\n"
    )
    spec = _project(tmp_path, template)

    result = _validate(spec)

    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "runcmd: must be a list, not a string" in result.output
    assert SECRET not in result.output


def test_a_valid_template_passes(tmp_path: Path) -> None:
    result = _validate(_project(tmp_path, GOOD))

    assert result.exit_code == 0, result.output


def test_a_script_is_not_checked_against_the_schema(tmp_path: Path) -> None:
    result = _validate(_project(tmp_path, "#!/bin/sh\nruncmd=5\n"))

    assert result.exit_code == 0, result.output


# --- the repository's own templates ------------------------------------------------------


@pytest.mark.parametrize(
    "spec", sorted(REPO.glob("examples/*/phoenix.yaml")), ids=lambda p: p.parent.name
)
def test_the_examples_validate(spec: Path, tmp_path: Path) -> None:
    root = tmp_path / spec.parent.name
    shutil.copytree(spec.parent, root, ignore=shutil.ignore_patterns(".phoenix"))

    result = _validate(root / "phoenix.yaml")

    assert result.exit_code == 0, result.output


def test_the_basic_template_passes_the_schema() -> None:
    text = render_user_data(
        REPO / "templates" / "basic.yaml.j2",
        RenderContext(app="web", release="r1", region="r", index=0,
                      vars={"greeting": "hi", "port": 8080}),
    )

    assert schema_problems(text) == []


# --- the module on its own ---------------------------------------------------------------


def test_forms_cloud_init_accepts_pass() -> None:
    text = (
        "#cloud-config\n"
        "write_files:\n"
        "  - path: /etc/a\n    content: !!binary aGVsbG8=\n    encoding: b64\n"
        "  - {path: /etc/b, content: x, owner: 'root:root', permissions: '0644', defer: true}\n"
        "runcmd: [[ls, -l], 'echo hi', null]\n"
        "bootcmd: ['mkdir -p /x']\n"
        "packages: [nginx, [libc6, '2.36-1']]\n"
        "package_update: true\n"
        "merge_how: dict(recurse_array)+list(append)\n"
    )

    assert schema_problems(text) == []


def test_non_cloud_config_user_data_is_passed_through() -> None:
    for text in ("#!/bin/sh\necho\n", "## template: jinja\n#cloud-config\nruncmd: 5\n",
                 'Content-Type: multipart/mixed; boundary="x"\n', "#cloud-config\n[1, 2]\n",
                 "#cloud-config\nruncmd: [\n"):
        assert schema_problems(text) == []
        check_cloud_config(text, template="t.j2")  # raises nothing


def test_a_problem_is_a_template_error_with_every_problem() -> None:
    text = "#cloud-config\nruncmd: x\npackages: 5\n"

    with pytest.raises(CloudConfigSchemaError) as caught:
        check_cloud_config(text, template="t.j2", sources={"t.j2": text})

    assert isinstance(caught.value, TemplateError)
    assert (caught.value.template, caught.value.line) == ("t.j2", 3)  # the first, by key
    assert [str(p) for p in caught.value.problems] == [
        "t.j2:3: packages: must be a list, not an integer (rendered line 3)",
        "t.j2:2: runcmd: must be a list, not a string (rendered line 2)",
    ]


def test_without_a_template_line_the_rendered_line_is_named() -> None:
    text = "#cloud-config\nruncmd: x\n"

    with pytest.raises(CloudConfigSchemaError) as caught:
        check_cloud_config(text, template="t.j2", sources={"t.j2": "{{ everything }}\n"})

    assert str(caught.value.problems[0]) == (
        "t.j2: runcmd: must be a list, not a string (rendered line 2)")


def test_a_repeated_line_maps_to_the_same_occurrence_in_the_template() -> None:
    template = ("#cloud-config\nwrite_files:\n  - path: /a\n    permissions: {{ a }}\n"
                "  - path: /b\n    permissions: {{ b }}\n")
    text = ("#cloud-config\nwrite_files:\n  - path: /a\n    permissions: '0600'\n"
            "  - path: /b\n    permissions: 600\n")

    with pytest.raises(CloudConfigSchemaError) as caught:
        check_cloud_config(text, template="t.j2", sources={"t.j2": template})

    assert str(caught.value.problems[0]).startswith("t.j2:6: write_files.1.permissions:")


def test_the_schema_is_cloud_inits_and_ships_with_its_notice() -> None:
    schema = load_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert {"runcmd", "write_files", "packages"} <= cloud_config_schema._schema_keys()
    notice = (REPO / "phoenix" / "schemas" / "NOTICE").read_text()
    assert f"Upstream version: cloud-init {CLOUD_INIT_VERSION}" in notice
    assert "GPL-3 or Apache-2.0" in notice
    data = (REPO / "phoenix" / cloud_config_schema.SCHEMA_RESOURCE).read_bytes()
    assert f"SHA-256: {hashlib.sha256(data).hexdigest()}" in notice  # vendored unchanged


def test_the_schema_is_package_data() -> None:
    # An installed phoenix reads the schema from its package data (load_schema uses
    # importlib.resources): pyproject.toml must ship both files.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["phoenix"]
    for name in (cloud_config_schema.SCHEMA_RESOURCE, "schemas/NOTICE"):
        assert (REPO / "phoenix" / name).is_file()
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


@pytest.mark.parametrize("text", [
    "runcmd: x\npackages: 5\nwrite_files: [{path: 1, mode: x}, 7]\n",
    "bootcmd: [[echo, {a: 1}], {b: 2}]\nusers: [{name: a, expiredate: 2020-01-01}]\n",
    "power_state: {mode: halt, tiemout: 5}\nntp: {enabled: 3}\napt: {sources: 5}\n",
    "ssh_keys: 5\nmounts: [[1, 2]]\nswap: {size: x}\nphone_home: {url: 5}\n",
])
def test_checking_key_by_key_finds_what_the_whole_schema_finds(text: str) -> None:
    document = yaml.safe_load(text)
    whole = cloud_config_schema._validator(None).iter_errors(document)
    by_key = cloud_config_schema._errors(document)

    def seen(errors: Iterable[Any]) -> list[tuple[list[str], str]]:
        return sorted(([str(p) for p in e.absolute_path], e.message) for e in errors)

    assert cloud_config_schema._subschemas() is not None  # the fast path is taken
    assert seen(by_key) == seen(whole) != []


def test_an_empty_list_from_a_loop_over_nothing_is_accepted() -> None:
    """``write_files: []`` is what ``{% for %}`` over no files renders; cloud-init runs
    nothing for it (the schema's minItems only makes it warn). A list with a wrong item
    is still refused."""
    assert schema_problems("#cloud-config\nwrite_files: []\nruncmd: []\n") == []
    assert schema_problems("#cloud-config\nwrite_files: [{path: 1}]\n") != []
