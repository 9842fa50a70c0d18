"""on_event: Event Grid (both schemas) -> the scope the event names -> a reconcile of just that.

The Functions host answers the subscription handshakes itself. Returning acknowledges the event;
raising makes Event Grid redeliver it with its own backoff (and finally dead-letter it), so only a
transient failure raises: redelivering an ignored, malformed or permanently failing event cannot help.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from functions._deps import dependencies_or_none
from shared.core import errors
from shared.events import dispatch

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


def raw_event(event: func.EventGridEvent | func.CloudEvent) -> dict[str, Any]:
    """The wire fields of either decoded type; fields the host left empty stay out, so the router names them."""
    fields: dict[str, str | None]
    if isinstance(event, func.CloudEvent):
        fields = {"specversion": event.specversion, "id": event.id, "source": event.source, "type": event.type}
        fields["subject"] = event.subject
    else:
        fields = {"id": event.id, "topic": event.topic, "eventType": event.event_type, "subject": event.subject}
    raw = {key: value for key, value in fields.items() if value is not None}
    raw["data"] = event.get_json()
    return raw


@bp.function_name("on_event")
@bp.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    # Annotated with one class because the worker checks the annotation with issubclass(); the host still
    # passes a func.CloudEvent for CloudEvents deliveries, and raw_event() reads both.
    dependencies = dependencies_or_none(log, f"event {event.id}")
    if dependencies is None:
        return
    result = dispatch.handle_event(raw_event(event), dependencies)
    if result.malformed:
        log.warning("event %s malformed, acknowledged: %s", result.event_id, result.why)
        return
    if result.rotation is not None:
        _rotation_result(result)
        return
    if result.report is None:
        level = logging.WARNING if result.notable else logging.INFO
        log.log(level, "event %s: %s: %s", result.event_id, result.action, result.why)
        return
    log.info(
        "event %s: %s: %s",
        result.event_id,
        result.action,
        result.why,
        extra={"counts": result.report.counts, "requests": dict(result.report.requests)},
    )
    if result.retryable:
        raise errors.RetryableError(f"event {result.event_id}: transient failures; Event Grid will redeliver")
    if result.failed:
        log.error("event %s: permanent failure, not retried: %s", result.event_id, result.report.to_text())


def _rotation_result(result: dispatch.EventResult) -> None:
    """A Key Vault event ran the rotation check: an expiry is an error to alert on; a transient failure is
    redelivered; a permanent one is logged, not retried."""
    rotation = result.rotation
    assert rotation is not None
    if result.expired:
        log.error("event %s: %s: a certificate aks-apim-sync presents has expired", result.event_id, result.why)
    log.info("event %s: %s: %s\n%s", result.event_id, result.action, result.why, rotation.to_text())
    if result.retryable:
        raise errors.RetryableError(f"event {result.event_id}: transient failures; Event Grid will redeliver")
    if result.failed:
        log.error("event %s: permanent failure, not retried: %s", result.event_id, rotation.to_text())
