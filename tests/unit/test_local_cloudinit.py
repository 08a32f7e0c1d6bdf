"""Tests for phoenix.providers.local.cloudinit: each supported form parses into the plan the
agent applies; everything outside the subset is refused, all of it in one error."""

from __future__ import annotations

import base64
import gzip

import pytest

from phoenix.errors import BadRequest
from phoenix.providers.local.cloudinit import (
    UserData,
    WriteFile,
    command_argv,
    parse_user_data,
)

SECRET = "s3cr3t-value-do-not-print"
NOT_GZIP = base64.b64encode(SECRET.encode()).decode()


def _config(body: str) -> UserData:
    return parse_user_data("#cloud-config\n" + body)


def _only_file(body: str) -> WriteFile:
    plan = _config(body)
    assert len(plan.write_files) == 1
    return plan.write_files[0]


def _refusal(text: str) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_user_data(text)
    message = str(caught.value)
    assert SECRET not in message  # messages name keys and positions, never values
    return message


# --- supported forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param(
            "{path: /etc/app/config, content: hello}",
            WriteFile(path="/etc/app/config", content=b"hello"),
            id="text-defaults",
        ),
        pytest.param(
            f"{{path: /etc/k, encoding: b64, content: {base64.b64encode(b'key').decode()}}}",
            WriteFile(path="/etc/k", content=b"key", encoding="b64"),
            id="b64",
        ),
        pytest.param(
            f"{{path: /etc/k, encoding: base64, content: {base64.b64encode(b'k2').decode()}}}",
            WriteFile(path="/etc/k", content=b"k2", encoding="b64"),
            id="base64-alias",
        ),
        pytest.param(
            "{path: /etc/k, encoding: gz+b64, content: "
            f"{base64.b64encode(gzip.compress(b'zipped')).decode()}}}",
            WriteFile(path="/etc/k", content=b"zipped", encoding="gz+b64"),
            id="gz+b64",
        ),
        pytest.param(
            "{path: /etc/k, encoding: gzip, content: !!binary "
            f"{base64.b64encode(gzip.compress(b'bin')).decode()}}}",
            WriteFile(path="/etc/k", content=b"bin", encoding="gz"),
            id="gzip-binary",
        ),
        pytest.param(
            "{path: /etc/k, encoding: text/plain, content: plain}",
            WriteFile(path="/etc/k", content=b"plain"),
            id="text/plain",
        ),
        pytest.param(
            "{path: /bin/run, permissions: '0755', content: x}",
            WriteFile(path="/bin/run", content=b"x", permissions="0755"),
            id="permissions-string",
        ),
        pytest.param(
            "{path: /bin/run, permissions: '600'}",
            WriteFile(path="/bin/run", content=b"", permissions="0600"),
            id="permissions-no-leading-zero",
        ),
        pytest.param(
            "{path: /bin/run, permissions: 0755}",  # YAML 1.1: an octal int, as cloud-init reads it
            WriteFile(path="/bin/run", content=b"", permissions="0755"),
            id="permissions-unquoted-octal",
        ),
        pytest.param(
            "{path: /etc/crontab, content: line, append: true, defer: true}",
            WriteFile(path="/etc/crontab", content=b"line", append=True, defer=True),
            id="append-defer",
        ),
        pytest.param(
            "{path: etc//app/./conf}",
            WriteFile(path="/etc/app/conf", content=b""),
            id="relative-path-is-under-root",
        ),
    ],
)
def test_write_files_forms(entry: str, expected: WriteFile) -> None:
    assert _only_file(f"write_files:\n  - {entry}\n") == expected


def test_permissions_give_a_mode() -> None:
    assert _only_file("write_files: [{path: /x, permissions: '0640'}]").mode == 0o640


def test_owner_is_accepted_with_a_note() -> None:
    plan = _config("write_files: [{path: /etc/x, owner: 'root:root', content: a}]")
    assert plan.write_files[0].owner == "root:root"
    assert len(plan.notes) == 1
    assert "write_files[0].owner" in plan.notes[0]
    assert "cannot chown" in plan.notes[0]


def test_runcmd_string_and_list() -> None:
    plan = _config(
        'runcmd:\n  - echo "$PHOENIX_NODE_NAME" > name\n  - [touch, ready]\n  - [sleep, 1]\n'
    )
    assert plan.runcmd == ('echo "$PHOENIX_NODE_NAME" > name', ("touch", "ready"), ("sleep", "1"))
    assert command_argv(plan.runcmd[0]) == ["/bin/sh", "-c", 'echo "$PHOENIX_NODE_NAME" > name']
    assert command_argv(plan.runcmd[1]) == ["touch", "ready"]


