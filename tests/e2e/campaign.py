"""A fault campaign on the in-memory cloud: random faults, crashes and reruns, with the
serving invariants checked after every deploy (issue 11, "Converge from anywhere").

One *scenario* is reproducible from ``(seed, index)`` alone: a fresh cloud with two
regions and a DNS record, one strategy (blue-green, rolling, canary), a count and a
``keep_previous``; a baseline deploy; then one to three rounds, each a new release (or the
same spec again) deployed under faults drawn for that deploy, maybe killed with -9 before
or after a random mutation, then rerun (with the faults still on, or fault-free); and at
the end an unchanged rerun hours later. Every deploy is checked:

* exit 0: exactly ``count`` healthy serving members of the new release in the region DNS
  points at, nothing else in the pool, no node but ``keep_previous`` standbys (out of the
  pool), and no leftovers in the other region unless it was unreachable;
* exit 1: DNS where it was, the previous release serving with ``count`` nodes, no node of
  the failed release anywhere, nothing draining, no stray member;
* exit 3: ``phoenix.status()`` names a problem when there is one, and a fault-free rerun
  converges;
* an unchanged rerun takes no step, changes nothing and stays in its region (also hours
  later);
* DNS moves only away from a region that could not serve (an outage, quota, no capacity,
  a broken network, or every new node failing).

Anything else (``LockHeld`` with no other holder, an exception that is not a
``PhoenixError``, exit 2) is a violation too. A scenario stops at its first violation,
whose message carries the transcript and the command that replays it.

Determinism: faults are drawn by the memory cloud from its seed and what each call acts
on (``phoenix.providers.memory``), the executor runs a plan's steps one after the other
(``deterministic()``), tenacity's jitter comes from the seeded ``random`` module and deploy
ids from a counter, and everything waits on the fake clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import structlog

from phoenix import api
from phoenix import executor as executor_module
from phoenix import log as plog
from phoenix.engine import DeployResult, Event
from phoenix.errors import LockHeld, OutcomeError, PhoenixError
from phoenix.lease import DeployLock
from phoenix.model import Image, MemberState, Node, NodeState
from phoenix.providers.base import Provider
from phoenix.providers.memory import Faults, FaultWindow
from phoenix.spec import Spec

from .conftest import POOL, SimulatedCrash, World, make_world

A, B = "region-a", "region-b"
REGIONS = (A, B)
APP = "web"
ZONE, RECORD = "example.com.", "web"
DNS = f"dns: {{zone: {ZONE}, record: {RECORD}, ttl: 5}}"
DEAD_PID = 4_194_305  # above the kernel's PID_MAX_LIMIT (2**22): never a live process
HEALTH_DEADLINE = 120.0  # health.deadline in conftest's spec
BOOT_SECONDS = 3.0  # make_world's boot time

ROLLOUTS: dict[str, tuple[str, ...]] = {
    "blue-green": ("",),
    "rolling": ("  max_surge: 1\n  max_unavailable: 0", "  max_surge: 0\n  max_unavailable: 1"),
    "canary": ("  canary: {size: 1, bake: 30s}",),
}

COMPUTE_MUTATIONS = frozenset({"create_node", "delete_node", "set_metadata"})
LB_MUTATIONS = frozenset({"add_member", "drain_member", "remove_member", "change_members"})
DNS_MUTATIONS = frozenset({"set_record"})
STORE_MUTATIONS = frozenset({"put", "delete", "create_exclusive"})


def replay_command(seed: int, index: int) -> str:
    return (f".venv/bin/python bench/bench_fault_campaign.py --seed {seed} --index {index}"
            " --verbose")


# --- what a scenario is made of ----------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Fixed for a whole scenario."""

    strategy: str
    rollout: str  # extra rollout: lines (indented), e.g. max_surge
    count: int
    keep_previous: int

    def describe(self) -> str:
        extra = " ".join(line.strip() for line in self.rollout.splitlines() if line.strip())
        return (f"strategy={self.strategy}{' (' + extra + ')' if extra else ''}"
                f" count={self.count} keep_previous={self.keep_previous} regions={A},{B} dns")


@dataclass(frozen=True)
class Crash:
    """kill -9 before or after the ``at``-th mutating call of a deploy."""

    when: str  # before | after
    at: int

    def describe(self) -> str:
        return f"kill -9 {self.when} mutation {self.at}"


@dataclass(frozen=True)
class Span:
    """A fault on ``what`` from ``offset`` seconds after the deploy starts, ``seconds`` long."""

    what: str
    offset: float
    seconds: float

    def describe(self) -> str:
        return f"{self.what}@+{self.offset:g}s/{self.seconds:g}s"


