"""Environments: overlays merged over one spec, each its own instance of the app."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from phoenix.environments import deep_merge, is_overlay_of_a_spec
from phoenix.errors import SpecError
from phoenix.release import spec_digest
from phoenix.spec_loader import load_spec, spec_json_schema

BASE = """\
app: web
provider: {name: memory}
regions: [region-a, region-b]
image: {name: golden}
flavor: m1.small
count: 3
template: web.yaml.j2
vars:
  greeting: hello
  colour: blue
health:
  http: {path: /healthz, port: 8080}
  interval: 1s
load_balancer: {pool: web-pool, member_port: 8080}
dns: {zone: example.com., record: www}
"""


def write(folder: Path, text: str, name: str = "phoenix.yaml") -> Path:
    (folder / "web.yaml.j2").write_text("#cloud-config\n")
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_an_overlay_merges_mappings_and_replaces_everything_else(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
environments:
  staging:
    count: 1
    regions: [region-b]
    vars: {greeting: hi from staging}
""")
    staging = load_spec(path, env="staging")
    assert staging.count == 1
    assert staging.regions == ["region-b"]  # a list is replaced, not appended to
    # vars merge key by key: the overlay's greeting, the base's colour
    assert staging.resolved_vars == {"greeting": "hi from staging", "colour": "blue"}
    assert staging.health.interval == 1.0  # untouched by the overlay
    assert staging.environment == "staging"
    assert staging.environments == ("staging",)


def test_each_environment_is_its_own_instance(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "environments: {staging: {count: 1}, prod: {}}\n")
    base, staging, prod = (load_spec(path), load_spec(path, env="staging"),
                           load_spec(path, env="prod"))
    assert (base.app, staging.app, prod.app) == ("web", "web-staging", "web-prod")
    pools = {s.load_balancer.pool for s in (base, staging, prod)}
    assert pools == {"web-pool", "web-pool-staging", "web-pool-prod"}
    assert staging.dns is not None and staging.dns.record == "www-staging"
    assert base.environment is None


def test_an_overlay_may_name_its_instance_itself(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
environments:
  prod:
    app: web
    load_balancer: {pool: web-pool}
    dns: {record: www}
""")
    prod = load_spec(path, env="prod")
    assert (prod.app, prod.load_balancer.pool) == ("web", "web-pool")
    assert prod.dns is not None and prod.dns.record == "www"
    assert prod.load_balancer.member_port == 8080  # the rest of the mapping is the base's


def test_the_base_release_ignores_the_environments(tmp_path: Path) -> None:
    """An edit to staging's overlay must not make production's release a new one."""
    plain = load_spec(write(tmp_path, BASE))
    with_envs = load_spec(write(tmp_path, BASE + "environments: {staging: {count: 1}}\n"))
    changed = load_spec(write(tmp_path, BASE + "environments: {staging: {count: 2}}\n"))
    assert spec_digest(plain) == spec_digest(with_envs) == spec_digest(changed)


def test_a_file_beside_the_spec_adds_to_an_environment(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "environments: {staging: {count: 1}}\n")
    write(tmp_path, "vars: {greeting: from the side file}\n", "phoenix.staging.yaml")
    write(tmp_path, "count: 2\n", "phoenix.qa.yaml")  # defines an environment alone
    staging = load_spec(path, env="staging")
    assert staging.count == 1
    assert staging.resolved_vars["greeting"] == "from the side file"
    assert load_spec(path, env="qa").count == 2
    assert load_spec(path).environments == ("qa", "staging")


def test_problems_name_the_file_and_line_that_set_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """\
environments:
  staging:
    count: 0
    health: {intervall: 2s}
""")
    write(tmp_path, "vars: {}\nrollout: {strategy: sideways}\n", "phoenix.staging.yaml")
    with pytest.raises(SpecError) as raised:
        load_spec(path, env="staging")
    problems = raised.value.problems
    assert f"{path}:18: count: Input should be greater than or equal to 1, got 0" in problems
    assert any(p.startswith(f"{path}:19: health.intervall: unknown key; did you mean"
                            " 'interval'?") for p in problems), problems
    side = tmp_path / "phoenix.staging.yaml"
    assert any(p.startswith(f"{side}:2: rollout.strategy:") for p in problems), problems
    # The base spec is fine: the overlay's problems are only the environment's.
    assert load_spec(path).count == 3


@pytest.mark.parametrize(
    ("environments", "expected"),
    [
        ("environments: [staging]", "environments: expected a mapping of environment name"),
        ("environments: {Staging: {}}", "environments.Staging: invalid environment name"),
        ("environments: {../x: {}}", "invalid environment name"),
        ("environments: {qa: 3}", "environments.qa: expected a mapping of the fields"),
        ("environments: {qa: {environments: {}}}", "an environment cannot define environments"),
    ],
)
def test_malformed_environments_are_refused_at_their_line(
    tmp_path: Path, environments: str, expected: str
) -> None:
    path = write(tmp_path, BASE + environments + "\n")
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    assert any(f"{path}:16: " in p and expected in p for p in raised.value.problems), (
        raised.value.problems)


@pytest.mark.parametrize("env", ["prod", "../../etc", "Prod", ""])
def test_an_unknown_or_hostile_env_is_refused(tmp_path: Path, env: str) -> None:
    path = write(tmp_path, BASE + "environments: {staging: {}}\n")
    (tmp_path.parent / "etc.yaml").write_text("count: 9\n")  # what a traversal would read
    with pytest.raises(SpecError) as raised:
        load_spec(path, env=env)
    message = str(raised.value)
    assert ("no such environment (defined: staging)" in message
            or "not an environment name" in message), message


def test_a_folder_of_specs_skips_the_environments_files(tmp_path: Path) -> None:
    spec = write(tmp_path, BASE)
    side = write(tmp_path, "count: 1\n", "phoenix.staging.yaml")
    other = write(tmp_path, BASE, "other.v2.yaml")  # no other.yaml: an app of its own
    assert not is_overlay_of_a_spec(spec)
    assert is_overlay_of_a_spec(side)
    assert not is_overlay_of_a_spec(other)


def test_deep_merge() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "e": None}) == {
        "a": {"b": 1, "c": [3]}, "d": 1, "e": None}
    assert deep_merge(base, {"a": 5}) == {"a": 5, "d": 1}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # the base is left as it was


def test_the_schema_documents_environments() -> None:
    schema = spec_json_schema()
    assert "environments" in schema["properties"]
