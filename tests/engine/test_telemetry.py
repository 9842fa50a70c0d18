"""Telemetry operators can alert on, read with the OpenTelemetry SDK's in-memory readers after real runs against
the emulators: metric names, attributes and values, one trace per run with a span per step, logs inside it."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sandbox.httpbase import Fault
from sandbox.tools import Azurite
from sandbox.world import World
from shared import sync
from shared.adapters.telemetry import OpenTelemetry
from shared.core.annotations import NGINX_ALLOWLIST
from shared.core.scope import Scope
from shared.runtime import telemetry
from shared.runtime.ports import Dependencies
from tests.conftest import ingress, service
from tests.rotation.support import Clock, rotate

CLUSTER = Scope("aks-sandbox")
ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Readers:
    metrics: InMemoryMetricReader
    spans: InMemorySpanExporter

    def points(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """(metric name, sorted attributes) -> value (a sum, a gauge's last value, or a histogram's count)."""
        found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = (metric.name, tuple(sorted((k, str(v)) for k, v in (point.attributes or {}).items())))
                        found[key] = float(getattr(point, "value", getattr(point, "count", 0)))
        return found


@pytest.fixture
def readers() -> Readers:
    return Readers(InMemoryMetricReader(), InMemorySpanExporter())


@pytest.fixture
def observed(make_deps: Any, readers: Readers, azurite: Azurite) -> Iterator[Any]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(readers.spans))
    recorder = OpenTelemetry(MeterProvider(metric_readers=[readers.metrics]), tracer_provider)

    def build(**overrides: str) -> Dependencies:
        built: Dependencies = make_deps(**{"AzureWebJobsStorage": azurite.connection_string, **overrides})
        return dataclasses.replace(built, telemetry=recorder)

    yield build


def seed(world: World) -> None:
    world.kube.apply(service("payments"))
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("orders", "shop", "orders.example.com", "orders"))
    world.kube.apply(service("broken", annotations={"apim-sync.io/port": "not-a-port"}))


def test_a_sync_run_counts_its_changes_refusals_requests_and_drift(world: World, observed: Any, readers: Readers) -> None:
    seed(world)
    deps = observed()
    sync.run(CLUSTER, deps)
    edited = world.kube.get("Ingress", "shop", "orders")
    assert edited is not None
    edited["metadata"]["annotations"][NGINX_ALLOWLIST] = "0.0.0.0/0"
    world.kube.apply(edited)
    sync.run(CLUSTER, deps)

    points = readers.points()
    assert points[(telemetry.RUNS, (("run.kind", "sync"), ("run.outcome", "ok")))] == 2
    assert points[(telemetry.RUN_DURATION, (("run.kind", "sync"), ("run.outcome", "ok")))] == 2, "two recorded durations"
    assert points[(telemetry.CHANGES, (("outcome", "applied"), ("step", "backends")))] == 2
    assert points[(telemetry.CHANGES, (("outcome", "applied"), ("step", "allowlists")))] == 3 + 1, "3 set, then 1 put back"
    assert points[(telemetry.RESTORED, (("step", "allowlists"),))] == 1
    assert points[(telemetry.REFUSALS, (("reason", "InvalidAnnotation"),))] == 2
    assert points[(telemetry.REQUESTS, (("service", "arm"),))] > 0
    assert points[(telemetry.REQUESTS, (("service", "kubernetes"),))] > 0
    assert points[(telemetry.ALLOWLIST_SIZE, ())] == 1


def test_a_429_from_arm_is_counted(world: World, observed: Any, readers: Readers) -> None:
    seed(world)
    world.apim.inject(Fault(429, method="GET", path_contains="/backends", times=1, headers={"Retry-After": "0"}))
    sync.run(CLUSTER, observed())
    assert readers.points()[(telemetry.THROTTLED, (("service", "arm"),))] == 1


def test_each_run_is_one_trace_with_a_span_per_step_and_its_logs_inside(
    world: World, observed: Any, readers: Readers, caplog: pytest.LogCaptureFixture
) -> None:
    seed(world)
    deps = observed()
    trace_ids_of_logs: list[int] = []

    class SpanOfEachRecord(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            trace_ids_of_logs.append(trace.get_current_span().get_span_context().trace_id)

    handler = SpanOfEachRecord(level=logging.INFO)
    logging.getLogger("shared").addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="shared"):
            sync.run(CLUSTER, deps)
            sync.run(CLUSTER, deps)
    finally:
        logging.getLogger("shared").removeHandler(handler)

    spans = readers.spans.get_finished_spans()
    roots = [s for s in spans if s.name == "aks_apim_sync.sync"]
    assert len(roots) == 2 and roots[0].context.trace_id != roots[1].context.trace_id
    first = [s for s in spans if s.context.trace_id == roots[0].context.trace_id]
    assert sorted(s.name for s in first if s.parent is not None) == [
        "aks_apim_sync.step.allowlists",
        "aks_apim_sync.step.apis",
        "aks_apim_sync.step.backends",
        "aks_apim_sync.step.read_cluster",
    ]
    assert roots[0].attributes is not None and roots[0].attributes["scope"] == "cluster"
    assert trace_ids_of_logs and set(trace_ids_of_logs) <= {r.context.trace_id for r in roots}


def test_a_rotation_reports_its_outcome_and_the_days_left_of_certificate_and_ca(
    world: World, observed: Any, readers: Readers
) -> None:
    seed(world)
    deps = observed()
    sync.run(CLUSTER, deps)
    rotate(deps, Clock())

    points = readers.points()
    assert points[(telemetry.RUNS, (("run.kind", "rotation"), ("run.outcome", "ok")))] == 1
    assert 89 <= points[(telemetry.DAYS_LEFT, (("certificate", "client-certificate"),))] <= 90
    assert 729 <= points[(telemetry.DAYS_LEFT, (("certificate", "ca"),))] <= 730
    assert any(s.name == "aks_apim_sync.rotation" for s in readers.spans.get_finished_spans())


def test_a_failed_rotation_is_counted_as_failed(world: World, observed: Any, readers: Readers) -> None:
    from shared.rotation import rotate as rotation

    deps = observed(AzureWebJobsStorage="")
    assert rotation.rotate(deps).failed
    assert readers.points()[(telemetry.RUNS, (("run.kind", "rotation"), ("run.outcome", "failed")))] == 1


def test_the_alert_rules_query_metrics_and_attributes_the_app_emits() -> None:
    alerts = (ROOT / "infra" / "modules" / "alerts.bicep").read_text()
    queried = set(re.findall(r'Name == "([a-z_.]+)"', alerts))
    assert queried and queried <= set(telemetry.METRIC_NAMES)
    assert set(re.findall(r'Properties\["([a-z_.]+)"\]', alerts)) <= {"run.kind", "run.outcome", "step", "certificate"}


def test_telemetry_is_off_without_a_connection_string(make_deps: Any) -> None:
    assert isinstance(make_deps().telemetry, telemetry.NoTelemetry)


def test_a_run_out_of_time_is_counted_incomplete_with_its_deferred_changes(world: World, observed: Any, readers: Readers) -> None:
    for i in range(10):
        world.kube.apply(service(f"svc-{i}"))
    ticks = itertools.count()
    deps = dataclasses.replace(observed(RUN_TIME_BUDGET_SECONDS="5", APPLY_CONCURRENCY="1"), monotonic=lambda: float(next(ticks)))
    report = sync.run(CLUSTER, deps)

    points = readers.points()
    assert points[(telemetry.RUNS, (("run.kind", "sync"), ("run.outcome", "incomplete")))] == 1
    assert points[(telemetry.CHANGES, (("outcome", "deferred"), ("step", "backends")))] == report.counts["deferred"] > 0
