"""Telemetry through OpenTelemetry, to Application Insights with the Azure Monitor distro: the only module that
imports them. Off unless APPLICATIONINSIGHTS_CONNECTION_STRING is set (shared.deps decides); tests hand in the
SDK's in-memory providers instead of configuring Azure Monitor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from shared.runtime.telemetry import UNITS, Point

_configured = threading.Event()
_lock = threading.Lock()
QUIET_LOGGERS = ("azure", "azure.core.pipeline.policies.http_logging_policy", "urllib3", "kubernetes")
"""Kept at WARNING: one run makes hundreds of requests, and each logged at INFO would reach Application Insights."""


def configure_azure_monitor(connection_string: str, credential: Any = None) -> None:
    """Once per process: the Azure Monitor distro exports traces, metrics and logs (logs carry the active span's
    trace id, so a run's log lines are found from its trace). Entra ID when the host is told to use it."""
    with _lock:
        if _configured.is_set():
            return
        from azure.monitor.opentelemetry import configure_azure_monitor as configure

        options: dict[str, Any] = {"connection_string": connection_string}
        if credential is not None:
            options["credential"] = credential
        configure(**options)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        _configured.set()


class OpenTelemetry:
    """Records shared.runtime.telemetry points as OpenTelemetry instruments, and runs as spans."""

    def __init__(self, meter_provider: Any = None, tracer_provider: Any = None) -> None:
        self._meter = (meter_provider or metrics.get_meter_provider()).get_meter("aks_apim_sync")
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("aks_apim_sync")
        self._instruments: dict[str, Any] = {}
        self._lock = threading.Lock()

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, str] | None = None) -> Iterator[None]:
        with self._tracer.start_as_current_span(name, attributes=dict(attributes or {})) as current:
            try:
                yield
            except Exception as error:
                current.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise

    def emit(self, points: Sequence[Point]) -> None:
        for point in points:
            instrument = self._instrument(point)
            attributes = dict(point.attributes)
            if point.kind == "counter":
                instrument.add(point.value, attributes)
            elif point.kind == "histogram":
                instrument.record(point.value, attributes)
            else:
                instrument.set(point.value, attributes)

    def _instrument(self, point: Point) -> Any:
        with self._lock:
            if point.name not in self._instruments:
                unit = UNITS.get(point.name, "1")
                make = {
                    "counter": self._meter.create_counter,
                    "histogram": self._meter.create_histogram,
                    "gauge": self._meter.create_gauge,
                }[point.kind]
                self._instruments[point.name] = make(point.name, unit=unit)
            return self._instruments[point.name]
