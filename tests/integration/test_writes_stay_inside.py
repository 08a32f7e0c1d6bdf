"""Issue 12: every file Phoenix writes stays inside its state dir.

``phoenix deploy``, ``status``, ``history`` and ``destroy --yes`` run on the local
provider under ``strace -f``, which follows every process they start (node agents, the
apps, balancers and their supervisors, HAProxy), and strace exits only when all of them
have exited. Every successful syscall that writes to the file system (open for writing,
create, mkdir, rename, unlink, rmdir, link, symlink, truncate, chmod/chown, utimes,
mknod, binding a unix socket) is resolved to an absolute path, relative paths against the
calling process's working directory, and must lie inside the state dir or in a short,
explained allowlist. The spec folder, HOME and TMPDIR (both pointed into the test's own
directory) must get nothing.

Also: a redeploy and ``phoenix rollback`` the same way (a rollback renders the old
release's templates from its record in memory: nothing in $TMPDIR); a traced shell
that does write outside (``touch $HOME/x``, writes relative to a ``cd``, a child
process's ``os.chdir``) which the checker must flag, so a checker that sees nothing
cannot pass; and the parser and allowlist on fixed input.
Each test that traces is skipped where strace is missing or ptrace is not permitted.
"""

from __future__ import annotations

import ast
import bisect
import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.local_processes import (
    free_port,
    kill_everything_under,
    processes_mentioning,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"
STATE_DIR = ".phoenix/local"  # provider.options.state_dir, relative to the spec folder
# The example's regions, local-a and local-b, put their balancers on these addresses.
LB_HOSTS = ["127.1.255.254", "127.2.255.254"]
TIMEOUT = 240.0

BALANCERS = ["builtin"]
if shutil.which("haproxy"):
    BALANCERS.append("haproxy")

# Syscalls that change the file system, by where their path arguments are.
PATH_ARGS: dict[str, tuple[int, ...]] = {  # positions of path arguments
    "open": (0,), "creat": (0,), "mkdir": (0,), "rmdir": (0,), "unlink": (0,),
    "truncate": (0,), "chmod": (0,), "chown": (0,), "lchown": (0,), "mknod": (0,),
    "utimes": (0,), "utime": (0,), "rename": (0, 1), "link": (1,), "symlink": (1,),
}
AT_ARGS: dict[str, tuple[tuple[int, int], ...]] = {  # (dirfd, path) argument positions
    "openat": ((0, 1),), "openat2": ((0, 1),), "mkdirat": ((0, 1),),
    "unlinkat": ((0, 1),), "fchmodat": ((0, 1),), "fchmodat2": ((0, 1),),
    "fchownat": ((0, 1),), "mknodat": ((0, 1),), "utimensat": ((0, 1),),
    "futimesat": ((0, 1),), "renameat": ((0, 1), (2, 3)), "renameat2": ((0, 1), (2, 3)),
    "linkat": ((2, 3),), "symlinkat": ((1, 2),),
}
FD_ARGS = ("ftruncate", "fchmod", "fchown")  # the file is the (decorated) first argument
OPENS = ("open", "openat", "openat2")  # writes only with one of WRITE_FLAGS
WRITE_FLAGS = re.compile(r"\bO_(WRONLY|RDWR|CREAT|TRUNC|TMPFILE|APPEND)\b")
SPAWNS = ("clone", "clone3", "fork", "vfork")  # a child starts in its parent's cwd
CWD_CALLS = ("chdir", "fchdir")
TRACED = sorted({*PATH_ARGS, *AT_ARGS, *FD_ARGS, "bind", *SPAWNS, *CWD_CALLS})

# Writes that are not Phoenix leaving files behind, each with why it is harmless.
ALLOWED_EXACT = {
    "/dev/null",  # detached processes get /dev/null for stdin/stdout/stderr
}
def allowed(path: str, state_dir: Path, spec_dir: Path, syscall: str) -> bool:
    """Inside the state dir, in ALLOWED_EXACT, or the mkdir of a folder between the spec
    folder and the state dir (``mkdir(parents=True)`` of ``.phoenix/local`` creates
    ``.phoenix``: the state dir needs its parents). Not Python's bytecode cache: the
    helpers Phoenix starts run with PYTHONDONTWRITEBYTECODE, so that a fresh clone's
    source tree gets no ``.pyc`` from them."""
    if path in ALLOWED_EXACT or _inside(path, state_dir):
        return True
    return syscall in ("mkdir", "mkdirat") and _inside(str(state_dir), Path(path)) and (
        _inside(path, spec_dir) and Path(path) != spec_dir
    )


def _inside(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root).rstrip("/") + "/")


