"""The CLI's start-up stays light (issue 15): `phoenix --version` and `--help` load neither
the library (pydantic, jinja2, httpx, structlog, ...) nor the cloud SDKs, and rich only
where typer renders help with it; `validate` loads no provider SDK and no metrics code.

Each case runs in a fresh interpreter, so what an earlier test imported cannot hide a
regression; the check is which modules got loaded, never how long it took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello" / "phoenix.yaml"

# The Phoenix library and its third-party dependencies: only a command that uses them
# may load them.
LIBRARY = (
    "phoenix.api",
    "phoenix.engine",
    "phoenix.spec",
    "phoenix.render",
    "phoenix.log",
    "pydantic",
    "jinja2",
    "yaml",
    "httpx",
    "tenacity",
    "structlog",
    "prometheus_client",
    "jsonschema",
)
# Cloud SDKs: only when a spec's provider needs them.
SDKS = ("openstack", "keystoneauth1", "libcloud")
TERMINAL = ("rich",)

_PROBE = """
import json, sys
sys.argv = ["phoenix", *json.loads(sys.argv[1])]
import phoenix.cli
code = None
if len(sys.argv) > 1:
    try:
        phoenix.cli.main()
    except SystemExit as exc:
        code = exc.code
print()
print("PROBE:" + json.dumps({"code": code, "loaded": sorted(
    name for name in sys.modules if name.split(".")[0] in WATCHED or name in WATCHED)}))
"""


def _loaded(args: list[str]) -> tuple[object, set[str]]:
    """Run ``phoenix ARGS`` (or only ``import phoenix.cli`` without args) in a fresh
    interpreter: its exit code and which of the watched modules it loaded."""
    watched = [*LIBRARY, *SDKS, *TERMINAL]
    code = _PROBE.replace("WATCHED", repr(set(watched)))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PHOENIX_", "TYPER_", "_TYPER"))}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    probes = [line for line in done.stdout.splitlines() if line.startswith("PROBE:")]
    assert probes, f"no probe output; stderr:\n{done.stderr}"
    result = json.loads(probes[-1].removeprefix("PROBE:"))
    return result["code"], set(result["loaded"])


def _tops(loaded: set[str], names: tuple[str, ...]) -> set[str]:
    """Which of ``names`` (a package counts when any of its modules is loaded) are loaded."""
    return {name for name in names
            if any(mod == name or mod.startswith(name + ".") for mod in loaded)}


def test_importing_the_cli_loads_no_library_sdk_or_rich() -> None:
    code, loaded = _loaded([])
    assert code is None
    assert _tops(loaded, LIBRARY + SDKS + TERMINAL) == set()


def test_version_loads_no_library_sdk_or_rich() -> None:
    code, loaded = _loaded(["--version"])
    assert code == 0
    assert _tops(loaded, LIBRARY + SDKS + TERMINAL) == set()


def test_help_loads_no_library_or_sdk() -> None:
    # rich may load: typer renders the help with it.
    code, loaded = _loaded(["--help"])
    assert code == 0
    assert _tops(loaded, LIBRARY + SDKS) == set()


@pytest.mark.parametrize(
    "args", [["validate", "--help"], ["image", "list", "--help"], ["drill", "--help"]],
    ids=" ".join,
)
def test_a_command_help_loads_no_phoenix_library_or_sdk(args: list[str]) -> None:
    # Past the top level, typer checks the global options' values with pydantic
    # TypeAdapters (typer >= 0.2x), so pydantic loads; the rest must not.
    code, loaded = _loaded(args)
    assert code == 0
    assert _tops(loaded, tuple(n for n in LIBRARY if n != "pydantic") + SDKS) == set()


def test_validate_of_the_example_loads_no_sdk_and_no_metrics() -> None:
    code, loaded = _loaded(["validate", str(EXAMPLE)])
    assert code == 0
    assert _tops(loaded, (*SDKS, "prometheus_client")) == set()
