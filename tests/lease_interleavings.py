"""Drive several lease holders through every interleaving of their store calls.

Each actor runs the real ``DeployLock`` code in its own thread, but a ``Turnstile`` lets
exactly one actor run at a time, and only until its next store call: the schedule (which
parked actor goes next, or which one crashes there) is the only source of
nondeterminism. ``explore`` enumerates schedules depth-first (stateless model checking:
each run replays a prefix of choices and records the choice points it met), so every
interleaving of short programs is tried; ``sample`` draws seeded random ones for longer
programs.

Time is simulated: every actor reads one shared fake clock plus its own skew, and a
sleep advances the shared clock (only the running actor can sleep, so this is
deterministic). An actor that is not scheduled while others sleep is a *stalled* actor
(SIGSTOP, a laptop lid): exactly the case the lease must fence.

Invariants, checked while the schedule runs (the world is serialized, so the checker sees
the store as it is at each step):

* **fence**: whenever an actor's fence check passes, its generation is the newest in the
  store and the newest was created by that actor;
* **one holder**: at most one actor believes it holds the newest generation;
* **mutations**: each mutation carries its actor's generation, and a mutation made while
  a newer generation exists is the first one after a fence that passed before that
  generation was created (the one-call window the module documents), never a second;
* **liveness**: when every actor is done (released, refused, crashed, or stopped), a new
  actor can take the lease.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from phoenix.clock import FakeClock
from phoenix.errors import LeaseLost, LockHeld
from phoenix.lease import DeployLock, LockInfo
from phoenix.providers.base import Store

START = datetime(2026, 6, 1, tzinfo=UTC)
TTL = 40.0
MAX_SKEW = 600.0
"""Actors' clocks differ from the world's by at most this many seconds."""
MUTATION_PREFIX = "world/"


Chooser = Callable[[list[str], "str | None"], str]
"""Given the parked actors and the one that ran last, the next: a name, or "crash NAME"."""


class Crash(BaseException):
    """Raised in an actor the schedule crashes (kill -9): it stops where it stands."""


class Violation(AssertionError):
    pass


class SkewedClock:
    """One actor's view of the shared time: ``skew`` seconds off; sleeping advances the
    shared time (the world waits for the one running actor)."""

    def __init__(self, world: FakeClock, skew: float) -> None:
        self.world = world
        self.skew = skew

    def now(self) -> datetime:
        return self.world.now() + timedelta(seconds=self.skew)

    def sleep(self, seconds: float) -> None:
        self.world.advance(seconds)


@dataclass
class Actor:
    name: str
    skew: float = 0.0
    program: str = "deploy"  # deploy | contend
    mutations: int = 2
    lock: Any = None
    outcome: str = "running"  # held-and-released | refused | lost | crashed
    last_fence_ok_step: int | None = None
    mutations_since_fence: int = 0
    thread: threading.Thread | None = None
    parked: bool = False
    go: threading.Event = field(default_factory=threading.Event)
    crash: bool = False


class Turnstile:
    """Serializes actors at their store calls and runs the checker after each call."""

    def __init__(self, store: Store, actors: list[Actor], choose: Chooser,
                 world: FakeClock, lock_class: type[DeployLock]) -> None:
        self.store = store
        self.actors = {a.name: a for a in actors}
        self.choose = choose
        self.world = world
        self.lock_class = lock_class
        self.step = 0
        self.mutations: list[tuple[str, int, int]] = []  # (actor, generation, newest)
        self.created_at_step: dict[int, int] = {}
        self.writes: dict[int, list[datetime]] = {}  # each generation's writes, world time
        self.highest = 0  # the highest generation ever created
        self.violations: list[str] = []
        self._cv = threading.Condition()
        self._running: str | None = None

    # --- the store the actors see ---------------------------------------------------------

    def store_for(self, actor: Actor) -> Store:
        turnstile = self

        class ActorStore:
            def put(self, key: str, data: bytes) -> None:
                turnstile._park(actor)
                turnstile._mutation_check(actor, key, data)
                turnstile.store.put(key, data)
                if "/lease/" in key:
                    turnstile.writes.setdefault(int(key.rsplit("/", 1)[1]), []).append(
                        turnstile.world.now())

            def get(self, key: str) -> bytes | None:
                turnstile._park(actor)
                return turnstile.store.get(key)

            def list(self, prefix: str) -> list[str]:
                turnstile._park(actor)
                return turnstile.store.list(prefix)

            def delete(self, key: str) -> None:
                turnstile._park(actor)
                turnstile.store.delete(key)

            def create_exclusive(self, key: str, data: bytes) -> bool:
                turnstile._park(actor)
                if "/lease/" in key:
                    turnstile._takeover_check(actor, int(key.rsplit("/", 1)[1]))
                created = turnstile.store.create_exclusive(key, data)
                if created and "/lease/" in key:
                    turnstile._created(int(key.rsplit("/", 1)[1]))
                return created

        return ActorStore()  # type: ignore[return-value]

    def _park(self, actor: Actor) -> None:
        with self._cv:
            actor.parked = True
            self._running = None
            self._cv.notify_all()
            self._cv.wait_for(lambda: self._running == actor.name)
            actor.parked = False
            if actor.crash:
                raise Crash()
            self.step += 1

    # --- the world's truth ------------------------------------------------------------------

    def newest(self) -> tuple[int, LockInfo | None]:
        generations = [int(k.rsplit("/", 1)[1]) for k in self.store.list("apps/web/lease/")]
        if not generations:
            return 0, None
        newest = max(generations)
        data = self.store.get(f"apps/web/lease/{newest:012d}")
        return newest, LockInfo.parse(data, newest) if data is not None else None

    def _created(self, generation: int) -> None:
        self.created_at_step[generation] = self.step
        self.writes[generation] = [self.world.now()]
        self.highest = max(self.highest, generation)

    def _takeover_check(self, actor: Actor, generation: int) -> None:
        """Taking over a lease nobody released is fine only from a holder that went
        quiet: at some point it did not write its generation for a whole TTL (world
        time). A holder that renewed on time must never lose the lease."""
        before = self.store.get(f"apps/web/lease/{generation - 1:012d}")
        info = LockInfo.parse(before, generation - 1) if before is not None else None
        if info is None or info.released or self.store.get(
                f"apps/web/lease/{generation:012d}") is not None:
            return
        times = [*self.writes.get(generation - 1, [START]), self.world.now()]
        longest = max((b - a).total_seconds() for a, b in itertools.pairwise(times))
        if longest < TTL:
            self.violations.append(
                f"step {self.step}: {actor.name} takes generation {generation} over from"
                f" {info.deploy_id}, who never went {TTL:g}s without renewing (longest gap"
                f" {longest:g}s): a live holder")

    def fence_passed(self, actor: Actor) -> None:
        newest, info = self.newest()
        generation = actor.lock.generation
        if generation is not None and generation < self.highest:
            self.violations.append(
                f"step {self.step}: {actor.name}'s fence passed with generation {generation}"
                f" after generation {self.highest} existed (generations went back)")
        if newest != generation or info is None or info.deploy_id != actor.name:
            self.violations.append(
                f"step {self.step}: {actor.name}'s fence passed with generation {generation},"
                f" but the newest is {newest} ({info.deploy_id if info else None})")
        actor.last_fence_ok_step = self.step
        actor.mutations_since_fence = 0
        self._one_holder()

    def _one_holder(self) -> None:
        newest, info = self.newest()
        believers = [a.name for a in self.actors.values()
                     if a.lock is not None and a.lock.generation == newest
                     and a.outcome == "running" and info is not None and not info.released]
        if len(believers) > 1:
            self.violations.append(f"step {self.step}: {believers} all hold generation {newest}")

    def _mutation_check(self, actor: Actor, key: str, data: bytes) -> None:
        if not key.startswith(MUTATION_PREFIX):
            self._one_holder()
            return
        generation = int(data)
        newest, _ = self.newest()
        self.mutations.append((actor.name, generation, newest))
        if actor.lock is None or generation != actor.lock.generation:
            self.violations.append(f"step {self.step}: {actor.name} mutated with generation"
                                   f" {generation}, not its own")
        if newest != generation:
            fenced_at = actor.last_fence_ok_step
            created = self.created_at_step.get(newest, -1)
            if fenced_at is None or fenced_at > created or actor.mutations_since_fence > 0:
                self.violations.append(
                    f"step {self.step}: {actor.name} mutated with generation {generation}"
                    f" while {newest} exists (its last fence: step {fenced_at}, generation"
                    f" {newest} created at step {created})")
        actor.mutations_since_fence += 1

    # --- running ----------------------------------------------------------------------------

    def run(self) -> None:
        for actor in self.actors.values():
            actor.thread = threading.Thread(target=self._body, args=(actor,), daemon=True)
        with self._cv:
            for actor in self.actors.values():
                assert actor.thread is not None
                self._running = actor.name  # let it run up to its first store call
                actor.thread.start()
                self._cv.wait_for(lambda a=actor: a.parked or a.outcome != "running")
            current: str | None = None
            while True:
                waiting = sorted(a.name for a in self.actors.values() if a.parked)
                if not waiting:
                    break
                choice = self.choose(waiting, current)
                name = choice.removeprefix("crash ")
                current = name
                actor = self.actors[name]
                actor.crash = choice.startswith("crash ")
                self._running = name
                self._cv.notify_all()
                self._cv.wait_for(lambda a=actor: (a.parked and self._running is None)
                                  or a.outcome != "running")
        for actor in self.actors.values():
            assert actor.thread is not None
            actor.thread.join(5)

    def _body(self, actor: Actor) -> None:
        lock = self.lock_class(self.store_for(actor), "web", actor.name, ttl=TTL)
        lock.host = f"host-{actor.name}"  # every actor is alive as far as the others know
        lock.pid = 1000 + ord(actor.name[0])
        lock.turnstile, lock.actor = self, actor  # type: ignore[attr-defined]
        actor.lock = lock
        clock = SkewedClock(self.world, actor.skew)
        try:
            _program(actor, lock, clock, self.store_for(actor))
        except Crash:
            outcome = "crashed"
        except LeaseLost:
            outcome = "lost"
        except LockHeld:
            outcome = "refused"
        except BaseException as exc:
            outcome = "error"
            self.violations.append(f"{actor.name} raised {type(exc).__name__}: {exc}")
        else:
            outcome = "done"
        with self._cv:
            actor.outcome = outcome
            self._running = None
            self._cv.notify_all()


def _program(actor: Actor, lock: DeployLock, clock: SkewedClock, store: Store) -> None:
    tries = 1 if actor.program == "deploy" else 3
    for attempt in range(tries):
        try:
            generation = lock.acquire(clock)
            break
        except LockHeld:
            if attempt == tries - 1:
                raise
            clock.sleep(TTL * 0.75)  # a contender retrying later: time passes meanwhile
    for index in range(actor.mutations):
        lock.heartbeat(clock.now())
        store.put(f"{MUTATION_PREFIX}{actor.name}-{index}", str(generation).encode())
        clock.sleep(TTL / 8)
    lock.release(clock.now())


class CheckedLock(DeployLock):
    """The real lock, reporting each passed fence check to the turnstile."""

    def fence(self, now: datetime | None = None) -> None:
        super().fence(now)
        self.turnstile.fence_passed(self.actor)  # type: ignore[attr-defined]


# --- schedules -------------------------------------------------------------------------------


@dataclass
class Result:
    schedules: int = 0
    complete: bool = False
    violations: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


def run_one(make_store: Callable[[], Store], actors: list[Actor], choose: Chooser,
            lock_class: type[DeployLock] = CheckedLock) -> list[str]:
    """Run the actors under one schedule; the violations found (empty: none)."""
    world = FakeClock(START)
    store = make_store()
    turnstile = Turnstile(store, actors, choose, world, lock_class)
    turnstile.run()
    violations = list(turnstile.violations)
    if not violations:
        violations += _liveness(store, world)
    return violations


def _liveness(store: Store, world: FakeClock) -> list[str]:
    """Whatever the actors left, a newcomer gets the lease: at once after a release, else
    once a crashed holder's lease expired (by the newcomer's clock: a holder whose clock
    ran ahead by minutes delays this by as much) and then proved dead for one TTL."""
    newcomer = DeployLock(store, "web", "newcomer", ttl=TTL)
    newcomer.host = "host-newcomer"
    clock = SkewedClock(world, 0.0)
    for _ in range(int((MAX_SKEW + 2 * TTL) / TTL) + 1):
        try:
            newcomer.acquire(clock)
            return []
        except LockHeld:
            clock.sleep(TTL)
        except BaseException as exc:
            return [f"liveness: the newcomer raised {type(exc).__name__}: {exc}"]
    return ["liveness: a newcomer never got the lease"]


def _tally(result: Result, actors: list[Actor]) -> None:
    result.schedules += 1
    for actor in actors:
        result.outcomes[actor.outcome] = result.outcomes.get(actor.outcome, 0) + 1


def explore(make_store: Callable[[], Store], make_actors: Callable[[], list[Actor]],
            *, limit: int, preemptions: int = 2, crashes: bool = True,
            lock_class: type[DeployLock] = CheckedLock) -> Result:
    """Every schedule with at most ``preemptions`` preemptions (switching away from an
    actor that could go on, or crashing it), depth-first, up to ``limit`` runs; stops at
    the first violation. Bounding preemptions, not steps, is what makes "every
    interleaving" of real code finite (CHESS); races need only a few."""
    result = Result()
    prefix: list[int] = []
    while result.schedules < limit:
        replay = _Replay(prefix, preemptions, crashes)
        actors = make_actors()
        violations = run_one(make_store, actors, replay.choose, lock_class)
        _tally(result, actors)
        if violations:
            result.violations = [f"schedule {prefix}: {v}" for v in violations]
            return result
        following = replay.next_prefix()
        if following is None:
            result.complete = True
            return result  # every schedule within the bound was tried
        prefix = following
    return result