# --- strace's output -------------------------------------------------------------------

LINE = re.compile(r"^(\d+)\s+(.*)$")
UNFINISHED = " <unfinished ...>"
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>\s?(.*)$")
CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|0x[0-9a-f]+)\b.*$", re.S)
DECORATED = re.compile(r"^(?:-?\d+|AT_FDCWD)<(.*)>$", re.S)


@dataclass(frozen=True)
class Write:
    pid: int
    syscall: str
    path: str  # absolute and normalised; "?" + raw argument when it could not be resolved
    line: str

    def __str__(self) -> str:
        return f"{self.path}    <- {self.line}"


def split_args(text: str) -> list[str]:
    """Top-level arguments of a syscall as strace prints them: commas inside quotes,
    ``{}``, ``[]`` and fd decorations (``3</a,b>``) do not split."""
    args, depth, start, i = [], 0, 0, 0
    quoted = False
    while i < len(text):
        char = text[i]
        if quoted:
            if char == "\\":
                i += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "{[" or (char == "<" and i and (text[i - 1].isdigit()
                                                    or text[i - 1] == "D")):
            depth += 1  # "D": AT_FDCWD<...>
        elif char in "}]>" and depth:
            depth -= 1
        elif char == "," and not depth:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    args.append(text[start:].strip())
    return args


def unquote(arg: str) -> str | None:
    """A C string as strace prints it (``"a\\"b"``, maybe followed by ``...``), or None
    for anything else (NULL, a number)."""
    match = re.match(r'^("(?:[^"\\]|\\.)*")', arg)
    if not match:
        return None
    raw: bytes = ast.literal_eval("b" + match.group(1))
    return os.fsdecode(raw)


def decoration(arg: str) -> str | None:
    """The path ``-y`` printed for an fd (``3</a/b>``, ``AT_FDCWD</cwd>``)."""
    match = DECORATED.match(arg)
    return match.group(1) if match else None


def joined_lines(log: str) -> list[tuple[int, str]]:
    """``(pid, call)`` per finished syscall, an ``<unfinished ...>`` line joined to its
    ``<... resumed>`` line; at the index where it started (when a child is created)."""
    out: list[tuple[int, str]] = []
    pending: dict[int, int] = {}  # pid -> index in out of its unfinished call
    for raw in log.splitlines():
        match = LINE.match(raw)
        if not match:
            continue
        pid, rest = int(match.group(1)), match.group(2)
        resumed = RESUMED.match(rest)
        if resumed and pid in pending:
            index = pending.pop(pid)
            out[index] = (pid, out[index][1] + resumed.group(2))
            continue
        if rest.endswith(UNFINISHED):
            pending[pid] = len(out)
            out.append((pid, rest[: -len(UNFINISHED)]))
            continue
        out.append((pid, rest))
    return out


class Cwds:
    """Each process's working directory over the log: set by chdir/fchdir, learnt from
    ``AT_FDCWD</cwd>`` decorations, inherited from the parent when the child was made."""

    def __init__(self, calls: list[tuple[int, str]], root_cwd: str) -> None:
        self.history: dict[int, tuple[list[int], list[str | None]]] = {}
        self.parent: dict[int, tuple[int, int]] = {}  # child -> (parent, index of spawn)
        self.root = calls[0][0] if calls else None
        self.root_cwd = root_cwd
        for index, (pid, text) in enumerate(calls):
            call = CALL.match(text)
            if call and call.group(1) in SPAWNS and int(call.group(3), 0) > 0:
                self.parent.setdefault(int(call.group(3)), (pid, index))

    def at(self, pid: int, index: int) -> str | None:
        indexes, cwds = self.history.get(pid, ([], []))
        position = bisect.bisect_right(indexes, index)
        if position:
            return cwds[position - 1]
        if pid in self.parent:
            parent, spawned = self.parent[pid]
            return self.at(parent, spawned)
        return self.root_cwd if pid == self.root else None

    def set(self, pid: int, index: int, cwd: str | None) -> None:
        indexes, cwds = self.history.setdefault(pid, ([], []))
        indexes.append(index)
        cwds.append(cwd)


def absolute(path: str, base: str | None) -> str | None:
    if path.startswith("/"):
        return os.path.normpath(path)
    return os.path.normpath(os.path.join(base, path)) if base else None


