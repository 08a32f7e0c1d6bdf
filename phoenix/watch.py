"""``phoenix watch``: the always-on reconciler between deploys.

Every round it looks at each app in the region its DNS points to (or the primary), keeps
the health tracker's counts going from round to round, and judges (``phoenix.heal``):
sick nodes of the serving release are replaced, a node older than ``max_node_age`` is
repaved, and a fleet sicker than ``heal.max_unhealthy`` opens the circuit instead of
churning. It never deploys a newer spec (that stays ``deploy``'s job).

Coordination is the app's lease and nothing else: watch takes it only to act, for one
heal, and a deploy, rollback or failover that holds it makes watch wait for its next
round. Two watchers of the same apps need no election: whichever takes the lease acts,
the other finds it held; if the acting one dies, its lease proves dead within two TTLs
and the other acts. A crash or SIGKILL at any point leaves what a killed deploy leaves,
which the next round (or deploy) finishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from phoenix import log as plog
from phoenix.clock import SystemClock
from phoenix.engine import Engine
from phoenix.errors import (
    InputError,
    LeaseLost,
    LockHeld,
    OutcomeError,
    PhoenixError,
    RegionUnavailable,
)
from phoenix.executor import IMAGE
from phoenix.heal import Verdict
from phoenix.lease import WATCH_PREFIX
from phoenix.metrics import WatchMetrics
from phoenix.model import MemberState, NodeState
from phoenix.providers.base import Clock, ImageQuery, Provider
from phoenix.session import Phoenix
from phoenix.spec import Spec
from phoenix.status_page import AppView, NodeRow, render

log = plog.get_logger("phoenix.watch")


@dataclass(frozen=True)
class AppReport:
    """What one round saw and did for one app."""

    app: str
    region: str
    at: str
    # healthy | acting | circuit-open | nothing-serves | waiting | region-down | failed
    state: str
    detail: str
    action: str | None = None  # heal | repave-age | failover | failback, when it acted
    outcome: str | None = None  # the action's outcome
    release: str | None = None


@dataclass
class _App:
    session: Phoenix  # the app's spec and provider, opened once for the watch's life
    engines: dict[str, Engine] = field(default_factory=dict)
    # When each (region, release)'s golden image was made: looked up once, it never
    # changes (a release is immutable), so an idle watch makes no image calls.
    image_created: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    down_since: dict[str, datetime] = field(default_factory=dict)  # region -> first seen down
    primary_up_since: datetime | None = None  # while serving elsewhere (auto_failback)

    @property
    def spec(self) -> Spec:
        return self.session.spec

    @property
    def provider(self) -> Provider:
        return self.session.provider


class Watcher:
    """Watches ``specs`` (one app each); ``providers`` maps an app to an already open
    provider (tests, the library); otherwise each spec's provider is opened once."""

    def __init__(
        self,
        specs: Sequence[Spec],
        *,
        clock: Clock | None = None,
        providers: Mapping[str, Provider] | None = None,
        metrics: WatchMetrics | None = None,
    ) -> None:
        names = [spec.app for spec in specs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise InputError(f"watch: app {', '.join(twice)} is named by more than one spec")
        self.clock: Clock = clock or SystemClock()
        self.deploy_id = WATCH_PREFIX + plog.new_deploy_id().removeprefix("d-")
        self._stack = contextlib.ExitStack()
        given = providers or {}
        self.apps = [
            _App(self._stack.enter_context(
                Phoenix(spec, provider=given.get(spec.app), clock=self.clock)))
            for spec in specs
        ]
        for app in self.apps:
            _ = app.provider  # open each now: a provider that cannot open fails the start
        self.last_round: datetime | None = None
        self.metrics = metrics or WatchMetrics()
        self.last_reports: dict[str, AppReport] = {}

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one round -------------------------------------------------------------------------

    def round(self) -> list[AppReport]:
        """Look at every app once and act where the verdict says so."""
        reports = []
        for app in self.apps:
            with self.metrics.step_seconds.labels(app.spec.app).time():
                report = self._tend(app)
            report = self._image_freshness(app, report)
            self._count(app, report)
            self.last_reports[app.spec.app] = report
            reports.append(report)
        self.last_round = self.clock.now()
        self.metrics.last_round.set(self.last_round.timestamp())
        return reports

    def page(self) -> str:
        """The HTML status page (``/``): each app's last report and nodes."""
        views = []
        for app in self.apps:
            report = self.last_reports.get(app.spec.app)
            if report is None:
                continue
            engine = app.engines.get(report.region)
            seen = engine.last_observed if engine is not None else None
            rows: list[NodeRow] = []
            if seen is not None:
                serving = {m.name for m in seen.members if m.state is MemberState.SERVING}
                rows = [NodeRow(n, seen.health[n.name].status.value if n.name in seen.health
                                else "UNKNOWN", n.name in serving)
                        for n in seen.nodes if n.state is not NodeState.DELETING]
            views.append(AppView(report.app, report.region, report.state, report.detail,
                                 report.release, report.action, report.outcome, report.at,
                                 rows))
        return render(views, self.clock.now(), self.last_round)

    def _image_freshness(self, app: _App, report: AppReport) -> AppReport:
        """Say so (report, log; the metric follows) when the serving release's golden
        image is older than ``image.max_age``: watch does not bake, a person must."""
        max_age = app.spec.image.max_age
        engine = app.engines.get(report.region)
        if max_age is None or engine is None or report.release is None:
            return report
        created = self._image_created(app, engine, report.release)
        if created is None:
            return report
        age = (self.clock.now() - created).total_seconds()
        if age <= max_age:
            return report
        days = age / 86400
        log.warning("image too old", app=app.spec.app, release=report.release,
                    age_days=round(days, 1), max_age_days=round(max_age / 86400, 1))
        note = (f"the serving image is {days:.1f} days old, over image.max_age: bake a"
                " fresh golden image and deploy it")
        return dataclasses.replace(report, detail=f"{report.detail}; {note}")

    def alive(self, interval: float) -> bool:
        """Whether a round finished within the last three intervals (``/healthz``)."""
        if self.last_round is None:
            return True  # the first round is still under way
        age = (self.clock.now() - self.last_round).total_seconds()
        return age <= 3 * interval + 1.0

    # --- regions ---------------------------------------------------------------------------

    def _region_down(self, app: _App, region: str, why: str) -> AppReport | None:
        """The serving region cannot serve. With ``failover:``, once that has lasted
        ``failover.after``, move the app as ``phoenix failover`` does (health-gated: DNS
        switches only to a region where the release proved healthy)."""
        spec, failover = app.spec, app.spec.failover
        if failover is None:
            return None
        now = self.clock.now()
        since = app.down_since.setdefault(region, now)
        lasted = (now - since).total_seconds()
        at = now.isoformat()
        if lasted < failover.after:
            return AppReport(spec.app, region, at, "region-down",
                             f"{region} cannot serve ({why}) for {lasted:g}s; failing over"
                             f" after {failover.after:g}s")
        tried: list[str] = []
        for to in [r for r in spec.regions if r != region]:
            try:
                result = app.session.mover(deploy_id=self.deploy_id).failover(
                    to, why=f"watch: {region} could not serve for {lasted:g}s ({why})")
            except LockHeld as held:
                return AppReport(spec.app, region, at, "waiting",
                                 f"{region} cannot serve ({why}); the lease is held"
                                 f" ({held.owner}): failing over next round")
            except PhoenixError as exc:
                tried.append(f"{to}: {exc}")
                continue
            app.down_since.pop(region, None)
            app.primary_up_since = None
            log.warning("failed over", app=spec.app, left=region, to=to, why=why)
            return AppReport(spec.app, to, at, "acting",
                             f"{region} could not serve for {lasted:g}s ({why}); moved to"
                             f" {to}", "failover", result.outcome, result.release)
        return AppReport(spec.app, region, at, "failed",
                         f"{region} cannot serve ({why}) and no region took the app: "
                         + "; ".join(tried))

    def _maybe_failback(self, app: _App, serving: str) -> AppReport | None:
        """With ``failover.auto_failback``: back to the primary once it has answered for
        ``failover.failback_after`` (health-gated, like ``phoenix failback``)."""
        spec, failover = app.spec, app.spec.failover
        primary = spec.regions[0]
        if failover is None or not failover.auto_failback or serving == primary:
            app.primary_up_since = None
            return None
        now = self.clock.now()
        try:
            app.session.caller.call(
                lambda: app.provider.compute.list_nodes(primary, spec.app))
        except PhoenixError:
            app.primary_up_since = None
            return None
        if app.primary_up_since is None:
            app.primary_up_since = now
        up = (now - app.primary_up_since).total_seconds()
        if up < failover.failback_after:
            return None
        try:
            result = app.session.mover(deploy_id=self.deploy_id).failback(
                why=f"watch: {primary} answered for {up:g}s (failover.auto_failback)")
        except LockHeld:
            return None
        except PhoenixError as exc:
            app.primary_up_since = None  # try again after another failback_after
            return AppReport(spec.app, serving, now.isoformat(), "failed",
                             f"failback to {primary} failed: {exc}", "failback", "failed")
        app.primary_up_since = None
        return AppReport(spec.app, primary, now.isoformat(), "acting",
                         f"{primary} has answered for {up:g}s; moved back", "failback",
                         result.outcome, result.release)

    def _image_created(self, app: _App, engine: Engine, release: str) -> datetime | None:
        key = (engine.region, release)
        if key not in app.image_created:
            try:
                app.image_created[key] = _lookup_image_created(app, engine, release)
            except PhoenixError:
                return None  # asked again next round
        return app.image_created[key]

    def _count(self, app: _App, report: AppReport) -> None:
        name = app.spec.app
        metrics = self.metrics
        metrics.circuit_open.labels(name).set(1 if report.state == "circuit-open" else 0)
        if report.action is not None and report.outcome is not None:
            metrics.actions.labels(name, report.action, report.outcome).inc()
            if report.outcome == "succeeded":
                metrics.heals.labels(name, report.region, report.action).inc()
        with contextlib.suppress(PhoenixError):
            held = app.session.lease("watch-metrics").holder()
            metrics.lease_held.labels(name).set(1 if held is not None else 0)
        metrics.desired.labels(name, report.region).set(app.spec.count)
        if app.spec.image.max_age is not None:
            metrics.image_max_age.labels(name).set(app.spec.image.max_age)
        engine = app.engines.get(report.region)
        if engine is not None and report.release is not None:
            created = self._image_created(app, engine, report.release)
            if created is not None:
                metrics.image_age.labels(name, report.region, report.release).set(
                    max(0.0, (self.clock.now() - created).total_seconds()))
        seen = engine.last_observed if engine is not None else None
        if seen is not None:
            health = {k: v.status.value for k, v in seen.health.items()}
            metrics.observe_nodes(
                name, report.region,
                [(n, health.get(n.name, "UNKNOWN")) for n in seen.nodes
                 if n.state is not NodeState.DELETING],
                self.clock.now(),
            )

    def run(self, *, interval: float, stop: threading.Event,
            on_round: Callable[[list[AppReport]], None] | None = None) -> None:
        """Rounds every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            started = self.clock.now()
            reports = self.round()
            if on_round is not None:
                on_round(reports)
            spent = (self.clock.now() - started).total_seconds()
            stop.wait(max(0.0, interval - spent))

    def _tend(self, app: _App) -> AppReport:
        spec = app.spec
        region = app.session.serving_region() or spec.regions[0]
        engine = app.engines.get(region)
        # A first look has no probe history: it probes up to unhealthy_threshold times,
        # so that one round (``watch --once`` from cron) can tell a sick node.
        probes = 1 if engine is not None else spec.health.unhealthy_threshold
        if engine is None:
            engine = app.session.engine(region, deploy_id=self.deploy_id)
            app.engines[region] = engine
        now = self.clock.now().isoformat()
        try:
            verdict = engine.verdict(probes=probes)
        except RegionUnavailable as exc:
            return self._region_down(app, region, f"its API is unavailable: {exc}") or (
                AppReport(spec.app, region, now, "failed", f"cannot look: {exc}"))
        except PhoenixError as exc:
            return AppReport(spec.app, region, now, "failed", f"cannot look: {exc}")
        if verdict.release is not None and len(verdict.sick) >= spec.count:
            moved = self._region_down(app, region, "every node is sick")
            if moved is not None:
                return moved
        else:
            app.down_since.pop(region, None)
        back = self._maybe_failback(app, region)
        if back is not None:
            return back
        report = _idle_report(spec.app, region, now, verdict)
        if report is not None:
            return report
        try:
            result = engine.heal(verdict)
        except LockHeld as held:
            return AppReport(spec.app, region, now, "waiting",
                             f"{verdict.describe()}; the lease is held ({held.owner}):"
                             " acting next round", release=verdict.release)
        except LeaseLost as lost:
            return AppReport(spec.app, region, now, "waiting", str(lost),
                             release=verdict.release)
        except OutcomeError as failed:
            outcome = getattr(failed.result, "outcome", "failed")
            return AppReport(spec.app, region, now, "failed", str(failed), "heal", outcome,
                             verdict.release)
        except PhoenixError as exc:
            return AppReport(spec.app, region, now, "failed", str(exc), release=verdict.release)
        if result.outcome == "unchanged":  # healed meanwhile (another watcher, say)
            return AppReport(spec.app, region, now, "healthy",
                             "nothing left to do once the lease was held",
                             release=verdict.release)
        log.info("acted", app=spec.app, action=result.action, outcome=result.outcome)
        return AppReport(spec.app, region, now, "acting", verdict.describe(), result.action,
                         result.outcome, verdict.release)


def _lookup_image_created(app: _App, engine: Engine, release: str) -> datetime | None:
    record = engine.records.release(release)
    if record is None:
        return None
    found = engine.reads.call(
        lambda: app.provider.compute.find_images(engine.region, ImageQuery(id=record.image_id)),
        IMAGE)
    return found[0].created_at if found else None


def _idle_report(app: str, region: str, now: str, verdict: Verdict) -> AppReport | None:
    if verdict.release is None:
        return AppReport(app, region, now, "nothing-serves", verdict.describe())
    if verdict.circuit_open:
        log.warning("circuit open", app=app, region=region, detail=verdict.describe())
        return AppReport(app, region, now, "circuit-open", verdict.describe(),
                         release=verdict.release)
    if verdict.idle:
        return AppReport(app, region, now, "healthy", verdict.describe(),
                         release=verdict.release)
    return None
