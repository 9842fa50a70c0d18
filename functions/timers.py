"""Timers: periodic drift correction (a full, level-based reconcile)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions._deps import dependencies_or_none
from shared import sync
from shared.core import errors, scope

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)

# "%NAME%" makes the host read the schedule from an app setting (NCRONTAB, six fields, UTC).
PERIODIC_RESYNC_SCHEDULE = "%PERIODIC_RESYNC_SCHEDULE%"


@bp.function_name("periodic_resync")
@bp.timer_trigger(arg_name="timer", schedule=PERIODIC_RESYNC_SCHEDULE, run_on_startup=False, use_monitor=True)
@bp.retry(strategy="exponential_backoff", max_retry_count="3", minimum_interval="00:00:10", maximum_interval="00:05:00")
def periodic_resync(timer: func.TimerRequest) -> None:
    dependencies = dependencies_or_none(log, "periodic resync")
    if dependencies is None:
        return
    report = sync.run(scope.Scope(dependencies.settings.kube.cluster_name), dependencies, coalesce=True)
    log.info("periodic resync finished", extra={"counts": report.counts, "past_due": timer.past_due})
    if report.failed and report.retryable:
        # Only transient failures go back to the runtime's retry policy; permanent ones are in the report.
        raise errors.RetryableError("periodic resync hit transient failures; retrying")
    if report.failed:
        log.error("periodic resync failed", extra={"errors": [c.get("message") for c in report.to_json()["errors"]]})