def writes_in(log: str, root_cwd: Path) -> list[Write]:
    """Every successful file-system write in an ``strace -f -y`` log of TRACED calls."""
    calls = joined_lines(log)
    cwds = Cwds(calls, str(root_cwd))
    found: list[Write] = []
    for index, (pid, text) in enumerate(calls):
        call = CALL.match(text)
        if not call or int(call.group(3), 0) < 0:
            continue
        name, args = call.group(1), split_args(call.group(2))
        fdcwd = re.search(r"\bAT_FDCWD<([^>]*)>", text)
        if fdcwd:  # the kernel's own view of the cwd at this call
            cwds.set(pid, index, fdcwd.group(1))
        line = f"{pid} {text}"

        def add(path: str | None, raw: str, base: str | None, name: str = name,
                line: str = line, pid: int = pid) -> None:
            resolved = absolute(path, base) if path is not None else None
            found.append(Write(pid, name, resolved or f"?{raw}", line))

        if name == "chdir":
            cwds.set(pid, index, absolute(unquote(args[0]) or "", cwds.at(pid, index)))
        elif name == "fchdir":
            cwds.set(pid, index, decoration(args[0]))
        elif name in OPENS and not WRITE_FLAGS.search(text):
            continue
        elif name in PATH_ARGS:
            for position in PATH_ARGS[name]:
                add(unquote(args[position]), args[position], cwds.at(pid, index))
        elif name in AT_ARGS:
            for dirfd, position in AT_ARGS[name]:
                path = unquote(args[position])
                if path is None or path == "":  # utimensat(fd, NULL, ...): the fd itself
                    add(decoration(args[dirfd]), args[dirfd], None)
                else:
                    add(path, args[position], decoration(args[dirfd]))
        elif name in FD_ARGS:
            target = decoration(args[0])
            if target is None or target.startswith("/"):  # not pipe:[..], socket:[..]
                add(target, args[0], None)
        elif name == "bind" and "AF_UNIX" in args[1]:
            sun_path = re.search(r'sun_path=("(?:[^"\\]|\\.)*")', args[1])
            if sun_path:  # sun_path=@"..." is the abstract namespace: no file
                add(unquote(sun_path.group(1)), sun_path.group(1), cwds.at(pid, index))
    return found


def outside(writes: list[Write], state_dir: Path, spec_dir: Path) -> list[Write]:
    return [w for w in writes if not allowed(w.path, state_dir, spec_dir, w.syscall)]


# --- running under strace --------------------------------------------------------------

@functools.cache
def strace_unusable() -> str | None:
    """Why ``strace -f`` cannot run here (not installed, ptrace refused), or None."""
    strace = shutil.which("strace")
    if strace is None:
        return "strace is not installed (apt-get install strace)"
    try:
        probe = subprocess.run([strace, "-f", "-qq", "-o", os.devnull, "true"],
                               capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"strace -f -qq true failed: {exc}"
    if probe.returncode != 0:
        return f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()}"
    return None


@dataclass
class Traced:
    returncode: int
    output: str
    log: str

    def exit_codes(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2))
                for m in re.finditer(r"^@@ (\w+) exited (\d+)$", self.output, re.M)}