@dataclass(frozen=True)
class DeployFaults:
    """The faults drawn for one deploy (times relative to its start)."""

    api_error_rate: float = 0.0
    lost_response_rate: float = 0.0
    lost_read_rate: float = 0.0
    retry_after: float | None = None
    boot_fail_rate: float = 0.0
    boot_fail_names: tuple[str, ...] = ()
    slow_boot_seconds: float = 0.0
    bad_image: str | None = None  # boot | unhealthy: the new release's image only
    flaps: tuple[Span, ...] = ()  # node names whose health fails for a while
    outages: tuple[Span, ...] = ()  # regions down for a while
    no_host: tuple[str, ...] = ()
    unhealthy_regions: tuple[str, ...] = ()
    quota: tuple[tuple[str, int], ...] = ()  # (region, instances left above what it runs)
    restore: Span | None = None  # on the rollback: "outage" or "flap" for that many seconds

    def describe(self) -> str:
        parts = []
        for name in ("api_error_rate", "lost_response_rate", "lost_read_rate",
                     "boot_fail_rate"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value:.2f}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after:g}")
        if self.boot_fail_names:
            parts.append(f"boot_fail_names={','.join(self.boot_fail_names)}")
        if self.slow_boot_seconds:
            parts.append(f"slow_boot={self.slow_boot_seconds:g}s")
        if self.bad_image:
            parts.append(f"bad_image={self.bad_image}")
        if self.flaps:
            parts.append("flaps=" + ",".join(s.describe() for s in self.flaps))
        if self.outages:
            parts.append("outages=" + ",".join(s.describe() for s in self.outages))
        if self.no_host:
            parts.append(f"no_host={','.join(self.no_host)}")
        if self.unhealthy_regions:
            parts.append(f"unhealthy_regions={','.join(self.unhealthy_regions)}")
        if self.quota:
            parts.append("quota=" + ",".join(f"{r}:+{n}" for r, n in self.quota))
        if self.restore is not None:
            parts.append(f"on_rollback={self.restore.describe()}")
        return " ".join(parts) or "none"

    def region_faults(self) -> set[str]:
        """Regions this deploy made unable to serve (a move away from them is justified)."""
        regions = {s.what for s in self.outages} | set(self.no_host)
        regions |= set(self.unhealthy_regions) | {r for r, _ in self.quota}
        return regions

    def every_node_fails(self) -> bool:
        """Every new node fails in any region: a region-level failure everywhere."""
        return self.bad_image is not None or self.slow_boot_seconds >= 100


@dataclass
class Attempt:
    """One deploy call and how it ended."""

    label: str
    faults: DeployFaults | None
    crash: Crash | None
    code: int | str = 0  # an exit code, "crash" (killed) or "error" (not a PhoenixError)
    result: DeployResult | None = None
    error: BaseException | None = None
    changes: int = 0  # compute and load-balancer mutations
    mutations: int = 0  # every mutating call (store and DNS too)
    dns_before: str | None = None
    dns_after: str | None = None
    seconds: float = 0.0  # by the fake clock

    def describe(self) -> str:
        faults = "fault-free" if self.faults is None else f"faults: {self.faults.describe()}"
        crash = f", {self.crash.describe()}" if self.crash else ""
        if self.code == 0 and self.result is not None:
            end = (f"exit 0 {self.result.outcome} {self.result.release} in"
                   f" {self.result.region} ({self.result.steps} steps)")
        elif self.code == "crash":
            end = f"killed ({self.error})"
        else:
            reason = " | ".join(str(self.error).splitlines())[:400] if self.error else ""
            end = f"exit {self.code} {type(self.error).__name__}: {reason}"
        move = (f"; DNS {self.dns_before} -> {self.dns_after}"
                if self.dns_before != self.dns_after else "")
        return f"{self.label} [{faults}{crash}] -> {end}{move} ({self.seconds:g}s)"


@dataclass(frozen=True)
class Violation:
    kind: str  # the class, e.g. "exit 1: previous release not serving"
    detail: str
    seed: int
    index: int
    transcript: tuple[str, ...]

    @property
    def command(self) -> str:
        return replay_command(self.seed, self.index)

    def report(self) -> str:
        lines = [f"VIOLATION {self.kind}", f"  {self.detail}",
                 f"  scenario seed={self.seed} index={self.index}; replay: {self.command}"]
        lines += [f"    {line}" for line in self.transcript]
        return "\n".join(lines)


@dataclass
class ScenarioReport:
    seed: int
    index: int
    config: Config
    deploys: int = 0
    crashes: int = 0
    reruns: int = 0
    exits: Counter[str] = field(default_factory=Counter)
    transcript: list[str] = field(default_factory=list)
    violation: Violation | None = None


class _Stop(Exception):
    """The scenario hit a violation; it ends here."""


# --- the provider the engine talks to: counts mutations, dies on kill -9 -------------------


@dataclass
class _Wire:
    """State shared by the provider parts of one deploy."""

    mutations: int = 0
    changes: int = 0
    crash: Crash | None = None
    dead: bool = False
    last_region: str | None = None

    def reset(self, crash: Crash | None) -> None:
        self.mutations = self.changes = 0
        self.crash, self.dead = crash, False


class _Part:
    """One provider part. After the crash every call fails: the process is gone."""

    def __init__(self, inner: Any, wire: _Wire, mutating: frozenset[str], *,
                 changing: bool, regional: bool) -> None:
        self._inner = inner
        self._wire = wire
        self._mutating = mutating
        self._changing = changing
        self._regional = regional

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr
        wire = self._wire

        def call(*args: Any, **kwargs: Any) -> Any:
            if wire.dead:
                raise SimulatedCrash("the process was killed")
            if self._regional and args and isinstance(args[0], str):
                wire.last_region = args[0]
            if name not in self._mutating:
                return attr(*args, **kwargs)
            wire.mutations += 1
            number = wire.mutations
            if self._changing:
                wire.changes += 1
            crash = wire.crash
            if crash is not None and crash.when == "before" and crash.at == number:
                wire.dead = True
                raise SimulatedCrash(f"killed before mutation {number} ({name})")
            try:
                return attr(*args, **kwargs)
            finally:
                if crash is not None and crash.when == "after" and crash.at == number:
                    wire.dead = True
                    raise SimulatedCrash(f"killed after mutation {number} ({name})")

        return call


