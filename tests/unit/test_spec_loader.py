"""Tests for phoenix.spec_loader: real files in tmp_path, exact ``file:line: field`` checks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from phoenix.errors import ExitCode, SpecError
from phoenix.spec import SecretVar, Spec
from phoenix.spec_loader import load_spec, spec_json_schema

# One line per top-level key, so a case can replace line N and expect an error at line N,
# or append lines after line 8 and expect the error at line 9 onwards.
BASE_LINES = [
    "app: web",  # 1
    "regions: [r1, r2]",  # 2
    "image: {name: ubuntu-22.04}",  # 3
    "flavor: m1.small",  # 4
    "count: 3",  # 5
    "template: cloud-init.j2",  # 6
    "health: {http: {port: 8080}}",  # 7
    "load_balancer: {pool: web, member_port: 8080}",  # 8
]


def spec_text(replace: Mapping[int, str] | None = None, append: str = "") -> str:
    """BASE_LINES with line N (1-based) replaced by ``replace[N]`` and ``append`` at the end."""
    lines = list(BASE_LINES)
    for number, text in (replace or {}).items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n" + append


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "cloud-init.j2").write_text("#cloud-config\n")
    return tmp_path


def write_spec(spec_dir: Path, text: str, name: str = "phoenix.yaml") -> str:
    path = spec_dir / name
    path.write_text(text)
    return str(path)


def load_error(path: str, environ: Mapping[str, str] | None = None) -> SpecError:
    with pytest.raises(SpecError) as excinfo:
        load_spec(path, environ=environ or {})
    assert excinfo.value.exit_code == ExitCode.BAD_INPUT
    assert int(excinfo.value.exit_code) == 2
    return excinfo.value


def problem_at(error: SpecError, where: str) -> str:
    """The one problem starting with ``where`` (e.g. ``/x/phoenix.yaml:5: count:``)."""
    matching = [problem for problem in error.problems if problem.startswith(where)]
    assert len(matching) == 1, f"no single problem at {where!r} in:\n{error}"
    return matching[0]


# --- a valid spec -----------------------------------------------------------------------


def test_valid_spec_loads_with_defaults_and_parsed_values(spec_dir: Path) -> None:
    path = write_spec(
        spec_dir,
        spec_text(append="rollout:\n  drain_timeout: 30s\n  deadline: 5m\n  max_surge: 25%\n"),
    )

    spec = load_spec(path, environ={})

    assert isinstance(spec, Spec)
    assert spec.app == "web"
    assert spec.regions == ["r1", "r2"]
    assert spec.rollout.strategy == "blue-green"
    assert spec.rollout.drain_timeout == 30.0
    assert spec.rollout.deadline == 300.0
    assert spec.rollout.max_surge == "25%"
    assert spec.rollout.max_unavailable == 0
    assert spec.health.interval == 2.0
    assert spec.provider.name == "local"
    assert spec.path == Path(path)
    assert spec.template_path == (spec_dir / "cloud-init.j2").resolve()
    assert spec.resolved_vars == {}
    assert spec.secret_values == []


def test_vars_resolve_from_value_env_and_file(spec_dir: Path) -> None:
    (spec_dir / "secrets").mkdir()
    (spec_dir / "secrets" / "db.txt").write_text("db-pass\n\n")
    path = write_spec(
        spec_dir,
        spec_text(
            append=(
                "vars:\n"
                "  greeting: hello\n"
                "  port: 8080\n"
                "  released: 2024-05-01\n"
                "  settings: {env: production, debug: false}\n"
                "  region_name: {value: eu-1}\n"
                "  token: {env: APP_TOKEN, secret: true}\n"
                "  db_password: {file: secrets/db.txt, secret: true}\n"
            )
        ),
    )

    spec = load_spec(path, environ={"APP_TOKEN": "tok-123"})

    assert spec.resolved_vars == {
        "greeting": "hello",
        "port": 8080,
        "released": "2024-05-01",  # dates stay strings
        "settings": {"env": "production", "debug": False},  # a plain mapping var
        "region_name": "eu-1",
        "token": "tok-123",
        "db_password": "db-pass\n",  # exactly one trailing newline stripped
    }
    assert spec.secret_names == frozenset({"token", "db_password"})
    assert sorted(spec.secret_values) == ["db-pass\n", "tok-123"]


def test_env_defaults_to_os_environ(spec_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_TEST_TOKEN", "from-os-environ")
    path = write_spec(
        spec_dir, spec_text(append="vars:\n  token: {env: PHOENIX_TEST_TOKEN, secret: true}\n")
    )

    assert load_spec(path).resolved_vars == {"token": "from-os-environ"}


def test_relative_path_is_reported_as_given(
    spec_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec(spec_dir, spec_text(append="rollout:\n  strategy: rolling\n  max_surge: lots\n"))
    monkeypatch.chdir(spec_dir)

    error = load_error("phoenix.yaml")

    assert error.problems == [
        "phoenix.yaml:11: rollout.max_surge: "
        "expected a count like 1 or a percentage like 25%, got 'lots'"
    ]


# --- bad specs: one problem each, at an exact line and field ------------------------------

# fmt: off
BAD_SPECS = [
    pytest.param(
        spec_text(append="regoins: [r3]\n"),
        9, "regoins", "unknown key; did you mean 'regions'?",
        id="unknown-top-level-key-suggests",
    ),
    pytest.param(
        spec_text(append="team: payments\n"),
        9, "team", "unknown key; expected one of: app, count, dns,",
        id="unknown-top-level-key-lists-allowed",
    ),
    pytest.param(
        spec_text(append="rollout:\n  strategy: rolling\n  max_surgee: 1\n"),
        11, "rollout.max_surgee", "unknown key; did you mean 'max_surge'?",
        id="unknown-nested-key",
    ),
    pytest.param(
        spec_text(replace={7: "health: {http: {port: 80, pathh: /up}}"}),
        7, "health.http.pathh", "unknown key; did you mean 'path'?",
        id="unknown-deeply-nested-key",
    ),
    pytest.param(
        spec_text(replace={5: "count: three"}),
        5, "count", "Input should be a valid integer, got 'three'",
        id="wrong-type",
    ),
    pytest.param(
        spec_text(replace={7: "health: [http]"}),
        7, "health", "Input should be a valid dictionary or instance of HealthSpec",
        id="list-where-mapping-expected",
    ),
    pytest.param(
        spec_text(replace={5: "count: -1"}),
        5, "count", "Input should be greater than or equal to 1, got -1",
        id="negative-count",
    ),
    pytest.param(
        spec_text(append="rollout:\n  max_unavailable: -1\n"),
        10, "rollout.max_unavailable", "cannot be negative",
        id="negative-max-unavailable",
    ),
    pytest.param(
        spec_text(append="rollout:\n  drain_timeout: soon\n"),
        10, "rollout.drain_timeout", "expected a duration like 30s, 5m or 2h, got 'soon'",
        id="bad-duration",
    ),
    pytest.param(
        spec_text(append="rollout:\n  canary:\n    bake: -5\n"),
        11, "rollout.canary.bake", "a duration cannot be negative",
        id="negative-duration-nested",
    ),
    pytest.param(
        spec_text(append="rollout:\n  max_surge: 150%\n"),
        10, "rollout.max_surge", "a percentage cannot exceed 100%",
        id="bad-percent",
    ),
    pytest.param(
        spec_text(replace={3: "image: {id: 4f2a, name: ubuntu-22.04}"}),
        3, "image", "give exactly one of id, name, properties or path (got id, name)",
        id="image-two-selectors",
    ),
    pytest.param(
        spec_text(replace={3: "image: {max_age: 30d}"}),
        3, "image", "give exactly one of id, name, properties or path",
        id="image-no-selector",
    ),
    pytest.param(
        spec_text(replace={7: "health: {http: {port: 80}, tcp: {port: 81}}"}),
        7, "health", "give either http or tcp, not both",
        id="health-http-and-tcp",
    ),
    pytest.param(
        spec_text(replace={7: "health: {mode: active}"}),
        7, "health", "mode active needs an http or a tcp check",
        id="health-active-without-check",
    ),
    pytest.param(
        spec_text(replace={7: "health: {tcp: {port: 22}, interval: 1s, timeout: 5s}"}),
        7, "health", "timeout must not exceed interval",
        id="health-timeout-over-interval",
    ),
    pytest.param(
        spec_text(replace={7: "health: {http: {port: 70000}}"}),
        7, "health.http.port", "Input should be less than or equal to 65535, got 70000",
        id="port-out-of-range",
    ),
    pytest.param(
        spec_text(replace={7: "health: {http: {port: 80, path: healthz}}"}),
        7, "health.http.path", "must start with /",
        id="http-path-not-absolute",
    ),
    pytest.param(
        spec_text(append="rollout:\n  strategy: green\n"),
        10, "rollout.strategy",
        "Input should be 'blue-green', 'rolling' or 'canary', got 'green'",
        id="bad-strategy",
    ),
    pytest.param(
        spec_text(append="provider: {name: aws}\n"),
        9, "provider.name", "unknown provider; use one of memory, local, openstack, libcloud",
        id="bad-provider",
    ),
    pytest.param(
        spec_text(append="count: 4\n"),
        9, "count", "duplicate key",
        id="duplicate-top-level-key",
    ),
    pytest.param(
        spec_text(append="rollout:\n  strategy: rolling\n  strategy: canary\n"),
        11, "rollout.strategy", "duplicate key",
        id="duplicate-nested-key",
    ),
    pytest.param(
        spec_text(replace={7: ""}),
        1, "health", "required field missing",
        id="missing-required-field",
    ),
    pytest.param(
        spec_text(replace={8: "load_balancer: {pool: web}"}),
        8, "load_balancer.member_port", "required field missing",
        id="missing-nested-required-field",
    ),
    pytest.param(
        spec_text(replace={1: "app: Web_App"}),
        1, "app", "use 2-40 lowercase letters, digits and dashes, starting with a letter",
        id="bad-app-name",
    ),
    pytest.param(
        spec_text(replace={2: "regions: [r1, r2, r1]"}),
        2, "regions", "region 'r1' is listed twice",
        id="duplicate-region",
    ),
    pytest.param(
        spec_text(replace={2: ""}, append="regions:\n  - r1\n  - 7\n"),
        11, "regions[1]", "Input should be a valid string, got 7",
        id="list-index-path",
    ),
    pytest.param(
        spec_text(replace={2: "regions: []"}),
        2, "regions", "List should have at least 1 item",
        id="empty-regions",
    ),
    pytest.param(
        spec_text(append="vars:\n  token: {env: APP_TOKEN, value: abc}\n"),
        10, "vars.token", "give exactly one of value, env or file",
        id="var-with-two-sources",
    ),
    pytest.param(
        spec_text(append="vars:\n  token: {evn: APP_TOKEN, secret: true}\n"),
        10, "vars.token.evn", "unknown key; did you mean 'env'?",
        id="secret-var-misspelt-key",
    ),
    pytest.param(
        spec_text(append="dns: {zone: example.org}\n"),
        9, "dns.record", "required field missing",
        id="dns-missing-record",
    ),
]
# fmt: on


@pytest.mark.parametrize(("text", "line", "field", "message"), BAD_SPECS)
def test_bad_spec_reports_file_line_field(
    spec_dir: Path, text: str, line: int, field: str, message: str
) -> None:
    path = write_spec(spec_dir, text)

    error = load_error(path, environ={"APP_TOKEN": "not-used"})

    problem = problem_at(error, f"{path}:{line}: {field}: ")
    assert message in problem
    assert "Value error" not in str(error)


def test_the_brief_example_reads_exactly(spec_dir: Path) -> None:
    text = spec_text(append="rollout:\n  strategy: rolling\n  max_surge: lots\n")
    path = write_spec(spec_dir, text)

    error = load_error(path)

    assert error.problems == [
        f"{path}:11: rollout.max_surge: "
        "expected a count like 1 or a percentage like 25%, got 'lots'"
    ]


def test_all_validation_problems_are_reported_in_line_order(spec_dir: Path) -> None:
    path = write_spec(
        spec_dir,
        spec_text(replace={1: "app: Web", 5: "count: 0"}, append="rollout: {strategy: green}\n"),
    )

    error = load_error(path)

    assert [": ".join(problem.split(": ")[:2]) for problem in error.problems] == [
        f"{path}:1: app",
        f"{path}:5: count",
        f"{path}:9: rollout.strategy",
    ]


def test_duplicate_keys_are_reported_alongside_validation_problems(spec_dir: Path) -> None:
    # PyYAML keeps the last value; its problems point at the last occurrence's line.
    path = write_spec(spec_dir, spec_text(append="count: many\n"))

    error = load_error(path)

    assert error.problems == [
        f"{path}:9: count: duplicate key",
        f"{path}:9: count: Input should be a valid integer, got 'many'",
    ]


def test_merge_keys_point_at_the_anchor(spec_dir: Path) -> None:
    path = write_spec(
        spec_dir,
        spec_text(
            replace={7: ""},
            append="x-defaults: &checks\n  interval: never\nhealth:\n  <<: *checks\n"
            "  tcp: {port: 22}\n",
        ),
    )

    error = load_error(path)

    assert f"{path}:9: x-defaults: unknown key" in str(error)
    assert f"{path}:10: health.interval: expected a duration" in str(error)


# --- files that are not a spec at all ---------------------------------------------------


def test_yaml_syntax_error_reports_its_line(spec_dir: Path) -> None:
    path = write_spec(spec_dir, spec_text(replace={4: "flavor: m1: small"}))

    error = load_error(path)

    assert error.problems == [f"{path}:4: YAML syntax error: mapping values are not allowed here"]


def test_unclosed_flow_mapping_is_a_syntax_error(spec_dir: Path) -> None:
    path = write_spec(spec_dir, "app: web\nregions: [r1\n")

    error = load_error(path)

    assert len(error.problems) == 1
    assert error.problems[0].startswith(f"{path}:3: YAML syntax error: ")


def test_unknown_tag_is_a_yaml_error(spec_dir: Path) -> None:
    path = write_spec(spec_dir, spec_text(replace={5: "count: !!python/int 3"}))

    assert load_error(path).problems[0].startswith(f"{path}:5: YAML error: ")


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here yet\n"])
def test_empty_file(spec_dir: Path, text: str) -> None:
    path = write_spec(spec_dir, text)

    error = load_error(path)

    assert error.problems == [
        f"{path}:1: the file is empty; expected a mapping of spec fields (app, regions, image, ...)"
    ]


@pytest.mark.parametrize(
    ("text", "got"),
    [
        ("# a list\n- app: web\n", "got a list"),
        ("web\n", "got a string 'web'"),
        ("null\n", "got nothing (null)"),
    ],
)
def test_top_level_must_be_a_mapping(spec_dir: Path, text: str, got: str) -> None:
    path = write_spec(spec_dir, text)

    error = load_error(path)

    (problem,) = error.problems
    assert problem.startswith(f"{path}:")
    assert "expected a mapping of spec fields" in problem
    assert problem.endswith(got)


def test_list_at_top_level_points_at_its_first_line(spec_dir: Path) -> None:
    path = write_spec(spec_dir, "# a list\n- app: web\n")

    assert load_error(path).problems[0].startswith(f"{path}:2: ")


def test_missing_spec_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")

    error = load_error(path)

    assert error.problems == [f"{path}: cannot read: No such file or directory"]


def test_spec_path_is_a_directory(tmp_path: Path) -> None:
    error = load_error(str(tmp_path))

    assert error.problems[0].startswith(f"{tmp_path}: cannot read: ")


def test_spec_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "phoenix.yaml"
    path.write_bytes(b"app: \xff\xfe\n")

    assert load_error(str(path)).problems == [f"{path}: cannot read: not UTF-8 text"]


# --- vars, secrets and the template ---------------------------------------------------


def test_missing_env_var_names_field_and_variable_but_no_secret(spec_dir: Path) -> None:
    path = write_spec(
        spec_dir,
        spec_text(
            append="vars:\n"
            "  db_password: {env: DB_PASSWORD, secret: true}\n"
            "  api_token: {env: API_TOKEN, secret: true}\n"
        ),
    )

    error = load_error(path, environ={"DB_PASSWORD": "hunter2-very-secret"})

    assert error.problems == [
        f"{path}:11: vars.api_token: environment variable API_TOKEN is not set;"
        " set it before running phoenix"
    ]
    assert "hunter2-very-secret" not in str(error)


def test_missing_var_file_names_field_and_resolved_path(spec_dir: Path) -> None:
    path = write_spec(
        spec_dir, spec_text(append="vars:\n  tls_key:\n    file: keys/tls.pem\n    secret: true\n")
    )

    error = load_error(path)

    resolved = (spec_dir / "keys" / "tls.pem").resolve()
    assert error.problems == [
        f"{path}:10: vars.tls_key: cannot read file {resolved}: No such file or directory"
    ]


def test_missing_template_file(tmp_path: Path) -> None:
    path = write_spec(tmp_path, spec_text())  # no cloud-init.j2 next to it

    error = load_error(path)

    assert error.problems == [
        f"{path}:6: template: no such file {(tmp_path / 'cloud-init.j2').resolve()}"
    ]


def test_var_and_template_problems_are_reported_together(tmp_path: Path) -> None:
    path = write_spec(tmp_path, spec_text(append="vars:\n  token: {env: APP_TOKEN}\n"))

    error = load_error(path)

    assert [problem.split(": ")[0] for problem in error.problems] == [f"{path}:6", f"{path}:10"]


def test_secret_from_env_is_resolved_but_never_shown(spec_dir: Path) -> None:
    secret = "s3cr3t-token-value"
    text = spec_text(append="vars:\n  token: {env: APP_TOKEN, secret: true}\n")
    path = write_spec(spec_dir, text)

    spec = load_spec(path, environ={"APP_TOKEN": secret})

    assert spec.resolved_vars["token"] == secret
    assert spec.secret_values == [secret]
    assert secret not in repr(spec)
    assert secret not in str(spec)

    # A later check (the template) fails with the secret already resolved.
    (spec_dir / "cloud-init.j2").unlink()
    error = load_error(path, environ={"APP_TOKEN": secret})
    assert "template: no such file" in str(error)
    assert secret not in str(error)


def test_inline_secret_value_is_masked_in_repr(spec_dir: Path) -> None:
    path = write_spec(
        spec_dir, spec_text(append="vars:\n  token: {value: inline-secret, secret: true}\n")
    )

    spec = load_spec(path)

    assert spec.secret_values == ["inline-secret"]
    assert isinstance(spec.vars["token"], SecretVar)
    assert "inline-secret" not in repr(spec)


def test_secret_value_not_echoed_by_validation_errors(spec_dir: Path) -> None:
    path = write_spec(
        spec_dir,
        spec_text(append="vars:\n  token: {value: [inline-secret], secret: true}\n"),
    )

    error = load_error(path)

    assert f"{path}:10: vars.token" in str(error)
    assert "inline-secret" not in str(error)


# --- schema -------------------------------------------------------------------------


def test_json_schema_forbids_unknown_top_level_keys() -> None:
    schema = spec_json_schema()

    assert "rollout" in schema["properties"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"app", "regions", "image", "health", "load_balancer"}


@pytest.mark.parametrize(("path", "suggested"), [
    (("colour",), None), (("regoins",), "regions"), (("flavour",), "flavor"),
    (("health", "intervall"), "interval"), (("vars", "token", "evn"), "env"),
])
def test_did_you_mean_only_for_a_likely_typo(
    path: tuple[str, ...], suggested: str | None
) -> None:
    """Issue 12: the unknown key `colour` suggested `rollout`."""
    from phoenix.spec_loader import _unknown_key_message

    message = _unknown_key_message(path)
    if suggested is None:
        assert "did you mean" not in message and "rollout" in message  # listed, not guessed
    else:
        assert f"did you mean {suggested!r}" in message