def test_bootcmd_and_everything_together() -> None:
    plan = _config(
        "bootcmd: [mkdir -p run]\n"
        "write_files: [{path: /etc/a, content: a}, {path: /etc/b, content: b, defer: true}]\n"
        "runcmd: [['true']]\n"
    )
    assert plan.kind == "cloud-config"
    assert plan.bootcmd == ("mkdir -p run",)
    assert [f.path for f in plan.write_files] == ["/etc/a", "/etc/b"]
    assert plan.runcmd == (("true",),)
    assert plan.notes == ()


def test_script_user_data() -> None:
    text = "#!/bin/sh\necho hello > greeting\n"
    assert parse_user_data(text) == UserData(kind="script", script=text)


@pytest.mark.parametrize("text", ["", "\n", "#cloud-config\n", "#cloud-config  \n# only\n"])
def test_empty_user_data_is_an_empty_plan(text: str) -> None:
    assert parse_user_data(text) == UserData(kind="cloud-config")


@pytest.mark.parametrize("key", ["write_files", "bootcmd", "runcmd"])
def test_empty_sections_are_empty(key: str) -> None:
    assert parse_user_data(f"#cloud-config\n{key}:\n") == UserData(kind="cloud-config")


# --- refused --------------------------------------------------------------------------------


def test_every_unsupported_key_is_listed() -> None:
    message = _refusal(
        "#cloud-config\n"
        "packages: [nginx]\n"
        "users: [{name: app}]\n"
        "mounts: [[tmpfs, /run/app]]\n"
        f"write_files: [{{path: /etc/a, content: {SECRET}, source: {{uri: 'http://x'}}}}]\n"
        "runcmd: ['true']\n"
    )
    for listed in ("'packages'", "'users'", "'mounts'", "'write_files[0].source'"):
        assert listed in message
    assert "supports only the documented subset" in message
    assert "'runcmd'" not in message and "runcmd[0]" not in message  # supported, valid


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("write_files: {path: /a}", "write_files: must be a list"),
        ("write_files: [/etc/a]", "write_files[0]: must be a mapping"),
        ("write_files: [{content: a}]", "write_files[0].path: required"),
        ("write_files: [{path: /etc/../../x}]", "write_files[0].path: '..' is not allowed"),
        (
            f"write_files: [{{path: /a, encoding: b64, content: '{SECRET}!'}}]",
            "write_files[0].content: is not valid base64",
        ),
        (
            f"write_files: [{{path: /a, encoding: gzip, content: !!binary {NOT_GZIP}}}]",
            "write_files[0].content: is not valid gzip",
        ),
        ("write_files: [{path: /a, encoding: rot13}]", "write_files[0].encoding: unsupported"),
        ("write_files: [{path: /a, permissions: rw-r--r--}]", "write_files[0].permissions"),
        ("write_files: [{path: /a, permissions: '0999'}]", "write_files[0].permissions"),
        ("write_files: [{path: /a, append: maybe}]", "write_files[0].append: must be true"),
        ("write_files: [{path: /a, content: 42}]", "write_files[0].content: must be a string"),
        ("write_files: [{path: /a, owner: 0}]", "write_files[0].owner: must be a string"),
        ("runcmd: echo hi", "runcmd: must be a list"),
        ("runcmd: [[]]", "runcmd[0]: must be a string"),
        ("bootcmd: [[echo, yes]]", "bootcmd[0]: must be a string"),
        ("runcmd: [{echo: hi}]", "runcmd[0]: must be a string"),
    ],
)
def test_invalid_values_name_the_field(body: str, expected: str) -> None:
    assert expected in _refusal("#cloud-config\n" + body + "\n")


def test_all_problems_in_one_error() -> None:
    message = _refusal(
        "#cloud-config\nwrite_files: [{content: a}, {path: /b, encoding: rot13}]\nruncmd: x\n"
    )
    assert "write_files[0].path" in message
    assert "write_files[1].encoding" in message
    assert "runcmd: must be a list" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#include\nhttp://example.com/ud\n", "must start with '#cloud-config'"),
        ("#cloud-boothook\necho\n", "must start with '#cloud-config'"),
        (" #cloud-config\n", "must start with '#cloud-config'"),
        ("#cloud-config\n- a\n- b\n", "not a mapping"),
        (f"#cloud-config\nwrite_files: [{{path: /a, content: {SECRET}\n", "not valid YAML"),
    ],
)
def test_other_formats_are_refused(text: str, expected: str) -> None:
    assert expected in _refusal(text)