def _provider(world: World, wire: _Wire) -> Provider:
    plain = world.cloud.provider()

    def part(inner: Any, mutating: frozenset[str], *, changing: bool, regional: bool) -> Any:
        return _Part(inner, wire, mutating, changing=changing, regional=regional)

    return Provider(
        name="memory",
        compute=part(plain.compute, COMPUTE_MUTATIONS, changing=True, regional=True),
        load_balancer=part(plain.load_balancer, LB_MUTATIONS, changing=True, regional=True),
        store=part(plain.store, STORE_MUTATIONS, changing=False, regional=False),
        dns=part(plain.dns, DNS_MUTATIONS, changing=False, regional=False),
        health_source=plain.health_source,
        requests=plain.requests,
    )


# --- determinism ---------------------------------------------------------------------------


class _InlinePool:
    """Stands in for the executor's thread pool: each step runs as it is submitted, so the
    order of calls (and of the fake clock's advances) never depends on thread timing."""

    def __init__(self, max_workers: int | None = None) -> None:
        pass

    def __enter__(self) -> _InlinePool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # a crash in a step is that step's outcome
            future.set_exception(exc)
        return future


@contextlib.contextmanager
def deterministic(seed: str, *, quiet: bool = True) -> Iterator[None]:
    """Steps one after the other, seeded jitter, counted deploy ids, (quiet) logs."""
    numbers = iter(range(1, 1 << 30))
    state = random.getstate()
    random.seed(f"jitter:{seed}")
    config = structlog.get_config()
    with contextlib.ExitStack() as stack:
        if hasattr(executor_module, "ThreadPoolExecutor"):
            stack.enter_context(mock.patch.object(executor_module, "ThreadPoolExecutor",
                                                  _InlinePool))
        stack.enter_context(mock.patch.object(plog, "new_deploy_id",
                                              lambda: f"d-{next(numbers):08x}"))
        if quiet:
            structlog.configure(
                wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
        try:
            yield
        finally:
            structlog.configure(**config)
            random.setstate(state)


# --- the scenario runner -----------------------------------------------------------------


class Scenario:
    """Runs scenario ``index`` of campaign ``seed`` in ``tmp`` and checks every deploy."""

    def __init__(self, seed: int, index: int, tmp: Path, *,
                 on_line: Callable[[str], None] | None = None,
                 config: Config | None = None) -> None:
        self.seed, self.index = seed, index
        self.rng = random.Random(f"campaign:{seed}:{index}")
        tmp.mkdir(parents=True, exist_ok=True)
        self.world = make_world(tmp)
        self.cloud = self.world.cloud
        self.clock = self.world.clock
        self.wire = _Wire()
        self.provider = _provider(self.world, self.wire)
        self.on_line = on_line
        rng = self.rng
        strategy = rng.choice(sorted(ROLLOUTS))
        drawn = Config(strategy, rng.choice(ROLLOUTS[strategy]), rng.choice((2, 3, 3, 4)),
                       rng.choice((0, 0, 1, 2)))
        self.config = config or drawn
        self.report = ScenarioReport(seed, index, self.config)
        self.good: list[str] = []  # releases that deployed with exit 0, oldest first
        self.serving: str | None = None  # the release the app serves (after exit 0)
        self.serving_spec: Spec | None = None  # and the spec that deployed it
        self.round_faulted: set[str] = set()  # regions a fault of this round took out
        self.round_all_fail = False  # a fault of this round made every new node fail
        self.round_outages: set[str] = set()  # regions that were down during this round
        self.restored_in: str | None = None
        self._spec_cache: dict[tuple[str, str], Spec] = {}
        self._note(f"scenario seed={seed} index={index}: {self.config.describe()}")

    # --- running -----------------------------------------------------------------------

    def run(self, script: Callable[[Scenario], None] | None = None) -> ScenarioReport:
        """The drawn script, or ``script`` (a test's own steps, e.g. ``converge`` and
        ``deploy_under``); stops at the first violation, which the report holds."""
        with deterministic(f"{self.seed}:{self.index}"), contextlib.suppress(_Stop):
            (script or Scenario._script)(self)
        return self.report

    # --- steps a test can script ---------------------------------------------------------

    def converge(self, version: int) -> None:
        """A fault-free deploy of release ``version`` that must converge."""
        self._converge(self._spec(version), f"deploy v{version}, fault-free")

    def deploy_under(self, version: int, faults: DeployFaults,
                     crash: Crash | None = None) -> None:
        """One round of release ``version`` under ``faults`` (and a crash), with its
        reruns and checks, as the campaign runs it."""
        self._round(self._spec(version), label=f"deploy v{version}", faults=faults,
                    crash=crash)

    def new_release(self, version: int) -> str:
        """The release id the spec of ``version`` resolves to (to name its nodes)."""
        return self._planned(self._spec(version))

    def _script(self) -> None:
        rng = self.rng
        version = 1
        spec = self._spec(version)
        if rng.random() < 0.85:
            self._converge(spec, "baseline deploy")
        else:  # the very first deploy under faults
            self._round(spec, label="first deploy")
        for _ in range(rng.randint(1, 3)):
            self.clock.advance(rng.choice((1, 5, 60)))
            if rng.random() < 0.85:
                version += 1
            spec = self._spec(version)
            self._round(spec, label=f"deploy v{version}")
        if self.serving_spec is not None:
            hours = rng.choice((2, 7, 30))
            self.clock.advance(hours * 3600)
            self._unchanged(self.serving_spec, f"unchanged rerun {hours}h later")

    def _spec(self, version: int) -> Spec:
        image = "golden" if version == 1 else f"golden-v{version}"
        if version > 1 and all(i.name != image for i in self._images()):
            created = datetime(2026, 2, 1, tzinfo=UTC) + timedelta(days=version)
            self.cloud.add_image(Image(f"img-v{version}", image, created))
        key = (image, f"v{version}")
        if key not in self._spec_cache:
            extra = "\n".join(part for part in (
                self.config.rollout,
                f"  keep_previous: {self.config.keep_previous}" if self.config.keep_previous
                else "", DNS) if part)
            self._spec_cache[key] = self.world.spec(
                image=image, greeting=f"v{version}", count=self.config.count,
                strategy=self.config.strategy, extra_rollout=extra)
        return self._spec_cache[key]

    def _images(self) -> list[Image]:
        return list(self.cloud._state.images.values())

    def _image_id(self, spec: Spec) -> str:
        return next(i.id for i in self._images() if i.name == spec.image.name)

    def _converge(self, spec: Spec, label: str) -> Attempt:
        """A fault-free deploy that must end with exit 0 and the invariants of exit 0."""
        attempt = self._deploy(spec, label, None, None)
        if attempt.code != 0:
            self._violation(f"{label.split(',')[0]} did not converge (exit {attempt.code})",
                            attempt.describe())
        self._check_converged(spec, attempt, strict=True)
        return attempt

    def _round(self, spec: Spec, *, label: str, faults: DeployFaults | None = None,
               crash: Crash | None = None) -> None:
        rng = self.rng
        planned = self._planned(spec)
        previous, region_before = self.serving, self._dns_region()
        self.round_faulted, self.round_all_fail, self.round_outages = set(), False, set()
        if faults is None:
            faults = self._draw_faults(spec, planned)
            crash = self._draw_crash()
        attempt = self._deploy(spec, label, faults, crash)
        if attempt.code == "crash":
            self.clock.advance(rng.choice((1, 1, 30, 600)))
            if rng.random() < 0.5:
                again = self._draw_crash() if rng.random() < 0.2 else None
                attempt = self._deploy(spec, "rerun, faults still on", faults, again,
                                       keep_faults=True)
            if attempt.code == "crash":
                self._clear_faults()
                self.clock.advance(1)
                attempt = self._converge(spec, "fault-free rerun")
                self._check_move(region_before, attempt)
                self._after_converged(spec)
                return
        self._check_move(region_before, attempt)
        if attempt.code == 0:
            self._check_converged(spec, attempt, strict=False)
            self._clear_faults()
        elif attempt.code == 1:
            self._check_rolled_back(previous, region_before, planned, attempt)
            self._clear_faults()
            if previous is not None and rng.random() < 0.5:
                return  # the next round starts from the rolled-back state
            self.clock.advance(rng.choice((1, 60)))
            attempt = self._converge(spec, "fault-free rerun after exit 1")
            self._check_move(region_before, attempt)
        elif attempt.code == 3:
            self._check_status(spec, previous, region_before, planned)
            self._clear_faults()
            self.clock.advance(rng.choice((1, 60)))
            attempt = self._converge(spec, "fault-free rerun after exit 3")
            self._check_move(region_before, attempt)
        else:
            self._violation(f"unexpected exit {attempt.code}", attempt.describe())
        self._after_converged(spec)

    def _after_converged(self, spec: Spec) -> None:
        """Leftovers in an unreachable region are cleaned by the next deploy; then a rerun
        of the converged app must change nothing."""
        if self._leftovers():
            self._converge(spec, "rerun to clean up the region left")
        self._unchanged(spec, "unchanged rerun")

    def _unchanged(self, spec: Spec, label: str) -> None:
        region = self._dns_region()
        attempt = self._deploy(spec, label, None, None)
        if attempt.code != 0 or attempt.result is None:
            self._violation(f"{label.split(' ')[0]} rerun of a converged app failed"
                            + (" (hours later)" if "later" in label else ""),
                            attempt.describe())
            return
        result = attempt.result
        problems = []
        if result.outcome != "unchanged" or result.steps:
            problems.append(f"outcome {result.outcome} with {result.steps} step(s):"
                            f" {list(result.history)[:6]}")
        if attempt.changes:
            problems.append(f"{attempt.changes} compute/load-balancer change(s)")
        if result.region != region or attempt.dns_after != region:
            problems.append(f"moved from {region} to {result.region} (DNS {attempt.dns_after})")
        if problems:
            self._violation("unchanged rerun changed something"
                            + (" (hours later)" if "later" in label else ""),
                            "; ".join(problems))
        self._check_converged(spec, attempt, strict=True)

    # --- one deploy --------------------------------------------------------------------

    def _deploy(self, spec: Spec, label: str, faults: DeployFaults | None, crash: Crash | None,
                *, keep_faults: bool = False) -> Attempt:
        report = self.report
        report.deploys += 1
        if "rerun" in label:
            report.reruns += 1
        attempt = Attempt(label, faults, crash, dns_before=self._dns_region())
        started = self.clock.now()
        if faults is not None and not keep_faults:
            self._apply(faults, spec, started)
        self.wire.reset(crash)
        self.restored_in = None

        def on_event(event: Event) -> None:
            if event.kind == "rollback" and faults is not None and faults.restore is not None:
                self._on_rollback(faults.restore)

        try:
            attempt.result = api.deploy(spec, provider=self.provider, clock=self.clock,
                                        on_event=on_event)
        except SimulatedCrash as exc:
            attempt.code, attempt.error = "crash", exc
            report.crashes += 1
            self._after_kill()
        except PhoenixError as exc:
            attempt.code, attempt.error = int(exc.exit_code), exc
            if isinstance(exc, OutcomeError) and isinstance(exc.result, DeployResult):
                attempt.result = exc.result
        except Exception as exc:  # a bug: Phoenix raised what it should have translated
            attempt.code, attempt.error = "error", exc
        attempt.changes, attempt.mutations = self.wire.changes, self.wire.mutations
        attempt.dns_after = self._dns_region()
        attempt.seconds = (self.clock.now() - started).total_seconds()
        report.exits[str(attempt.code)] += 1
        self._note(attempt.describe())
        if attempt.code == "error":
            self._violation(f"phoenix raised {type(attempt.error).__name__}",
                            attempt.describe())
        if isinstance(attempt.error, LockHeld):  # the campaign never runs two deploys at once
            self._violation("spurious lock (exit 4, no other holder)", attempt.describe())
        if attempt.code != "crash" and (holder := self._lease_holder()) is not None:
            self._violation("lease still held after the deploy ended",
                            f"{holder}; {attempt.describe()}")
        return attempt

    def _lease_holder(self) -> str | None:
        faults, self.cloud.faults = self.cloud.faults, Faults()
        try:
            held = DeployLock(self.cloud.provider().store, APP, "campaign").holder()
        finally:
            self.cloud.faults = faults
        return held.owner if held is not None else None

    def _after_kill(self) -> None:
        """What kill -9 leaves: the lease as it was, held by a process that is now dead."""
        for key, data in self.cloud.objects().items():
            if "/lease/" not in key:
                continue
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                info = json.loads(data)
                if isinstance(info, dict) and "pid" in info:
                    info["pid"] = DEAD_PID
                    if isinstance(info.get("owner"), str):
                        info["owner"] = info["owner"].rsplit(":", 1)[0] + f":{DEAD_PID}"
                    self.cloud.put_object(key, json.dumps(info).encode())

    def _planned(self, spec: Spec) -> str:
        return api.plan(spec, provider=self.cloud.provider(), clock=self.clock).release

    # --- faults --------------------------------------------------------------------------

    def _draw_crash(self) -> Crash | None:
        rng = self.rng
        if rng.random() < 0.45:
            return None
        return Crash(rng.choice(("before", "after")), rng.randint(1, 36))

    def _draw_faults(self, spec: Spec, planned: str) -> DeployFaults:
        """Each kind of fault with its own chance; times relative to the deploy's start."""
        rng = self.rng
        count = self.config.count
        new_names = [f"{APP}-{planned}-{i}" for i in range(count)]
        old_names = ([f"{APP}-{self.serving}-{i}" for i in range(count)]
                     if self.serving and self.serving != planned else [])
        same = self.serving == planned
        values: dict[str, Any] = {}
        if rng.random() < 0.6:
            values["api_error_rate"] = round(rng.uniform(0.0, 0.30), 3)
        if rng.random() < 0.5:
            values["lost_response_rate"] = round(rng.uniform(0.0, 0.20), 3)
        if rng.random() < 0.3:
            values["lost_read_rate"] = round(rng.uniform(0.0, 0.15), 3)
        if rng.random() < 0.4:
            values["retry_after"] = rng.choice((0.5, 2.0, 5.0, 30.0))
        if rng.random() < 0.3:
            values["boot_fail_rate"] = round(rng.uniform(0.0, 0.4), 3)
        if rng.random() < 0.25:
            index = rng.randrange(count)
            attempts = rng.randint(1, 3)  # 3: every boot of that index fails
            base = new_names[index]
            values["boot_fail_names"] = tuple(
                base if n == 0 else f"{base}-b{n}" for n in range(attempts))
        if rng.random() < 0.25:
            values["slow_boot_seconds"] = float(rng.choice((10, 40, 90, 130, 200)))
        if not same and rng.random() < 0.12:
            values["bad_image"] = rng.choice(("boot", "unhealthy"))
        if rng.random() < 0.3:
            pool = new_names + old_names
            picked = rng.sample(pool, rng.randint(1, min(2, len(pool))))
            values["flaps"] = tuple(
                Span(name, float(rng.randint(0, 90)), float(rng.choice((1, 3, 8, 30))))
                for name in picked)
        if rng.random() < 0.2:
            values["outages"] = (Span(rng.choice(REGIONS), float(rng.randint(0, 120)),
                                      float(rng.choice((5, 30, 120, 900)))),)
        if rng.random() < 0.08:
            values["no_host"] = (rng.choice(REGIONS),)
        if rng.random() < 0.05:
            values["unhealthy_regions"] = (rng.choice(REGIONS),)
        if rng.random() < 0.08:
            values["quota"] = ((rng.choice(REGIONS), rng.randint(0, count + 2)),)
        if rng.random() < 0.3:
            values["restore"] = Span(rng.choice(("outage", "flap")), 0.0,
                                     float(rng.choice((3, 20, 120))))
        return DeployFaults(**values)

    def _apply(self, faults: DeployFaults, spec: Spec, started: datetime) -> None:
        def at(offset: float) -> datetime:
            return started + timedelta(seconds=offset)

        image = self._image_id(spec)
        windows = [FaultWindow(at(s.offset), at(s.offset + s.seconds),
                               unhealthy_nodes=frozenset({s.what})) for s in faults.flaps]
        windows += [FaultWindow(at(s.offset), at(s.offset + s.seconds),
                                down_regions=frozenset({s.what})) for s in faults.outages]
        self.cloud.faults = Faults(
            api_error_rate=faults.api_error_rate,
            lost_response_rate=faults.lost_response_rate,
            lost_read_rate=faults.lost_read_rate,
            retry_after=faults.retry_after,
            boot_fail_rate=faults.boot_fail_rate,
            boot_fail_names=set(faults.boot_fail_names),
            slow_boot_seconds=faults.slow_boot_seconds,
            boot_fail_images={image} if faults.bad_image == "boot" else set(),
            unhealthy_images={image} if faults.bad_image == "unhealthy" else set(),
            no_host_regions=set(faults.no_host),
            unhealthy_regions=set(faults.unhealthy_regions),
            windows=windows,
        )
        for region, left in faults.quota:
            used = len(self.cloud.servers(region))
            self.cloud.set_quota(region, instances=used + left)
        self.round_faulted |= faults.region_faults()
        self.round_all_fail |= faults.every_node_fails()
        self.round_outages |= {s.what for s in faults.outages}

    def _on_rollback(self, fault: Span) -> None:
        """An outage or a flap of the restored release, as the rollback starts."""
        region = self.wire.last_region or A
        if self.restored_in == region:
            return  # once per region
        self.restored_in = region
        now = self.clock.now()
        end = now + timedelta(seconds=fault.seconds)
        if fault.what == "outage":
            window = FaultWindow(now, end, down_regions=frozenset({region}))
            self.round_faulted.add(region)
            self.round_outages.add(region)
        else:
            names = {n.name for n in self.cloud.servers(region)
                     if n.release == self.serving and n.state is NodeState.ACTIVE}
            window = FaultWindow(now, end, unhealthy_nodes=frozenset(names))
        self.cloud.faults.windows.append(window)

    def _clear_faults(self) -> None:
        self.cloud.faults = Faults()
        for region in REGIONS:
            self.cloud.set_quota(region)

    # --- looking at the cloud (uncounted, no faults) --------------------------------------

    def _address(self, region: str) -> str:
        url = str(self.cloud.provider().load_balancer.url(region, POOL))  # type: ignore[attr-defined]
        return url.split("//")[1].split("/")[0]

    def _dns_region(self) -> str | None:
        record = self.cloud.dns_record(ZONE, RECORD)
        if record is None:
            return None
        for region in REGIONS:
            if record.values == (self._address(region),):
                return region
        return f"? {record.values}"

    def _live(self, region: str) -> list[Node]:
        return [n for n in self.cloud.servers(region) if n.state is not NodeState.DELETING]

    def _healthy(self, node: Node) -> bool:
        """Healthy by the faults that last (a flap window is not a verdict)."""
        faults = self.cloud.faults
        return (node.state is NodeState.ACTIVE
                and node.name not in faults.unhealthy_nodes
                and node.region not in faults.unhealthy_regions
                and self._image_of(node) not in faults.unhealthy_images)

    def _image_of(self, node: Node) -> str:
        server = self.cloud._state.servers[node.region].get(node.id)
        return server.image_id if server is not None else ""

    def _leftovers(self) -> list[str]:
        serving = self._dns_region()
        return [f"{r}: {len(self._live(r))} node(s), {len(self.cloud.members(r, POOL))}"
                " member(s)" for r in REGIONS
                if r != serving and (self._live(r) or self.cloud.members(r, POOL))]

    def _standby_releases(self, current: str) -> set[str]:
        found: list[str] = []
        for release in reversed(self.good):
            if len(found) >= self.config.keep_previous:
                break
            if release != current and release not in found:
                found.append(release)
        return set(found)

    def _pool_problems(self, release: str, region: str, *, healthy: bool,
                       failed: str | None) -> list[tuple[str, str]]:
        """What differs from ``release`` serving alone in ``region`` with ``count``
        members, plus standbys: (class, detail) pairs."""
        count = self.config.count
        problems: list[tuple[str, str]] = []
        nodes = {n.name: n for n in self._live(region)}
        members = self.cloud.members(region, POOL)
        good: list[Node] = []
        for member in members:
            node = nodes.get(member.name)
            if member.state is MemberState.DRAINING:
                problems.append(("member left draining", f"{member.name} in {region}"))
            elif node is None:
                problems.append(("stray member (its server is gone)", f"{member.name} in {region}"))
            elif node.release != release:
                kind = ("failed release's member in the pool" if node.release == failed
                        else "another release's member in the pool")
                problems.append((kind, f"{member.name} in {region}"))
            elif node.state is not NodeState.ACTIVE:
                problems.append(("member not ACTIVE", f"{member.name} is {node.state.value}"))
            elif healthy and not self._healthy(node):
                problems.append(("unhealthy member serving", member.name))
            else:
                good.append(node)
        indexes = sorted(n.index for n in good)
        if indexes != list(range(count)):
            problems.append(("release does not serve with count nodes",
                             f"{release} serves in {region} with {len(good)} of {count} node(s)"
                             f" (indexes {indexes})"))
        in_pool = {m.name for m in members}
        standby = self._standby_releases(release)
        kept: Counter[str] = Counter()
        for node in nodes.values():
            if node.name in in_pool:
                continue
            if node.release in standby and node.state is NodeState.ACTIVE and node.index < count:
                kept[node.release] += 1
                continue
            kind = "failed release's node left" if node.release == failed else "orphan node"
            role = "of a standby release" if node.release in standby else "no standby"
            problems.append((kind, f"{node.name} in {region} ({node.state.value}, {role})"))
        for kept_release, number in kept.items():
            if number > count:
                problems.append(("more standby nodes than count", f"{kept_release}: {number}"))
        return problems

    def _elsewhere(self, region: str | None, *, tolerate: set[str],
                   failed: str | None) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        now = self.clock.now()
        for other in REGIONS:
            if other == region:
                continue
            live, members = self._live(other), self.cloud.members(other, POOL)
            if not live and not members:
                continue
            down = " (down now)" if self.cloud.faults.region_down(other, now) else ""
            if failed is not None and any(n.release == failed for n in live):
                problems.append(("failed release's node left in a region DNS does not point at",
                                 f"in {other}{down}: "
                                 + ", ".join(n.name for n in live if n.release == failed)))
                continue
            if other in tolerate or self.cloud.faults.region_down(other, now):
                continue
            problems.append(("leftovers in a region DNS does not point at",
                             f"{other}: {', '.join(sorted(n.name for n in live)) or '-'};"
                             f" members {', '.join(sorted(m.name for m in members)) or '-'}"))
        return problems

    # --- the invariants ------------------------------------------------------------------------

    def _check_converged(self, spec: Spec, attempt: Attempt, *, strict: bool) -> None:
        result = attempt.result
        assert result is not None
        planned = self._planned_after(spec)
        problems: list[tuple[str, str]] = []
        if result.release != planned:
            problems.append(("wrong release", f"{result.release}, the spec's is {planned}"))
        region = self._dns_region()
        if region != result.region:
            problems.append(("DNS does not point at the deploy's region",
                             f"DNS {region}, deployed in {result.region}"))
        problems += self._pool_problems(result.release, result.region, healthy=True, failed=None)
        # A region that was down may keep what it held until a later deploy reaches it
        # (the cleanup rerun after this one checks that it does).
        noted = {r for r in REGIONS if any(f"left {r} as it is" in h for h in result.history)}
        tolerate = set() if strict else noted | self.round_outages
        problems += self._elsewhere(result.region, tolerate=tolerate, failed=None)
        if problems:
            self._violation("exit 0: " + problems[0][0],
                            "; ".join(f"{k}: {d}" for k, d in problems))
        self.serving, self.serving_spec = result.release, spec
        self.good.append(result.release)

    def _planned_after(self, spec: Spec) -> str:
        # Faults may still be on: ask a cloud without them.
        faults, self.cloud.faults = self.cloud.faults, Faults()
        try:
            return self._planned(spec)
        finally:
            self.cloud.faults = faults

    def _rolled_back_problems(self, previous: str | None, region: str | None,
                              failed: str) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        now_region = self._dns_region()
        if now_region != region:
            problems.append(("DNS moved", f"from {region} to {now_region}"))
        failed_release = None if failed == previous else failed
        if previous is None:
            problems += self._elsewhere(None, tolerate=set(), failed=failed_release)
            return problems
        serving_region = region or A
        problems += self._pool_problems(previous, serving_region, healthy=False,
                                        failed=failed_release)
        problems += self._elsewhere(serving_region, tolerate=set(), failed=failed_release)
        return problems

    def _check_rolled_back(self, previous: str | None, region: str | None, failed: str,
                           attempt: Attempt) -> None:
        problems = self._rolled_back_problems(previous, region, failed)
        left = [a.region for a in (attempt.result.attempts if attempt.result else ())
                if not a.cleaned_up]
        if problems and left:
            self._violation("exit 1, not 3, though a region was not cleaned up",
                            f"attempts in {', '.join(left)} were not cleaned up, and: "
                            + "; ".join(f"{k}: {d}" for k, d in problems))
        if problems:
            self._violation("exit 1: " + problems[0][0],
                            f"expected {previous or 'nothing'} serving in {region or A}: "
                            + "; ".join(f"{k}: {d}" for k, d in problems))

    def _check_status(self, spec: Spec, previous: str | None, region: str | None,
                      failed: str) -> None:
        problems = self._rolled_back_problems(previous, region, failed)
        faults = self.cloud.faults
        # A person runs status when the API answers again; the outage, the sick nodes
        # and what the deploy left stay as they are.
        self.cloud.faults = dataclasses.replace(
            faults, api_error_rate=0.0, lost_response_rate=0.0, lost_read_rate=0.0)
        try:
            status = api.status(spec, provider=self.cloud.provider(), clock=self.clock)
        except PhoenixError as exc:
            self._violation("exit 3: phoenix status failed", f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.cloud.faults = faults
        if problems and not status.problems:
            self._violation("exit 3: status names no problem",
                            "what is wrong: " + "; ".join(f"{k}: {d}" for k, d in problems))

    def _check_move(self, before: str | None, attempt: Attempt) -> None:
        after = self._dns_region()
        origin = before or A
        if after is None or after == origin:
            return
        if origin in self.round_faulted or self.round_all_fail:
            return
        reasons = []
        if attempt.result is not None:
            reasons = [a.describe() for a in attempt.result.attempts if a.outcome == "failed"]
        why = _move_reason(reasons)
        self._violation(f"region move without a region fault ({why})",
                        f"DNS moved {origin} -> {after}; attempts: {reasons}")

    # --- reporting -----------------------------------------------------------------------------

    def _note(self, line: str) -> None:
        self.report.transcript.append(line)
        if self.on_line is not None:
            self.on_line(line)

    def _violation(self, kind: str, detail: str) -> None:
        violation = Violation(kind, detail, self.seed, self.index,
                              tuple(self.report.transcript))
        self.report.violation = violation
        self._note(f"VIOLATION {kind}: {detail}")
        raise _Stop(kind)


def _move_reason(reasons: list[str]) -> str:
    text = " ".join(reasons)
    for needle, name in (("Transient", "API errors outlived the retries"),
                         ("HTTP 503 from the API", "API errors outlived the retries"),
                         ("response was lost", "API errors outlived the retries"),
                         ("failed its health check", "health gate"),
                         ("still", "health deadline"),
                         ("failed 3 time", "boot failures"),
                         ("not healthy enough", "DNS gate"),
                         ("does not pass", "DNS gate")):
        if needle in text:
            return name
    return "other"


# --- a campaign: many scenarios ------------------------------------------------------------


@dataclass
class Summary:
    seed: int
    scenarios: int = 0
    deploys: int = 0
    crashes: int = 0
    reruns: int = 0
    exits: Counter[str] = field(default_factory=Counter)
    violations: dict[str, list[Violation]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, report: ScenarioReport) -> None:
        self.scenarios += 1
        self.deploys += report.deploys
        self.crashes += report.crashes
        self.reruns += report.reruns
        self.exits.update(report.exits)
        if report.violation is not None:
            self.violations.setdefault(report.violation.kind, []).append(report.violation)

    @property
    def violation_count(self) -> int:
        return sum(len(v) for v in self.violations.values())

    def render(self) -> str:
        exits = ", ".join(f"{code}: {n}" for code, n in sorted(self.exits.items()))
        lines = [
            f"fault campaign seed={self.seed}: {self.scenarios} scenarios, {self.deploys}"
            f" deploys, {self.crashes} crashes (kill -9), {self.reruns} reruns,"
            f" {self.seconds:.1f}s",
            f"exit codes: {exits}",
            f"violations: {self.violation_count}",
        ]
        locks = {k: v for k, v in self.violations.items() if k.startswith("spurious lock")}
        others = {k: v for k, v in self.violations.items() if k not in locks}
        for title, group in (("", others), ("lease (reported apart)", locks)):
            if title and group:
                lines.append(f"  -- {title}")
            for kind, found in sorted(group.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                first = found[0]
                lines.append(f"  {len(found):5d}  {kind}")
                lines.append(f"         e.g. {first.command}")
                lines.append(f"         {first.detail[:300]}")
        return "\n".join(lines)


def run_campaign(seed: int, *, deploys: int | None = None, scenarios: int | None = None,
                 start: int = 0, tmp: Path | None = None,
                 on_report: Callable[[ScenarioReport], None] | None = None) -> Summary:
    """Scenarios ``start, start+1, ...`` until ``deploys`` deploys or ``scenarios`` ran."""
    summary = Summary(seed)
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        root = tmp or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        index = start
        while True:
            if deploys is not None and summary.deploys >= deploys:
                break
            if scenarios is not None and summary.scenarios >= scenarios:
                break
            report = Scenario(seed, index, root / f"s{index}").run()
            summary.add(report)
            if on_report is not None:
                on_report(report)
            index += 1
    summary.seconds = time.perf_counter() - began
    return summary
