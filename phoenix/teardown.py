"""``phoenix destroy``: take an app out of every region and wait until nothing is left.

Under the app's lease (a heal under way finishes first), with the lease's fence before
every change: a destroy stalled after its reads must not delete what a newer actor now
serves with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from phoenix.errors import PhoenixError
from phoenix.executor import COMPUTE, DNS, LB, RetryingStore
from phoenix.lease import DeployLock
from phoenix.model import NodeState
from phoenix.providers.base import Clock, PoolDeleter, Provider, RecordFrontend
from phoenix.records import Records
from phoenix.retrying import RetryingCaller
from phoenix.spec import Spec


@dataclass(frozen=True)
class DestroyResult:
    app: str
    deleted_nodes: tuple[str, ...]
    removed_members: tuple[str, ...]
    purged_records: int


def destroy(
    spec: Spec,
    opened: Provider,
    clock: Clock,
    caller: RetryingCaller,
    *,
    purge_records: bool = False,
    timeout: float = 600.0,
) -> DestroyResult:
    """Take the app out of every region: members removed, servers deleted and gone.

    Waits until the provider no longer lists any of the app's servers, so that nothing
    is left behind when it returns. ``caller``: the session's retried calls.
    """
    lock = DeployLock(opened.store, spec.app, f"destroy-{id(spec):x}",
                      ttl=spec.rollout.lease_ttl)
    lock.acquire(clock, patience=spec.rollout.deadline)  # a heal under way finishes
    try:
        deleted: list[str] = []
        removed: list[str] = []
        call = caller.call
        records = Records(RetryingStore(opened.store, caller), spec.app)

        def mutate(fn: Callable[[], object], service: str) -> None:
            # The lease's fence before every change: a destroy stalled after its
            # reads must not delete what a newer actor now serves with.
            lock.guard(clock.now())
            call(fn, service)

        pool = spec.load_balancer.pool
        compute, lb = opened.compute, opened.load_balancer
        for region in spec.regions:
            lock.heartbeat(clock.now())
            nodes = call(partial(compute.list_nodes, region, spec.app))
            names = {n.name for n in nodes}
            for member in call(partial(lb.list_members, region, pool), LB):
                if member.name in names or member.name.startswith(f"{spec.app}-"):
                    mutate(partial(lb.remove_member, region, pool, member.name), LB)
                    removed.append(member.name)
            for node in nodes:
                if node.state is not NodeState.DELETING:
                    mutate(partial(compute.delete_node, region, node.id), COMPUTE)
                deleted.append(node.name)
        if isinstance(lb, PoolDeleter):
            for region in spec.regions:
                mutate(partial(lb.delete_pool, region, pool), LB)
        if spec.dns is not None and isinstance(opened.dns, RecordFrontend):
            mutate(partial(opened.dns.stop_frontend, spec.dns.zone, spec.dns.record), DNS)
        deadline = clock.now() + timedelta(seconds=timeout)
        for region in spec.regions:
            while call(partial(compute.list_nodes, region, spec.app)):
                if clock.now() >= deadline:
                    raise PhoenixError(
                        f"servers of {spec.app} still listed in {region} after {timeout:g}s;"
                        " run `phoenix destroy` again"
                    )
                lock.wait(clock, 0.5)
        # Nothing is left half-done: a later deploy must not restore what ran before.
        lock.guard(clock.now())
        for region in spec.regions:
            records.clear_attempt(region)
        purged = 0
        if purge_records:
            # All but the lease's newest generation (this destroy's): generation
            # numbers must keep growing, or a stalled actor's fence could pass again.
            keep = lock.key(lock.generation) if lock.generation is not None else None
            for key in opened.store.list(f"apps/{spec.app}/"):
                if key != keep:
                    opened.store.delete(key)
                    purged += 1
        return DestroyResult(spec.app, tuple(sorted(deleted)), tuple(sorted(removed)), purged)
    finally:
        lock.release(clock.now())
