"""One helper per job (issue 16): processes are found, checked and stopped only in
``phoenix/processes.py``, files are replaced and locked only in ``phoenix/files.py``,
and nothing sleeps but a clock. Six /proc parsers, four SIGTERM-then-SIGKILL loops, five
atomic writes (not all of them durable), six flock wrappers and seven ``time.sleep``
loops that no fake clock could drive had grown apart before."""

from __future__ import annotations

import ast
from pathlib import Path

import phoenix
from tests.source_tree import no_finalizers

ROOT = Path(phoenix.__file__).parent

# (module, name) -> the only files that may use it
_OWNERS = {
    ("fcntl", "*"): {"files.py"},
    ("psutil", "*"): {"processes.py"},
    ("os", "replace"): {"files.py"},
    ("os", "fsync"): {"files.py"},
    ("os", "link"): {"files.py"},
    ("os", "kill"): {"processes.py"},
    ("os", "killpg"): {"processes.py"},
    ("os", "waitpid"): {"processes.py"},
    ("time", "sleep"): {"clock.py"},
    ("tempfile", "mkstemp"): set(),
}


def _uses(tree: ast.AST) -> list[tuple[str, str, int]]:
    """(module, name, line) of every ``module.name`` and ``from module import name``,
    and ("/proc", text, line) of every string that names a /proc path."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found.append((node.value.id, node.attr, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, "*", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and "/proc" in node.value
              # a socket path too long for sun_path is reached through our own fd table
              and not node.value.startswith("/proc/self/fd/")):
            found.append(("/proc", node.value, node.lineno))
    return found


def _owners(module: str, name: str) -> set[str] | None:
    if module == "/proc":
        return {"processes.py"}
    return _OWNERS.get((module, name), _OWNERS.get((module, "*")))


def test_each_job_has_one_helper() -> None:
    strays = []
    paths = sorted(ROOT.rglob("*.py"))
    with no_finalizers():  # see tests/source_tree.py
        trees = [ast.parse(path.read_text(), str(path.relative_to(ROOT))) for path in paths]
    for path, tree in zip(paths, trees, strict=True):
        relative = str(path.relative_to(ROOT))
        for module, name, line in _uses(tree):
            owners = _owners(module, name)
            if owners is not None and relative not in owners:
                strays.append(f"{relative}:{line}: {module}.{name}")
    assert strays == [], (
        "use phoenix.processes (find/stop/kill), phoenix.files (atomic_write/locked) or"
        " phoenix.waiting.wait_until instead"
    )


def test_the_check_sees_what_it_forbids() -> None:
    """The scan itself finds each kind of use (or the test above would pass vacuously)."""
    source = '''
"""A docstring may mention /proc/<pid>/stat and time.sleep."""
import fcntl
from os import replace
import time
def f():
    time.sleep(1)
    return open(f"/proc/{1}/cmdline"), "/proc/self/fd/3"
'''
    uses = {(module, name) for module, name, _ in _uses(ast.parse(source))}
    assert {("fcntl", "*"), ("os", "replace"), ("time", "sleep"), ("/proc", "/proc/")} <= uses
    assert not any("self/fd" in name or "docstring" in name for _, name in uses)
