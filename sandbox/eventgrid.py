"""A local stand-in for an Event Grid custom topic (CloudEvents 1.0 input schema) and its one subscription; it
also delivers system topics' events (raise_system_event) in either schema.

Publish side, as the data-plane REST API documents it: POST {endpoint}/api/events with
`aeg-sas-key: <key>` (or an Entra bearer token), Content-Type `application/cloudevents-batch+json`, a JSON
array of CloudEvents, 1 MB at most, each with specversion 1.0, id, source and type; 200 with an empty body.

Delivery side: like Event Grid, it delivers each accepted event on its own thread, at least once, and
retries a failed delivery (the subscriber raised) on a shortened schedule before dead-lettering it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from sandbox.httpbase import JsonServer, Request, Response
from sandbox.tls import TlsFiles

MAX_PUBLISH_BYTES = 1024 * 1024
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
REQUIRED = ("specversion", "id", "source", "type")
EVENTGRID_REQUIRED = ("id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion")


def eg_error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}})


class EventGridTopic(JsonServer):
    def __init__(self, *, tls: TlsFiles, key: str, token: str, retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)) -> None:
        super().__init__(tls=tls, token=token, name="eventgrid")
        self.key = key
        self.received: list[dict[str, Any]] = []
        self.publish_headers: list[dict[str, str]] = []
        self.delivered: list[dict[str, Any]] = []
        self.dead_lettered: list[dict[str, Any]] = []
        self.retry_delays = retry_delays
        self.subscriber: Callable[[dict[str, Any]], None] | None = None
        self._outbox: queue.Queue[tuple[dict[str, Any], int] | None] = queue.Queue()
        self._in_flight = 0
        self._idle = threading.Condition()
        self.route("POST", r"/api/events", self._publish)
        self._delivery = threading.Thread(target=self._deliver_forever, name="eventgrid-delivery", daemon=True)

    def start(self) -> EventGridTopic:
        super().start()
        self._delivery.start()
        return self

    def stop(self) -> None:
        self._outbox.put(None)
        super().stop()

    def authorized(self, request: Request) -> bool:
        return request.headers.get("aeg-sas-key") == self.key or super().authorized(request)

    def unauthorized(self) -> Response:
        return eg_error(401, "Unauthorized", "The request authorization key is not authorized for this topic.")

    def not_found(self, request: Request) -> Response:
        return eg_error(404, "NotFound", f"{request.path} is not an Event Grid topic endpoint")

    def subscribe(self, subscriber: Callable[[dict[str, Any]], None] | None) -> None:
        """Deliver every accepted event to `subscriber` (None: keep them only in `received`)."""
        self.subscriber = subscriber

    def wait_until_idle(self, timeout: float = 10.0) -> bool:
        """True once every accepted event has been delivered or dead-lettered."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.publish_headers.clear()
            self.delivered.clear()
            self.dead_lettered.clear()
            self.faults.clear()
            self.log.clear()

    def raise_system_event(self, event: dict[str, Any]) -> None:
        """An event of a system topic (Key Vault, APIM, Resource Manager, AKS), in the schema the subscription
        asks for: Event Grid (id, topic, subject, eventType, eventTime, data, dataVersion) or CloudEvents 1.0.
        Azure raises these itself: there is no publish call, only delivery, with the same retries."""
        schema = EVENTGRID_REQUIRED if "eventType" in event else REQUIRED
        missing = [name for name in schema if not event.get(name)]
        if missing:
            raise ValueError(f"a system event without '{missing[0]}' is not one Azure sends")
        with self.lock:
            self.received.append(event)
        with self._idle:
            self._in_flight += 1
        self._outbox.put((event, 0))

    def _publish(self, request: Request, _match: Any) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith(BATCH_CONTENT_TYPE):
            return eg_error(400, "BadRequest", f"Content-Type must be {BATCH_CONTENT_TYPE}, not '{content_type}'")
        if len(request.body) > MAX_PUBLISH_BYTES:
            return eg_error(413, "RequestEntityTooLarge", "The maximum size for a publish request is 1 MB")
        try:
            events = json.loads(request.body)
        except ValueError:
            return eg_error(400, "BadRequest", "The body is not valid JSON")
        if not isinstance(events, list) or not events:
            return eg_error(400, "BadRequest", "The body must be a non-empty JSON array of CloudEvents")
        for index, event in enumerate(events):
            missing = [name for name in REQUIRED if not isinstance(event, dict) or not event.get(name)]
            if missing:
                return eg_error(400, "BadRequest", f"event {index}: required attribute '{missing[0]}' is missing")
            if event["specversion"] != "1.0":
                return eg_error(400, "BadRequest", f"event {index}: specversion must be 1.0")
        self.publish_headers.append(dict(request.headers))
        self.received.extend(events)
        with self._idle:
            self._in_flight += len(events)
        for event in events:
            self._outbox.put((event, 0))
        return Response(200, None)

    def _deliver_forever(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            event, attempt = item
            subscriber = self.subscriber
            try:
                if subscriber is not None:
                    subscriber(event)
                with self.lock:
                    self.delivered.append(event)
            except Exception:  # noqa: BLE001 - any failure of the subscriber means "redeliver later", as in Event Grid
                if attempt < len(self.retry_delays):
                    threading.Timer(self.retry_delays[attempt], self._outbox.put, args=((event, attempt + 1),)).start()
                    continue
                with self.lock:
                    self.dead_lettered.append(event)
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
