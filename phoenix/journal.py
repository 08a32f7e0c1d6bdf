"""A run's notes in the store: what it is doing while it acts, and what it did after.

While a run acts on a region it keeps an *attempt record* there (what it deploys, what
served before); when it ends it writes its *history* record and clears the attempt. A
run killed half-way leaves its attempt record behind: the next run (holding the lease,
so the killed one is gone) adopts it, records the killed run as interrupted, and knows
what to restore. Writing these never fails a run: a note that could not be written is a
warning, and the next run finds what it needs either way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from phoenix import log as plog
from phoenix.errors import PhoenixError
from phoenix.records import AttemptRecord, DeployRecord, Records
from phoenix.vocabulary import Outcome

log = plog.get_logger("phoenix.engine")


class Journal:
    """The attempt and history records of one run in one region."""

    def __init__(self, records: Records, *, app: str, region: str, deploy_id: str,
                 strategy: str, generation: Callable[[], int | None]) -> None:
        self.records = records
        self.app = app
        self.region = region
        self.deploy_id = deploy_id
        self.strategy = strategy
        self.generation = generation  # the lease generation the run acts under, now
        # The killed run's record this run found (its hooks' marks are this run's too).
        self.adopted: AttemptRecord | None = None

    def start(
        self,
        action: str,
        release: str,
        previous: tuple[str, int] | None,
        started: datetime,
        *,
        state: str = "running",
    ) -> None:
        """Note in the store that this run acts on the region (see ``AttemptRecord``)."""
        self.records.save_attempt(AttemptRecord(
            deploy_id=self.deploy_id,
            action=action,
            release=release,
            region=self.region,
            started_at=started.isoformat(),
            previous_release=previous[0] if previous else None,
            previous_count=previous[1] if previous else 0,
            state=state,
            lease=self.generation(),
        ))

    def clear(self) -> None:
        try:
            self.records.clear_attempt(self.region)
        except PhoenixError as exc:
            # Harmless: the next run finds it, sees this run in the history, moves on.
            log.warning("could not clear the attempt record", error=str(exc))

    def adopt_interrupted(self, now: datetime) -> AttemptRecord | None:
        """The record of a run that stopped half-way in this region, if any.

        We hold the app's lease, so that run is gone. A run killed while acting never
        wrote its history: record it now as interrupted, so ``phoenix history`` shows
        what happened."""
        attempt = self.records.attempt(self.region)
        self.adopted = None
        if attempt is None or attempt.deploy_id == self.deploy_id:
            return None
        self.adopted = attempt
        if attempt.state == "running" and not any(
            d.deploy_id == attempt.deploy_id and d.region == attempt.region
            and d.action == attempt.action
            for d in self.records.deploys()
        ):
            reason = (f"stopped before it finished (killed, crashed, or stalled and fenced);"
                      f" {self.deploy_id} took over")
            log.warning("an earlier run stopped half-way", deploy_id_stopped=attempt.deploy_id,
                        release=attempt.release)
            self.save(DeployRecord(
                deploy_id=attempt.deploy_id,
                app=self.app,
                action=attempt.action,
                release=attempt.release,
                region=attempt.region,
                strategy=self.strategy,
                started_at=attempt.started_at,
                finished_at=now.isoformat(),
                outcome=Outcome.INTERRUPTED,
                previous_release=attempt.previous_release,
                reason=reason,
                lease=attempt.lease,  # the generation that run held, not ours
            ))
        return attempt

    def save(self, record: DeployRecord) -> None:
        try:
            self.records.save_deploy(record)
        except PhoenixError as exc:
            log.warning("could not write the deploy record", error=str(exc))
