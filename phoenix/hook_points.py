"""Where in a run each lifecycle hook runs, what its failure means, and its crash marks.

The engine and the executor call in at four points and decide nothing about hooks:

* ``begin`` when a run starts (its action, release, what served before);
* ``look`` after each observation: remembers the nodes (a ``pre_terminate`` hook needs
  the address of a node the step names only by id) and runs ``post_switch`` the first
  time the pool serves only the run's release;
* ``before`` (the executor, right before a poll's steps): ``pre_create`` before each
  ``CreateNode``, ``post_healthy`` before each ``AddMember`` (the planner adds only
  proven nodes), then ``pre_switch`` before the first member of the run's release
  joins, ``pre_drain`` before each ``DrainMember``, ``pre_terminate`` before each
  ``DeleteNode`` of a node that has an address. A node's hooks run one after another,
  different nodes' side by side;
* ``finish`` when the run reached its target (``post_deploy``, or ``on_rollback`` after
  a rollback), and ``restoring`` when a failed run starts putting the old release back.

A hook that fails with ``on_failure: abort`` raises ``HookFailed`` before its step runs,
which the engine treats like any permanent error: the run fails and rolls back, the old
release serving. ``continue`` makes it a warning. So does every failure once a restore
has begun (a failed run's rollback, or ``phoenix rollback``): a hook must never stop the
old release from coming back.

Crash safety: each hook that ended (ok or a warning) is marked in the store under
``apps/APP/hooks/REGION/RUN/RELEASE/MOMENT/NODE/N.json``, RUN being the run that started
the attempt; a rerun that adopts a killed run's attempt on the same release finds the
marks and does not run those hooks again (``done-earlier`` in its result). The marks of
a run are removed when it ends cleanly. A hook is run again only if the deploy dies
while it runs, or between its end and its mark (one store write): at-least-once there.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from phoenix import secret_mask
from phoenix.errors import Permanent, PhoenixError
from phoenix.gate_points import GateFailed, LoadTestGate, MetricBakeGate
from phoenix.hooks import HookFacts, HookResult, run_hook
from phoenix.log import get_logger
from phoenix.model import MemberState, Node
from phoenix.planner import Observed, Target, serving_counts
from phoenix.providers.base import Store
from phoenix.records import AttemptRecord
from phoenix.results import HookOutcome, HookRun
from phoenix.rollout_math import canary_size
from phoenix.spec import Spec
from phoenix.spec_hooks import HookSpec
from phoenix.steps import AddMember, CreateNode, DeleteNode, DrainMember, Step

__all__ = ["DEPLOYING_ACTIONS", "HookFailed", "HookPoints"]

log = get_logger("phoenix.hooks")

DEPLOYING_ACTIONS = frozenset({"deploy", "failover", "failback"})
"""The actions whose success runs ``post_deploy`` (a rollback runs ``on_rollback``)."""
KEEPALIVE_SECONDS = 5.0  # how often the lease is looked after while hooks run
SwitchGate = Callable[[Sequence[tuple[str, int]]], HookRun]
Runner = Callable[..., HookResult]


class HookFailed(Permanent):
    """A hook with ``on_failure: abort`` failed: the run fails and rolls back.

    Permanent, so the engine handles it where it handles a permanent provider error
    (roll back, exit 1), and its blast radius stops a multi-region run: the same hook
    would fail in the next region too."""


@dataclass(frozen=True)
class _Job:
    """The hooks of one moment for one node (or for the run: ``node`` None)."""

    moment: str
    node: str | None = None
    address: str | None = None
    node_release: str | None = None


class HookPoints:
    """A run's lifecycle hooks: run at the points above, recorded, marked in the store."""

    def __init__(self, spec: Spec, store: Store, *, region: str, deploy_id: str,
                 keepalive: Callable[[], None] = lambda: None, workers: int | None = None,
                 runner: Runner = run_hook,
                 switch_gates: Sequence[SwitchGate] | None = None) -> None:
        """``switch_gates``: run after the ``pre_switch`` hooks with the joining nodes'
        (address, port); one that fails stops the switch (``phoenix.gate_points``).
        Default: the spec's ``gates.load_test``."""
        self.spec = spec
        self.store = store
        self.region = region
        self.deploy_id = deploy_id
        self.keepalive = keepalive  # renews the lease while hooks run (they may be slow)
        # Nodes whose hooks run at once: as many as the calls the region takes at once.
        self.workers = workers or spec.rollout.max_parallel_calls
        self.runner = runner
        if switch_gates is None:
            switch_gates = ([LoadTestGate(spec, keepalive=keepalive)]
                            if spec.gates.load_test is not None else [])
        self.switch_gates = tuple(switch_gates)
        self.bake_gate = MetricBakeGate(spec) if spec.gates.metrics is not None else None
        self.canary_size = canary_size(spec.rollout, spec.count)
        self.canary = spec.rollout.strategy == "canary"
        # no hooks and no gates: no store call, no thread, nothing
        self.active = (spec.hooks.any or bool(self.switch_gates)
                       or self.bake_gate is not None)
        self.runs: list[HookRun] = []
        self._lock = threading.Lock()
        self._reset("deploy", None, None)

    def _reset(self, action: str, release: str | None, previous: str | None) -> None:
        self.action = action
        self.release = release
        self.previous = previous
        self.restore = action == "rollback"  # failures only warn
        self.scope = self.deploy_id
        self.runs = []
        self._earlier: dict[str, HookRun] = {}  # mark key -> what a killed run recorded
        self._ran: set[str] = set()  # mark keys this run ran (a step planned again: not twice)
        self._nodes: dict[str, Node] = {}
        self._target: str | None = None  # the release the poll's creates build
        self._switched = False  # pre_switch ran in this attempt
        self._post_switched = False
        self._promoted = False  # the canary's last metric look was taken
        self._load_tested = False  # the switch gates ran in this attempt

    # --- the points ----------------------------------------------------------------

    def begin(self, action: str, release: str, previous: tuple[str, int] | None,
              adopted: AttemptRecord | None) -> None:
        """A run starts. Resuming a killed run's attempt on the same release (the
        adopted attempt record), it takes over that run's marks."""
        self._reset(action, release, previous[0] if previous else None)
        # (Marks are keyed by release too: a killed run of another release has none here.)
        if self.active and adopted is not None and adopted.state == "running":
            self.scope = adopted.deploy_id
            for key in self.store.list(self._prefix()):
                data = self.store.get(key)
                if data is not None:
                    self._earlier[key] = _run_of(data)

    def restoring(self) -> None:
        """The run failed and puts the old release back: from now on hooks only warn,
        and the per-release moments of the failed release do not run."""
        self.restore = True
        self._switched = self._post_switched = True

    def look(self, target: Target, observed: Observed) -> None:
        """After each observation: note the nodes; run ``post_switch`` once the pool
        serves only the run's release."""
        if not self.active:
            return
        if self.release is None:  # a run that never began (retire): its target's facts
            self.release = target.release
            self.action = "retire" if target.count == 0 else self.action
        self._target = target.release
        self._nodes = {node.name: node for node in observed.nodes}
        serving = set(serving_counts(observed))
        if (self.bake_gate is not None and self._gating and self.release in serving
                and self.previous in serving):
            self._judge_gates(self.bake_gate.during_bake(self.release or "", self.previous))
        if (self._baking_canary and self.switch_gates and not self._load_tested
                and self._gating and self.release in serving and self.previous in serving):
            # A canary is load-tested during its bake, serving beside the baseline.
            self._load_tested = True
            port = self.spec.load_balancer.member_port
            canaries = [(n.address, port) for n in observed.nodes
                        if n.release == self.release and n.address
                        and n.name in _serving_names(observed)]
            self._judge_gates([gate(canaries) for gate in self.switch_gates])
        if (self._switching and not self._post_switched and target.release == self.release
                and set(serving_counts(observed)) == {self.release}):
            self._post_switched = True
            self._run_jobs([_Job("post_switch")])

    def before(self, steps: Sequence[Step]) -> None:
        """Right before a poll's steps run (the executor): their per-node hooks, and
        ``pre_switch`` before the run's release first joins the pool. Raises
        ``HookFailed`` (no step of the poll runs then) when an abort hook failed."""
        if not self.active:
            return
        jobs: list[_Job] = []
        joining: list[tuple[str, int]] = []
        for step in steps:
            node = self._nodes.get(step.name)
            release = node.release if node is not None else None
            match step:
                case CreateNode(name=name):
                    jobs.append(_Job("pre_create", name, None, self._target))
                case AddMember(name=name, address=address, port=port):
                    jobs.append(_Job("post_healthy", name, address, release))
                    if release == self.release:
                        joining.append((address, port))
                case DrainMember(name=name):
                    jobs.append(_Job("pre_drain", name, node.address if node else None, release))
                case DeleteNode(name=name) if node is not None and node.address:
                    jobs.append(_Job("pre_terminate", name, node.address, release))
        if self.bake_gate is not None and self._gating and self._promotes(steps):
            self._promoted = True
            self._judge_gates(self.bake_gate.before_promotion(self.release or "",
                                                              self.previous))
        self._run_jobs(jobs)
        if joining and self._switching and not self._switched:
            self._switched = True
            self._run_jobs([_Job("pre_switch")])
            if not self._baking_canary:  # (a canary's: during its bake, see look)
                self._load_tested = True
                self._judge_gates([gate(joining) for gate in self.switch_gates])

    def finish(self) -> None:
        """The run reached its target: ``post_deploy`` (a deploy, failover or failback)
        or ``on_rollback`` (a restore, or ``phoenix rollback``); then its marks go."""
        if not self.active:
            return
        if self.restore:
            self._run_jobs([_Job("on_rollback")])
        elif self.action in DEPLOYING_ACTIONS:
            self._run_jobs([_Job("post_deploy")])
        try:
            for key in self.store.list(f"apps/{self.spec.app}/hooks/{self.region}/"):
                self.store.delete(key)
        except PhoenixError as exc:  # left for the next clean end; never read again
            log.warning("could not remove the hooks' marks", error=str(exc))

    # --- running -------------------------------------------------------------------

    @property
    def _baking_canary(self) -> bool:
        """A canary run with a baseline to bake beside."""
        return self.canary and self.previous is not None

    @property
    def _gating(self) -> bool:
        """The canary's metric gate applies: a switch under way, not yet promoted, not
        a restore."""
        return self._switching and not self.restore and not self._promoted

    def _promotes(self, steps: Sequence[Step]) -> bool:
        """The poll promotes the canary: it builds past the canary batch, or (a canary of
        the whole count) drains the baseline."""
        for step in steps:
            if isinstance(step, CreateNode) and step.index >= self.canary_size:
                return True
            node = self._nodes.get(step.name)
            if (isinstance(step, DrainMember) and self.canary_size >= self.spec.count
                    and node is not None and node.release == self.previous):
                return True
        return False

    def _judge_gates(self, runs: Sequence[HookRun]) -> None:
        """Record the gates' verdicts; the first failed one fails the run."""
        for run in runs:
            self._record(run)
        failed = [run for run in runs if run.outcome is HookOutcome.FAILED]
        if failed:
            raise GateFailed(f"{failed[0].hook} failed: {failed[0].detail}",
                             region=self.region)

    @property
    def _switching(self) -> bool:
        """The run changes which release serves (not a repave, a heal, a rerun)."""
        return self.release is not None and self.previous != self.release

    def _run_jobs(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if self.spec.hooks.at(job.moment)]
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs)),
                                thread_name_prefix="hook") as pool:
            futures = [pool.submit(contextvars.copy_context().run, self._run_job, job)
                       for job in jobs]
            while wait(futures, timeout=KEEPALIVE_SECONDS).not_done:
                self.keepalive()
            failures = [exc for f in futures if (exc := f.exception()) is not None]
        if failures:
            raise failures[0]

    def _run_job(self, job: _Job) -> None:
        """One node's (or the run's) hooks of one moment, in order; the first abort
        failure stops the rest."""
        for number, hook in enumerate(self.spec.hooks.at(job.moment)):
            key = f"{self._prefix()}{job.moment}/{job.node or '-'}/{number}.json"
            if key in self._ran:
                continue
            earlier = self._earlier.pop(key, None)
            if earlier is not None:
                self._ran.add(key)
                self._record(dataclasses.replace(earlier, outcome=HookOutcome.DONE_EARLIER))
                continue
            result = self.runner(hook, self._facts(job), cwd=self.spec.base_dir,
                                 secrets=self.spec.secret_values)
            run = self._judge(job, hook, result)
            self._record(run)
            if run.outcome is HookOutcome.FAILED:
                raise HookFailed(f"{run.moment} hook [{run.hook}] failed"
                                 + (f" for {job.node}" if job.node else "")
                                 + f": {run.detail or 'no detail'}", region=self.region)
            self._ran.add(key)
            try:
                self.store.put(key, json.dumps(dataclasses.asdict(run)).encode())
            except PhoenixError as exc:  # the hook ran; a rerun may run it again
                log.warning("could not mark a hook done", key=key, error=str(exc))

    def _judge(self, job: _Job, hook: HookSpec, result: HookResult) -> HookRun:
        outcome = HookOutcome.OK
        if not result.ok:
            outcome = (HookOutcome.FAILED if hook.on_failure == "abort" and not self.restore
                       else HookOutcome.WARNED)
            log.warning("hook failed", moment=job.moment, node=job.node, hook=hook.describe(),
                        detail=result.detail, outcome=outcome,
                        why="restoring: never blocks the old release" if self.restore
                        else f"on_failure: {hook.on_failure}")
        return HookRun(job.moment, job.node,
                       secret_mask.mask(hook.describe(), self.spec.secret_values),
                       outcome, result.seconds, result.detail)

    def _record(self, run: HookRun) -> None:
        with self._lock:
            self.runs.append(run)

    def _facts(self, job: _Job) -> HookFacts:
        return HookFacts(
            app=self.spec.app, region=self.region, release=self.release or "",
            previous_release=self.previous, moment=job.moment, action=self.action,
            deploy_id=self.deploy_id, node_name=job.node, node_address=job.address,
            node_release=job.node_release,
        )

    def _prefix(self) -> str:
        return f"apps/{self.spec.app}/hooks/{self.region}/{self.scope}/{self.release}/"


def _run_of(data: bytes) -> HookRun:
    """A mark read back (one a newer Phoenix wrote keeps what this one knows)."""
    try:
        raw = json.loads(data)
        return HookRun(raw["moment"], raw.get("node"), raw.get("hook", "?"),
                       HookOutcome(raw.get("outcome", "ok")), float(raw.get("seconds", 0.0)),
                       str(raw.get("detail", "")))
    except (ValueError, TypeError, KeyError):
        return HookRun("?", None, "?", HookOutcome.OK, 0.0, "an unreadable mark")


def _serving_names(observed: Observed) -> set[str]:
    return {m.name for m in observed.members if m.state is MemberState.SERVING}
