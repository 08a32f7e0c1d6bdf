"""Hostile specs (issue 12, items 2, 3 and 5): every input is refused fast, by place.

Numbers that are not finite or absurd, names that would reach a shell, a config file or
a path outside the state dir, and YAML built to exhaust memory, time or the stack: each
is a ``SpecError`` (exit 2) naming ``file:line: field``, in well under a second, and the
CLI prints it without a traceback. The HAProxy config writer and the local provider's
state paths refuse the same names again (defence in depth).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from phoenix import cli as phoenix_cli
from phoenix.clock import SystemClock
from phoenix.errors import ExitCode, InputError, SpecError
from phoenix.providers.local.balancer import BalancerConfig
from phoenix.providers.local.haproxy import render_config
from phoenix.providers.local.provider import open_local_provider, state_child
from phoenix.render import RenderContext, render_user_data
from phoenix.spec_loader import load_spec

# One top-level key per line, so a case can replace line N and expect its error at N.
BASE = [
    "app: web",  # 1
    "regions: [r1, r2]",  # 2
    "image: {name: ubuntu-22.04}",  # 3
    "flavor: m1.small",  # 4
    "count: 3",  # 5
    "template: cloud-init.j2",  # 6
    "health: {http: {port: 8080}}",  # 7
    "load_balancer: {pool: web, member_port: 8080}",  # 8
]
FAST = 2.0  # seconds; every case here takes milliseconds when it is refused up front


def spec_text(replace: dict[int, str] | None = None, append: str = "") -> str:
    lines = list(BASE)
    for number, text in (replace or {}).items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n" + append


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "cloud-init.j2").write_text("#cloud-config\n")
    return tmp_path


def refused(spec_dir: Path, text: str) -> tuple[str, SpecError]:
    path = spec_dir / "phoenix.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(SpecError) as excinfo:
        load_spec(path, environ={})
    assert time.monotonic() - started < FAST
    assert excinfo.value.exit_code == ExitCode.BAD_INPUT
    return str(path), excinfo.value


def assert_problem(error: SpecError, where: str, says: str) -> None:
    matching = [p for p in error.problems if p.startswith(where)]
    assert matching, f"no problem at {where!r} in:\n{error}"
    assert any(says in p for p in matching), f"{says!r} not in {matching}"


# --- item 2: numbers ----------------------------------------------------------------------

NUMBERS = [
    # (id, replace, append, line, field, says)
    ("deadline-inf", {7: "health: {http: {port: 8080}, deadline: .inf}"}, "",
     7, "health.deadline", "not finite"),
    ("deadline-nan", {7: "health: {http: {port: 8080}, deadline: .nan}"}, "",
     7, "health.deadline", "not finite"),
    ("deadline-huge", {7: "health: {http: {port: 8080}, deadline: 99999999999999999999d}"}, "",
     7, "health.deadline", "at most 7d"),
    ("deadline-zero", {7: "health: {http: {port: 8080}, deadline: 0s}"}, "",
     7, "health.deadline", "at least 10ms"),
    ("grace-inf", {7: "health: {http: {port: 8080}, grace: .inf}"}, "",
     7, "health.grace", "not finite"),
    ("interval-inf", {7: "health: {http: {port: 8080}, interval: .inf}"}, "",
     7, "health.interval", "not finite"),
    ("interval-zero", {7: "health: {http: {port: 8080}, interval: 0s, timeout: 0s}"}, "",
     7, "health.interval", "at least 10ms"),
    ("threshold-bool", {7: "health: {http: {port: 8080}, healthy_threshold: true}"}, "",
     7, "health.healthy_threshold", "valid integer"),
    ("threshold-high", {7: "health: {http: {port: 8080}, unhealthy_threshold: 101}"}, "",
     7, "health.unhealthy_threshold", "less than or equal to 100"),
    ("rollout-deadline-inf", {}, "rollout:\n  deadline: .inf\n",
     10, "rollout.deadline", "not finite"),
    ("rollout-deadline-zero", {}, "rollout:\n  deadline: 0s\n",
     10, "rollout.deadline", "at least 1s"),
    ("rollout-deadline-8d", {}, "rollout:\n  deadline: 8d\n",
     10, "rollout.deadline", "at most 7d, got 8d"),
    ("drain-inf", {}, "rollout:\n  drain_timeout: .inf\n",
     10, "rollout.drain_timeout", "not finite"),
    ("bake-huge", {}, "rollout:\n  canary: {bake: 1000d}\n",
     10, "rollout.canary.bake", "at most 7d"),
    ("count-bool", {5: "count: true"}, "", 5, "count", "valid integer"),
    ("count-float", {5: "count: 3.0"}, "", 5, "count", "valid integer"),
    ("count-huge", {5: "count: 100000"}, "", 5, "count", "less than or equal to 10000"),
    ("canary-above-count", {}, "rollout:\n  strategy: canary\n  canary: {size: 4}\n",
     11, "rollout.canary.size", "cannot be larger than count (3)"),
    ("canary-zero", {}, "rollout:\n  canary: {size: 0}\n",
     10, "rollout.canary.size", "at least 1"),
    ("surge-huge", {}, "rollout:\n  max_surge: 99999999\n",
     10, "rollout.max_surge", "at most 10000"),
    ("port-bool", {7: "health: {http: {port: true}}"}, "",
     7, "health.http.port", "valid integer"),
    ("port-high", {8: "load_balancer: {pool: web, member_port: 70000}"}, "",
     8, "load_balancer.member_port", "less than or equal to 65535"),
    ("ttl-zero", {}, "dns: {zone: example.com., record: www, ttl: 0}\n",
     9, "dns.ttl", "greater than or equal to 1"),
    ("max-age-inf", {3: "image: {name: ubuntu, max_age: .inf}"}, "",
     3, "image.max_age", "not finite"),
]


@pytest.mark.parametrize(
    ("replace", "append", "line", "field", "says"),
    [pytest.param(*case[1:], id=case[0]) for case in NUMBERS],
)
def test_numbers_out_of_range_are_refused_at_their_line(
    spec_dir: Path, replace: dict[int, str], append: str, line: int, field: str, says: str
) -> None:
    path, error = refused(spec_dir, spec_text(replace, append))
    assert_problem(error, f"{path}:{line}: {field}: ", says)


def test_sane_bounds_still_load(spec_dir: Path) -> None:
    path = spec_dir / "phoenix.yaml"
    path.write_text(
        spec_text(
            {7: "health: {http: {port: 8080}, interval: 10ms, timeout: 10ms, deadline: 7d}"},
            "rollout:\n  strategy: canary\n  canary: {size: 3, bake: 0s}\n  deadline: 7d\n"
            "  drain_timeout: 0s\n",
        )
    )
    spec = load_spec(path, environ={})
    assert spec.health.deadline == 7 * 86400
    assert spec.rollout.canary.size == 3


# --- item 3: names ------------------------------------------------------------------------

NAMES = [
    ("region-shell", {2: "regions: ['r1\"; touch X; echo \"', r2]"}, "", 2, "regions[0]"),
    ("region-newline", {2: 'regions: ["r1\\nstats socket /tmp/x level admin", r2]'}, "",
     2, "regions[0]"),
    ("region-slash", {2: "regions: [../../etc, r2]"}, "", 2, "regions[0]"),
    ("region-space", {2: "regions: [r1, 'r 2']"}, "", 2, "regions[1]"),
    ("pool-newline", {8: 'load_balancer: {pool: "web\\n  stats socket x", member_port: 8080}'},
     "", 8, "load_balancer.pool"),
    ("pool-abs-dir", {8: "load_balancer: {pool: /tmp, member_port: 8080}"}, "",
     8, "load_balancer.pool"),
    ("pool-dotdot", {8: "load_balancer: {pool: .., member_port: 8080}"}, "",
     8, "load_balancer.pool"),
    ("zone-newline", {}, 'dns: {zone: "example.com.\\nx", record: www}\n', 9, "dns.zone"),
    ("zone-space", {}, "dns: {zone: 'example .com', record: www}\n", 9, "dns.zone"),
    ("record-quote", {}, "dns: {zone: example.com., record: \"w'w\"}\n", 9, "dns.record"),
    ("record-final-dot", {}, "dns: {zone: example.com., record: www.}\n", 9, "dns.record"),
    ("app-shell", {1: "app: 'web;rm'"}, "", 1, "app"),
    ("check-path-newline", {7: 'health: {http: {port: 8080, path: "/h\\nstats socket x"}}'}, "",
     7, "health.http.path"),
    ("check-path-space", {7: "health: {http: {port: 8080, path: /a b}}"}, "",
     7, "health.http.path"),
]


@pytest.mark.parametrize(
    ("replace", "append", "line", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in NAMES],
)
def test_unsafe_names_are_refused_at_their_line(
    spec_dir: Path, replace: dict[int, str], append: str, line: int, field: str
) -> None:
    path, error = refused(spec_dir, spec_text(replace, append))
    assert_problem(error, f"{path}:{line}: {field}: ", "use ")


def test_names_the_examples_use_still_load(spec_dir: Path) -> None:
    path = spec_dir / "phoenix.yaml"
    path.write_text(
        spec_text(
            {2: "regions: [RegionOne, local-a, us-east-1, r_2]",
             8: "load_balancer: {pool: hello-pool, member_port: 8080}"},
            "dns: {zone: example.com., record: api.v2}\n",
        )
    )
    spec = load_spec(path, environ={})
    assert spec.regions == ["RegionOne", "local-a", "us-east-1", "r_2"]
    assert spec.dns is not None and spec.dns.zone == "example.com."


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            BalancerConfig(Path("/tmp/p"), "127.1.255.254", 8080, check_path="/h\nstats socket x"),
            id="check-path-newline",
        ),
        pytest.param(
            BalancerConfig(Path("/tmp/p\nstats socket /x level admin"), "127.1.255.254", 8080),
            id="pool-dir-newline",
        ),
        pytest.param(
            BalancerConfig(Path("/tmp/p"), "127.0.0.1 # x", 8080), id="listen-host-space"
        ),
    ],
)
def test_haproxy_config_refuses_anything_but_plain_words(config: BalancerConfig) -> None:
    with pytest.raises(InputError, match="cannot go into an HAProxy config"):
        render_config(config)


def test_haproxy_config_still_renders_plain_values() -> None:
    text = render_config(BalancerConfig(Path("/tmp/p-1"), "127.1.255.254", 8080, "/healthz"))
    assert "option httpchk GET /healthz" in text


@pytest.mark.parametrize("name", ["/some/existing/dir", "..", ".", "", "a/b", "a\nb", ".hidden"])
def test_state_paths_refuse_names_that_would_leave_the_state_dir(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(InputError, match="not usable as a name"):
        state_child(tmp_path / "pools", name, "pool")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"lb_port": True}, "lb_port"),
        ({"lb_port": 70000}, "lb_port"),
        ({"max_nodes": True}, "max_nodes"),
        ({"max_nodes": 10**9}, "max_nodes"),
    ],
)
def test_local_provider_options_refuse_bools_and_absurd_numbers(
    tmp_path: Path, options: dict[str, object], says: str
) -> None:
    with pytest.raises(InputError, match=f"provider.options.{says}"):
        open_local_provider(
            {"state_dir": str(tmp_path / "state"), "balancer": "builtin", **options},
            ["r1"],
            clock=SystemClock(),
        )
    assert not (tmp_path / "state").exists()


def test_state_paths_keep_plain_names_inside(tmp_path: Path) -> None:
    pools = tmp_path / "pools"
    assert state_child(pools, "hello-pool", "pool") == pools / "hello-pool"


def test_quote_filter_makes_one_shell_word(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text('#cloud-config\nruncmd:\n  - {{ ("echo " ~ (vars.x | quote)) | tojson }}\n')
    context = RenderContext(
        app="web", release="r1", region="r1", index=0, vars={"x": "a'; touch X; echo '"}
    )
    text = render_user_data(template, context)

    assert yaml.safe_load(text)["runcmd"] == ["echo 'a'\"'\"'; touch X; echo '\"'\"''"]


# --- item 5: resource exhaustion ----------------------------------------------------------


def _alias_bomb(levels: int = 10, width: int = 9) -> str:
    lines = ["vars:", "  a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


EXHAUSTION = [
    # (id, text, line, says)
    ("alias-bomb", spec_text(append=_alias_bomb()), 15, "alias *a4 takes the document past"),
    ("recursive-alias", spec_text(append="vars:\n  x: &a [*a]\n"), 10, "inside its own anchor"),
    ("deep-nesting", spec_text(append="vars:\n  x: " + "[" * 20_000 + "]" * 20_000 + "\n"),
     10, "nested more than 64 levels"),
    ("deep-block-nesting",
     spec_text(append="vars:\n" + "".join("  " * (d + 1) + f"k{d}:\n" for d in range(100))),
     72, "nested more than 64 levels"),
    ("huge-int", spec_text(append="vars:\n  x: " + "9" * 5000 + "\n"),
     10, "longer than 100 digits"),
]


@pytest.mark.parametrize(
    ("text", "line", "says"), [pytest.param(*case[1:], id=case[0]) for case in EXHAUSTION]
)
def test_exhausting_yaml_is_refused_fast_at_its_line(
    spec_dir: Path, text: str, line: int, says: str
) -> None:
    path, error = refused(spec_dir, text)
    assert len(error.problems) == 1
    assert error.problems[0].startswith(f"{path}:{line}: ")
    assert says in error.problems[0]


def test_a_file_over_one_mebibyte_is_refused_before_parsing(spec_dir: Path) -> None:
    path, error = refused(spec_dir, spec_text(append="# " + "x" * (1024 * 1024) + "\n"))
    assert error.problems == [
        f"{path}: the file is larger than 1024 KiB; a spec is a few kilobytes"
        " (is this the right file?)"
    ]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(spec_text(append=_alias_bomb()), id="alias-bomb"),
        pytest.param(spec_text(append="vars:\n  x: " + "[" * 20_000 + "]" * 20_000 + "\n"),
                     id="deep-nesting"),
        pytest.param(spec_text({7: "health: {http: {port: 8080}, deadline: .inf}"}),
                     id="deadline-inf"),
        pytest.param(spec_text({2: "regions: ['r1\"; touch X; echo \"', r2]"}), id="region-shell"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_cli_exits_2_with_the_place_and_no_traceback(
    spec_dir: Path, text: str, command: str
) -> None:
    path = spec_dir / "phoenix.yaml"
    path.write_text(text)
    started = time.monotonic()
    result = CliRunner().invoke(phoenix_cli.app, [command, str(path)])
    assert time.monotonic() - started < FAST
    assert result.exit_code == 2, result.output
    assert f"{path}:" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.output) < 2000
