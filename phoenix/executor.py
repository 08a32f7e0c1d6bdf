"""The executor: the only code that calls providers to change the cloud.

Steps of one plan are independent by construction, so they run concurrently on a small
thread pool. Each call is retried (``phoenix.retrying``) when the provider says the error
is transient (5xx, 429 with Retry-After, timeouts), with exponential backoff and jitter,
bounded in attempts; permanent errors (quota, auth, bad request) fail fast. Waits go
through the injected clock so tests never sleep.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from phoenix import api_calls
from phoenix.errors import NotFound
from phoenix.hook_points import HookPoints
from phoenix.ledger import Ledger
from phoenix.log import get_logger
from phoenix.model import (
    META_DRAIN_SINCE,
    META_SERVING_SINCE,
    MemberAction,
    MemberChange,
    NodeRequest,
)
from phoenix.providers.base import Clock, MemberBatcher, Provider, Store
from phoenix.retrying import RetryingCaller, RetryPolicy
from phoenix.steps import (
    AddMember,
    CreateNode,
    DeleteNode,
    DrainMember,
    RemoveMember,
    StampServing,
    Step,
)

T = TypeVar("T")
COMPUTE, IMAGE, LB, DNS, STORE = api_calls.SERVICES
log = get_logger("phoenix.executor")


class Executor:
    """Runs the steps of a plan against one region of a provider."""

    def __init__(
        self,
        provider: Provider,
        *,
        region: str,
        pool: str,
        clock: Clock,
        build_request: Callable[[CreateNode], NodeRequest],
        retry: RetryPolicy | None = None,
        workers: int = 8,
        guard: Callable[[], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        ledger: Ledger | None = None,
        hooks: HookPoints | None = None,
    ) -> None:
        self.provider = provider
        self.region = region
        self.pool = pool
        self.clock = clock
        self.build_request = build_request
        self.workers = workers
        self.caller = RetryingCaller(provider, clock=clock, retry=retry, guard=guard,
                                     sleep=sleep)
        # Where the poll's stamps go (one write per poll); None: each server's metadata.
        self.ledger = ledger
        # The spec's lifecycle hooks, run right before the steps they belong to.
        self.hooks = hooks

    @property
    def guard(self) -> Callable[[], None] | None:
        """The lease's fence, run before every attempt of a mutation."""
        return self.caller.guard

    @guard.setter
    def guard(self, guard: Callable[[], None] | None) -> None:
        self.caller.guard = guard

    def run(self, steps: tuple[Step, ...] | list[Step]) -> None:
        """Execute every step; the first permanent error is raised after all finish.

        The poll's drain stamps land first (a crash between a stamp and its drain leaves
        a serving member with a stamp, which the planner simply drains again), its
        serving stamps after the members joined. With a ledger each of those is one
        write; with a ``MemberBatcher`` the poll's member steps are one call beside the
        server steps. A poll then costs O(1) writes for stamps and members.

        The steps' lifecycle hooks run first (``HookPoints.before``): a hook that must
        abort raises ``HookFailed`` before any step of the poll has run."""
        if not steps:
            return
        if self.hooks is not None:
            self.hooks.before(steps)
        errors: list[BaseException | None] = []
        drains = [s for s in steps if isinstance(s, DrainMember)]
        if drains:
            errors = self._parallel([partial(self._stamp, drains)])
            if errors[0] is not None:  # not stamped: no drain may start
                steps = [s for s in steps if not isinstance(s, DrainMember)]
        serving = [s for s in steps if isinstance(s, StampServing)]
        rest = [s for s in steps if not isinstance(s, StampServing)]
        lb = self.provider.load_balancer
        if isinstance(lb, MemberBatcher) and any(isinstance(s, _MEMBER_STEPS) for s in rest):
            members = [s for s in rest if isinstance(s, _MEMBER_STEPS)]
            tasks: list[Callable[[], None]] = [
                partial(self.apply, s) for s in rest if not isinstance(s, _MEMBER_STEPS)]
            tasks.append(partial(self._change_members, lb, members))
            done = self._parallel(tasks)
            joined_failed = done[-1] is not None
        else:
            done = self._parallel([partial(self.apply, s) for s in rest])
            joined_failed = any(e is not None for s, e in zip(rest, done, strict=True)
                                if isinstance(s, AddMember))
        errors += done
        if serving and not joined_failed:
            errors += self._parallel([partial(self._stamp, serving)])
        _raise_first(errors)

    def _stamp(self, steps: Sequence[Step]) -> None:
        """The stamps of ``steps`` (drains, or serving): one ledger write, or without a
        ledger one metadata write per server."""
        now = self.clock.now().isoformat()
        updates: dict[str, dict[str, str]] = {}
        for step in steps:
            if isinstance(step, StampServing):
                log.info("step", action="StampServing", detail=step.describe())
                updates[step.node_id] = {META_SERVING_SINCE: now, META_DRAIN_SINCE: ""}
            elif isinstance(step, DrainMember):
                updates.setdefault(step.node_id, {})[META_DRAIN_SINCE] = now
        ledger, compute, region = self.ledger, self.provider.compute, self.region
        if ledger is not None:
            self._mutate(lambda: ledger.stamp(updates), STORE)
            return
        _raise_first(self._parallel([
            partial(self._mutate, partial(compute.set_metadata, region, node_id, fields), COMPUTE)
            for node_id, fields in updates.items()]))

    def _parallel(self, tasks: Sequence[Callable[[], None]]) -> list[BaseException | None]:
        """Run ``tasks`` on the pool (one: inline); each one's exception, or None."""
        if len(tasks) == 1:
            try:
                tasks[0]()
            except Exception as exc:
                return [exc]
            return [None]
        if not tasks:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(tasks))) as pool:
            futures = [pool.submit(contextvars.copy_context().run, task) for task in tasks]
            return [f.exception() for f in futures]

    def _change_members(self, lb: MemberBatcher, steps: Sequence[Step]) -> None:
        changes = []
        for step in steps:
            log.info("step", action=type(step).__name__, detail=step.describe())
            match step:
                case AddMember(name=name, address=address, port=port):
                    changes.append(MemberChange(MemberAction.ADD, name, address, port))
                case DrainMember(name=name):
                    changes.append(MemberChange(MemberAction.DRAIN, name))
                case RemoveMember(name=name):
                    changes.append(MemberChange(MemberAction.REMOVE, name))
        region, pool = self.region, self.pool
        self._mutate(lambda: lb.change_members(region, pool, changes), LB)

    def apply(self, step: Step) -> None:
        """One step, with retries; idempotent so a retry after a lost response is safe.
        (A drain is stamped by ``run`` first; ``apply`` alone only drains.)"""
        log.info("step", action=type(step).__name__, detail=step.describe())
        compute, lb, region, pool = (
            self.provider.compute,
            self.provider.load_balancer,
            self.region,
            self.pool,
        )
        match step:
            case CreateNode():
                request = self.build_request(step)
                self._mutate(lambda: compute.create_node(region, request), COMPUTE)
            case DeleteNode(node_id=node_id):
                self._mutate(
                    lambda: _ignore_missing(lambda: compute.delete_node(region, node_id)), COMPUTE)
            case AddMember(name=name, address=address, port=port):
                self._mutate(lambda: lb.add_member(region, pool, name, address, port), LB)
            case StampServing():
                self._stamp([step])
            case DrainMember(name=name):
                # Its stamp is ``run``'s job, done before any drain of the poll.
                self._mutate(
                    lambda: _ignore_missing(lambda: lb.drain_member(region, pool, name)), LB)
            case RemoveMember(name=name):
                self._mutate(lambda: lb.remove_member(region, pool, name), LB)

    def call(self, fn: Callable[[], T], service: str = COMPUTE) -> T:
        """A read of the provider's ``service``, retried (``RetryingCaller.call``)."""
        return self.caller.call(fn, service)

    def _mutate(self, fn: Callable[[], T], service: str) -> T:
        """A change to the cloud: the lease's guard runs before every attempt."""
        return self.caller.mutate(fn, service)


_MEMBER_STEPS = (AddMember, DrainMember, RemoveMember)


def _raise_first(errors: list[BaseException | None]) -> None:
    for error in errors:
        if error is not None:
            raise error


def _ignore_missing(fn: Callable[[], None]) -> None:
    with contextlib.suppress(NotFound):
        fn()


class RetryingStore:
    """A Store whose calls are retried like every other provider call.

    Records and the deploy lock go through the store; a transient error there must not
    fail a deploy that the servers and load balancer would have survived.
    """

    def __init__(self, store: Store, caller: RetryingCaller) -> None:
        self._store = store
        self._call = partial(caller.call, service=STORE)

    def put(self, key: str, data: bytes) -> None:
        self._call(lambda: self._store.put(key, data))

    def get(self, key: str) -> bytes | None:
        return self._call(lambda: self._store.get(key))

    def list(self, prefix: str) -> list[str]:
        return self._call(lambda: self._store.list(prefix))

    def delete(self, key: str) -> None:
        self._call(lambda: _ignore_missing(lambda: self._store.delete(key)))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        # A lost response after a successful create returns False on the retry; the lock
        # then finds its own deploy id in the object and takes it (see DeployLock).
        return self._call(lambda: self._store.create_exclusive(key, data))
