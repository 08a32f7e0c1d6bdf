"""The library's public surface: what `import phoenix` promises."""

from __future__ import annotations

import inspect

import phoenix

EXPECTED = {
    "load_spec", "validate", "plan", "deploy", "rollback", "status", "history", "destroy",
    "DeployResult", "PlanReport", "StatusReport", "DestroyResult", "DeployRecord",
    "DeployFailed", "RestoreFailed", "LockHeld", "Interrupted", "SpecError", "ExitCode",
}


def test_all_matches_the_lazy_exports() -> None:
    assert phoenix.__all__ == sorted(phoenix._EXPORTS)


def test_importing_phoenix_stays_light() -> None:
    """Node agents import phoenix.*: the package itself must not pull the library in."""
    import subprocess
    import sys

    code = "import sys, phoenix; print('phoenix.api' in sys.modules, 'pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_all_lists_the_documented_api() -> None:
    assert set(phoenix.__all__) >= EXPECTED
    for name in phoenix.__all__:
        assert hasattr(phoenix, name), name


def test_every_public_function_is_documented_and_keyword_friendly() -> None:
    for name in ("validate", "plan", "deploy", "rollback", "status", "history", "destroy"):
        fn = getattr(phoenix, name)
        assert inspect.getdoc(fn), f"{name} has no docstring"
        params = list(inspect.signature(fn).parameters.values())
        assert params[0].name == "spec"
        assert all(p.kind is p.KEYWORD_ONLY for p in params[1:]), name


def test_exit_codes_match_the_architecture() -> None:
    assert phoenix.DeployFailed.exit_code == 1
    assert phoenix.SpecError.exit_code == 2
    assert phoenix.RestoreFailed.exit_code == 3
    assert phoenix.LockHeld.exit_code == 4
    assert phoenix.Interrupted.exit_code == 130


def test_core_never_imports_the_terminal_libraries() -> None:
    import pathlib

    root = pathlib.Path(phoenix.__file__).parent
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[0] == "cli":  # the CLI package is the terminal layer
            continue
        text = path.read_text()
        for banned in ("import typer", "from typer", "import rich", "from rich"):
            assert banned not in text, f"{path.name} imports the terminal layer ({banned})"