def traced_shell(script: str, *, cwd: Path, root: Path, env: dict[str, str]) -> Traced:
    """Run ``sh -c script`` under ``strace -f``; kill whatever mentions ``root`` after."""
    log = root / "strace.log"
    traced = ",".join(f"?{name}" for name in TRACED)  # "?": fine if strace lacks one
    command = ["strace", "-f", "-qq", "-y", "-e", f"trace={traced}",
               "-e", "status=successful", "-o", str(log), "sh", "-c", script]
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the traced commands did not finish in {TIMEOUT}s:\n{output[-4000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_everything_under(root)
    return Traced(process.returncode, output, log.read_text(errors="replace"))


def step(name: str, command: str) -> str:
    return f'{command}; printf "\\n@@ {name} exited %s\\n" "$?"'


@dataclass
class Sandbox:
    root: Path
    spec_dir: Path
    env: dict[str, str]

    @property
    def state_dir(self) -> Path:
        return self.spec_dir / STATE_DIR


def sandbox(tmp_path: Path) -> Sandbox:
    root = tmp_path.resolve()  # strace prints resolved paths
    home, tmp, spec_dir = root / "home", root / "tmp", root / "spec"
    home.mkdir()
    tmp.mkdir()
    spec_dir.mkdir()
    env = dict(os.environ, HOME=str(home), TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    return Sandbox(root, spec_dir, env)


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --- the tests -------------------------------------------------------------------------

@pytest.fixture
def strace() -> None:
    """Skip where strace is missing or may not trace (no ptrace in a container)."""
    reason = strace_unusable()
    if reason:
        pytest.skip(reason)


def copy_example(box: Sandbox, balancer: str) -> str:
    """examples/hello in the spec folder, its state dir STATE_DIR; the phoenix command."""
    shutil.copytree(EXAMPLE, box.spec_dir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".phoenix", "__pycache__"))
    spec = box.spec_dir / "phoenix.yaml"
    text = spec.read_text()
    for old, new in [("state_dir: .phoenix/local", f"state_dir: {STATE_DIR}"),
                     ("balancer: auto", f"balancer: {balancer}"),
                     ("lb_port: 8080", f"lb_port: {free_port(LB_HOSTS)}"),
                     # Under strace a node's app starts slower than the example's two
                     # failed probes half a second apart allow: don't count early misses.
                     ("deadline: 60s", "deadline: 60s\n  grace: 30s"),
                     # The example's backup hook is the user's code, writing where the
                     # user tells it: here, into the state dir, so that whatever else is
                     # written beside the spec is Phoenix's and flagged.
                     ("hooks/backup.py --port 8081",
                      f"hooks/backup.py --port 8081 --into {STATE_DIR}/backups")]:
        assert old in text, f"examples/hello/phoenix.yaml no longer has {old!r}"
        text = text.replace(old, new)
    spec.write_text(text)
    return f"{shlex.quote(sys.executable)} -m phoenix"


def check(box: Sandbox, run: Traced, steps: list[str], before: list[str]) -> list[Write]:
    """The steps all succeeded and the log shows them writing in the state dir; what
    they wrote outside it (and the allowlist)."""
    assert run.exit_codes() == dict.fromkeys(steps, 0), run.output
    assert run.returncode == 0, run.output
    assert not processes_mentioning(box.root)

    writes = writes_in(run.log, box.spec_dir)
    inside = [w for w in writes if _inside(w.path, box.state_dir)]
    # Proof the log was read: nodes, images, records and a unix socket (the balancer's
    # control or admin socket, bound by a path relative to its pool dir) in the state dir.
    assert len(inside) > 50, f"only {len(inside)} writes seen in the state dir"
    assert any("/nodes/" in w.path for w in inside)
    assert any("/images/" in w.path for w in inside)
    assert any("/store/" in w.path for w in inside)
    assert any(w.syscall == "bind" and "/pools/" in w.path for w in inside)

    # On disk too: the spec folder has nothing more than its state dir.
    after = [p for p in tree(box.spec_dir) if not _inside(p, Path(".phoenix"))]
    assert after == before
    return outside(writes, box.state_dir, box.spec_dir)


@pytest.mark.parametrize("balancer", BALANCERS)
@pytest.mark.usefixtures("strace")
def test_deploy_status_history_destroy_write_only_inside_the_state_dir(
    tmp_path: Path, balancer: str
) -> None:
    box = sandbox(tmp_path)
    phoenix = copy_example(box, balancer)
    before = tree(box.spec_dir)
    steps = {"deploy": "deploy", "status": "status", "history": "history",
             "destroy": "destroy --yes"}
    script = "; ".join(step(name, f"{phoenix} {command} phoenix.yaml")
                       for name, command in steps.items())
    run = traced_shell(script, cwd=box.spec_dir, root=box.root, env=box.env)

    bad = check(box, run, list(steps), before)
    assert not bad, "written outside the state dir:\n" + "\n".join(map(str, bad))
    assert tree(box.root / "home") == []
    assert tree(box.root / "tmp") == []


@pytest.mark.usefixtures("strace")
def test_rollback_writes_only_inside_the_state_dir(tmp_path: Path) -> None:
    """A redeploy and a rollback to the first release: the old release's templates are
    rendered from its record in memory, not written to a temporary directory."""
    box = sandbox(tmp_path)
    phoenix = copy_example(box, "builtin")
    second = box.spec_dir / "phoenix-r2.yaml"  # the same app, another release
    second.write_text((box.spec_dir / "phoenix.yaml").read_text()
                      .replace("Hello from Phoenix!", "Hello again!"))
    before = tree(box.spec_dir)
    steps = {"deploy": "deploy phoenix.yaml", "redeploy": "deploy phoenix-r2.yaml",
             "rollback": "rollback --yes phoenix-r2.yaml",
             "destroy": "destroy --yes phoenix.yaml"}
    script = "; ".join(step(name, f"{phoenix} {command}") for name, command in steps.items())
    run = traced_shell(script, cwd=box.spec_dir, root=box.root, env=box.env)

    bad = check(box, run, list(steps), before)
    assert bad == [], "written outside the state dir:\n" + "\n".join(map(str, bad))
    assert tree(box.root / "home") == []
    assert tree(box.root / "tmp") == []


@pytest.mark.usefixtures("strace")
def test_the_checker_flags_writes_outside_the_state_dir(tmp_path: Path) -> None:
    box = sandbox(tmp_path)
    state = box.state_dir
    script = "; ".join([
        f"mkdir -p {STATE_DIR}/a && touch {STATE_DIR}/a/fine",  # inside: not flagged
        'touch "$HOME/x"',                                       # absolute, outside
        "(cd .phoenix && touch ../in-spec)",                     # a subshell's own cwd
        'cd "$TMPDIR" && mkdir made && touch made/relative',     # relative to a chdir
        f"{shlex.quote(sys.executable)} -c "                     # a child process's cwd
        + shlex.quote("import os; os.chdir(os.environ['HOME']); open('py', 'w').close();"
                      " os.rename('py', 'moved')"),
        "echo done",
    ])
    run = traced_shell(script, cwd=box.spec_dir, root=box.root, env=box.env)
    assert run.returncode == 0 and "done" in run.output, run.output

    writes = writes_in(run.log, box.spec_dir)
    assert str(state / "a" / "fine") in {w.path for w in writes}
    flagged = {w.path for w in outside(writes, state, box.spec_dir)}
    home, tmp = box.root / "home", box.root / "tmp"
    expected = {home / "x", tmp / "made", tmp / "made" / "relative",
                box.spec_dir / "in-spec", home / "py", home / "moved"}
    assert {str(p) for p in expected} <= flagged, flagged
    # Nothing else: the mkdir of .phoenix (a parent of the state dir) is the one allowed.
    assert flagged == {str(p) for p in expected}, flagged - {str(p) for p in expected}


def test_the_parser_joins_resumed_calls_and_inherits_cwd() -> None:
    log = "\n".join([
        '10 chdir("/a") = 0',
        "10 clone(child_stack=NULL, flags=SIGCHLD <unfinished ...>",
        '11 mkdir("made", 0777) = 0',  # before the parent's clone returns: cwd /a
        "10 <... clone resumed>) = 11",
        '11 openat(AT_FDCWD</a>, "ro", O_RDONLY|O_CLOEXEC) = 3</a/ro>',
        '11 openat(AT_FDCWD</a>, "w, \\"odd\\"", O_WRONLY|O_CREAT <unfinished ...>',
        "11 <... openat resumed>, 0666) = 3</a/w, \"odd\">",
        '12 unlink("orphan") = 0',  # no known parent and not the root: unresolved
        '10 unlinkat(5</d>, "f", 0) = 0',
        '10 renameat2(AT_FDCWD</a>, "x", 6</e>, "y", RENAME_NOREPLACE) = 0',
        "10 bind(3<socket:[1]>, {sa_family=AF_UNIX, sun_path=@\"abstract\"}, 12) = 0",
        '10 bind(3<socket:[2]>, {sa_family=AF_UNIX, sun_path="s.sock"}, 110) = 0',
        '10 mkdir("/nope", 0777) = -1 EEXIST (File exists)',
    ])
    paths = [w.path for w in writes_in(log, Path("/root-cwd"))]
    assert paths == ["/a/made", '/a/w, "odd"', '?"orphan"', "/d/f", "/a/x", "/e/y",
                     "/a/s.sock"]


def test_the_allowlist_is_narrow() -> None:
    state, spec = Path("/t/spec/.phoenix/local"), Path("/t/spec")
    cache = Path(__file__).resolve().parents[2] / "phoenix" / "__pycache__"
    for path, syscall in [("/t/spec/.phoenix/local/x", "openat"), ("/dev/null", "openat"),
                          ("/t/spec/.phoenix", "mkdir")]:
        assert allowed(path, state, spec, syscall), path
    for path, syscall in [("/t/spec/.phoenix", "openat"), ("/t/spec", "mkdir"),
                          ("/t/spec/.phoenix/other", "mkdir"), ("/t", "mkdir"),
                          ("/t/spec/.phoenix/local2", "mkdir"), ("/dev/null2", "openat"),
                          (f"{cache}/agent.cpython-311.pyc", "openat"), (str(cache), "mkdir"),
                          ("/usr/lib/__pycache__/x.pyc", "openat")]:
        assert not allowed(path, state, spec, syscall), path
