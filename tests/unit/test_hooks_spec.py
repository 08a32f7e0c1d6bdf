"""The spec's ``hooks:``: what is accepted, and every mistake refused at its file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix.errors import SpecError
from phoenix.spec_hooks import HOOK_MOMENTS, NODE_MOMENTS
from phoenix.spec_loader import load_spec

BASE = """\
app: web
regions: [r1]
image: {name: ubuntu-22.04}
flavor: m1.small
count: 3
template: cloud-init.j2
health: {http: {port: 8080}}
load_balancer: {pool: web, member_port: 8080}
hooks:
"""  # the hooks' own lines start at line 10


def load(tmp_path: Path, hooks: str) -> object:
    (tmp_path / "cloud-init.j2").write_text("#cloud-config\n")
    path = tmp_path / "phoenix.yaml"
    path.write_text(BASE + hooks)
    return load_spec(path, environ={})


def problems(tmp_path: Path, hooks: str) -> list[str]:
    with pytest.raises(SpecError) as failed:
        load(tmp_path, hooks)
    return failed.value.problems


def test_every_moment_takes_commands_and_urls_with_defaults(tmp_path: Path) -> None:
    text = "".join(f"  {m}:\n    - run: echo {m}\n    - {{url: 'https://h.example/{m}',"
                   " timeout: 5s, on_failure: continue}\n" for m in HOOK_MOMENTS)
    spec = load(tmp_path, text)
    hooks = spec.hooks  # type: ignore[attr-defined]
    assert hooks.any
    for moment in HOOK_MOMENTS:
        command, url = hooks.at(moment)
        assert command.run == f"echo {moment}" and command.url is None
        assert (command.timeout, command.on_failure) == (60.0, "abort")  # the defaults
        assert (url.url, url.timeout, url.on_failure) == (
            f"https://h.example/{moment}", 5.0, "continue")
    assert set(HOOK_MOMENTS) > NODE_MOMENTS


def test_no_hooks_is_the_default_and_an_empty_hooks_key_is_none(tmp_path: Path) -> None:
    spec = load(tmp_path, "")  # "hooks:" with nothing under it (all commented out)
    assert not spec.hooks.any  # type: ignore[attr-defined]
    path = tmp_path / "phoenix.yaml"
    path.write_text(BASE.replace("hooks:\n", ""))
    assert not load_spec(path, environ={}).hooks.any


@pytest.mark.parametrize(("hooks", "line", "field", "message"), [
    ("  pre_delete:\n    - run: x\n", 10, "hooks.pre_delete",
     "unknown key; did you mean 'pre_create'?"),
    ("  pre_create:\n    - {run: x, retries: 3}\n", 11, "hooks.pre_create[0].retries",
     "unknown key; expected one of: on_failure, run, timeout, url"),
    ("  pre_create:\n    - {run: x, url: 'http://h/'}\n", 11, "hooks.pre_create[0]",
     "exactly one of run or url"),
    ("  pre_create:\n    - {timeout: 5s}\n", 11, "hooks.pre_create[0]",
     "exactly one of run or url"),
    ("  post_deploy:\n    - {url: 'ftp://h.example/x'}\n", 11, "hooks.post_deploy[0].url",
     "http:// or https://"),
    ("  post_deploy:\n    - {url: 'file:///etc/passwd'}\n", 11, "hooks.post_deploy[0].url",
     "http:// or https://"),
    ("  post_deploy:\n    - {url: 'http://user:pw@h.example/'}\n", 11,
     "hooks.post_deploy[0].url", "http:// or https://"),
    ("  pre_drain:\n    - {run: x, timeout: 2h}\n", 11, "hooks.pre_drain[0].timeout",
     "at most 1h"),
    ("  pre_drain:\n    - {run: x, timeout: 10ms}\n", 11, "hooks.pre_drain[0].timeout",
     "at least 100ms"),
    ("  pre_drain:\n    - {run: x, on_failure: ignore}\n", 11,
     "hooks.pre_drain[0].on_failure", "'abort' or 'continue'"),
    ("  pre_terminate:\n    - {run: ''}\n", 11, "hooks.pre_terminate[0].run", "at least 1"),
    ("  pre_terminate: {run: x}\n", 10, "hooks.pre_terminate", "list"),
])
def test_a_mistake_is_refused_at_its_line(
    tmp_path: Path, hooks: str, line: int, field: str, message: str
) -> None:
    found = problems(tmp_path, hooks)
    where = f"{tmp_path / 'phoenix.yaml'}:{line}: {field}:"
    matching = [p for p in found if p.startswith(where)]
    assert matching, f"no problem at {where!r} in {found}"
    assert message in matching[0]


def test_the_json_schema_lists_the_moments() -> None:
    from phoenix.spec_loader import spec_json_schema

    schema = spec_json_schema()
    assert "hooks" in schema["properties"]
    moments = schema["$defs"]["HooksSpec"]["properties"]
    assert set(moments) == set(HOOK_MOMENTS)