class _Replay:
    """One depth-first run: replays ``prefix`` of choices, then takes the first option;
    remembers how many options each choice point had, to find the next schedule."""

    def __init__(self, prefix: list[int], preemptions: int, crashes: bool) -> None:
        self.prefix = prefix
        self.preemptions = preemptions
        self.crashes = crashes
        self.sizes: list[int] = []
        self.used = 0

    def choose(self, waiting: list[str], current: str | None) -> str:
        runnable = current in waiting
        ordered = ([current] if current is not None and runnable else [])
        ordered += [w for w in waiting if w != current]
        if self.crashes:
            ordered += [f"crash {w}" for w in waiting]
        allowed = ordered[:1] if runnable and self.used >= self.preemptions else ordered
        position = len(self.sizes)
        pick = self.prefix[position] if position < len(self.prefix) else 0
        self.sizes.append(len(allowed))
        choice = allowed[pick]
        if runnable and choice != current:
            self.used += 1
        return choice

    def next_prefix(self) -> list[int] | None:
        taken = self.prefix + [0] * (len(self.sizes) - len(self.prefix))
        while taken and taken[-1] + 1 >= self.sizes[len(taken) - 1]:
            taken.pop()
        if not taken:
            return None
        taken[-1] += 1
        return taken


def sample(make_store: Callable[[], Store], make_actors: Callable[[], list[Actor]],
           *, runs: int, seed: int, lock_class: type[DeployLock] = CheckedLock) -> Result:
    """``runs`` random schedules from ``seed`` (a crash is rarer than a step)."""
    result = Result()
    rng = random.Random(seed)
    for run in range(runs):
        def choose(waiting: list[str], current: str | None) -> str:
            if rng.random() < 0.03:
                return "crash " + rng.choice(waiting)
            return rng.choice(waiting)

        actors = make_actors()
        violations = run_one(make_store, actors, choose, lock_class)
        _tally(result, actors)
        if violations:
            result.violations = [f"seed {seed} run {run}: {v}" for v in violations]
            return result
    return result
