"""Which scope (or which reason) each event maps to: published samples of both schemas, and broken ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.core.model import BackendId
from shared.core.scope import Scope
from shared.core.watcher_events import CLUSTER_RESYNC, SERVICE_CHANGED, watcher_source
from shared.events.routing import (
    Acknowledge,
    EventContext,
    Malformed,
    RecheckApi,
    RecheckBackend,
    ReconcileScope,
    RefreshAllowLists,
    route,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"
SAMPLE_APIM = (
    "/subscriptions/{subscription-id}/resourceGroups/{your-rg}/providers/Microsoft.ApiManagement/service/{your-APIM-instance}"
)
SAMPLE_AKS = (
    "/subscriptions/{subscription-id}/resourceGroups/{resource-group}"
    "/providers/Microsoft.ContainerService/managedClusters/{cluster}"
)
APIM = "/subscriptions/sub-1/resourceGroups/rg-api/providers/Microsoft.ApiManagement/service/apim-prod"
AKS = "/subscriptions/sub-1/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-prod"
CTX = EventContext(cluster="aks-prod", apim_service_id=APIM, aks_resource_id=AKS)
SAMPLE_CTX = EventContext(cluster="{cluster}", apim_service_id=SAMPLE_APIM, aks_resource_id=SAMPLE_AKS)


def sample(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def watcher_event(subject: str, *, type_: str = SERVICE_CHANGED, source: str | None = None, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "e-1",
        "source": source or watcher_source("aks-prod"),
        "type": type_,
        "subject": subject,
        "data": data,
    }


# -- published samples ---------------------------------------------------------------------------------


def test_apim_api_release_sample_rechecks_the_api_it_names() -> None:
    action = route(sample("ApiManagement.event-grid-schema.apiReleaseCreated.json"), SAMPLE_CTX)
    assert action == RecheckApi("{apiId}", why="APIReleaseCreated for API '{apiId}'")


def test_aks_rolling_progress_sample_is_reported_not_acted_on() -> None:
    action = route(sample("ContainerService.event-grid-schema.node_pool_rolling_progress.json"), SAMPLE_CTX)
    assert action == Acknowledge("NodePoolRollingProgress is reported only")


def test_subscription_validation_sample_is_left_to_the_host() -> None:
    (validation,) = sample("EventGrid.SubscriptionValidationEvent.event-grid-schema.webhook-event-delivery-doc.json")
    action = route(validation, SAMPLE_CTX)
    assert isinstance(action, Acknowledge) and "not one aks-apim-sync acts on" in action.why


def test_arm_write_sample_about_a_storage_account_is_ignored() -> None:
    ctx = EventContext(
        cluster="c",
        apim_service_id="/subscriptions/{subscription-id}/resourceGroups/{resource-group}/providers/Microsoft.ApiManagement/service/a",
    )
    action = route(sample("Resources.cloud-events-schema.resource_write_success.json"), ctx)
    assert isinstance(action, Acknowledge) and "is not the configured APIM service" in action.why


def test_arm_write_sample_retargeted_at_the_apim_service_refreshes_allow_lists() -> None:
    event = sample("Resources.cloud-events-schema.resource_write_success.json")
    event.update(source="/subscriptions/sub-1/resourceGroups/rg-api", subject=APIM.lower())
    assert route(event, CTX) == RefreshAllowLists("ResourceWriteSuccess on the APIM service")


# -- watcher events ------------------------------------------------------------------------------------


def test_service_changed_reconciles_exactly_that_service() -> None:
    action = route(watcher_event("clusters/aks-prod/namespaces/shop/services/orders"), CTX)
    assert action == ReconcileScope(Scope("aks-prod", "shop", "orders"), why="Service shop/orders changed")


def test_service_changed_carries_valid_backend_hints_only() -> None:
    event = watcher_event("clusters/aks-prod/namespaces/shop/services/orders", backendIds=["old-id", "bad/id", 7])
    action = route(event, CTX)
    assert isinstance(action, ReconcileScope) and action.backend_hints == frozenset({"old-id"})


def test_cluster_resync_reconciles_the_whole_cluster() -> None:
    action = route(watcher_event("clusters/aks-prod", type_=CLUSTER_RESYNC), CTX)
    assert action == ReconcileScope(Scope("aks-prod"), why="the watcher asked for a cluster resync")


def test_event_for_another_cluster_is_acknowledged() -> None:
    action = route(watcher_event("clusters/aks-dev/namespaces/shop/services/orders"), CTX)
    assert isinstance(action, Acknowledge) and "aks-dev" in action.why


def test_spoofed_watcher_event_from_a_foreign_source_is_ignored() -> None:
    event = watcher_event("clusters/aks-prod/namespaces/shop/services/orders", source="/subscriptions/evil/topics/t")
    action = route(event, CTX)
    assert isinstance(action, Acknowledge) and "is not a configured event source" in action.why


def test_configured_sources_are_trusted_case_insensitively() -> None:
    custom_topic = "/subscriptions/sub-1/resourceGroups/rg-aks/providers/Microsoft.EventGrid/topics/aks-apim-sync"
    ctx = EventContext(cluster="aks-prod", apim_service_id=APIM, trusted_sources=frozenset({custom_topic}))
    event = watcher_event("clusters/aks-prod/namespaces/shop/services/orders", source=custom_topic.upper())
    assert isinstance(route(event, ctx), ReconcileScope)


@pytest.mark.parametrize(
    "subject",
    [
        "clusters/aks-prod/namespaces/shop/services/",
        "clusters/aks-prod/namespaces/Shop/services/orders",
        "namespaces/shop/services/orders",
        "clusters/aks-prod/namespaces/shop/services/orders/extra",
    ],
)
def test_service_subject_that_does_not_parse_is_malformed(subject: str) -> None:
    action = route(watcher_event(subject), CTX)
    assert isinstance(action, Malformed) and "is not clusters/<cluster>/namespaces/<namespace>/services/<name>" in action.why


# -- APIM, ARM and AKS system events -------------------------------------------------------------------


def eventgrid(event_type: str, topic: str, subject: str, data: Any = None) -> dict[str, Any]:
    return {
        "id": "e-2",
        "topic": topic,
        "subject": subject,
        "eventType": event_type,
        "data": data or {},
        "dataVersion": "1",
        "metadataVersion": "1",
        "eventTime": "2026-11-28T10:00:00Z",
    }


def test_api_deleted_in_the_portal_rechecks_that_api() -> None:
    action = route(eventgrid("Microsoft.ApiManagement.APIDeleted", APIM, "/apis/orders;Rev=2"), CTX)
    assert action == RecheckApi("orders", why="APIDeleted for API 'orders'")


def test_circuit_breaker_is_reported_as_notable_and_not_acted_on() -> None:
    event = eventgrid(
        "Microsoft.ApiManagement.CircuitBreaker.Opened", APIM, "/backends/b1/circuit-breaker/rules/r", {"backendName": "b1"}
    )
    assert route(event, CTX) == Acknowledge("circuit breaker opened for backend 'b1'", notable=True)


def test_product_and_user_events_are_reported_only() -> None:
    for kind in ("ProductCreated", "UserDeleted", "SubscriptionUpdated"):
        action = route(eventgrid(f"Microsoft.ApiManagement.{kind}", APIM, "/products/p"), CTX)
        assert isinstance(action, Acknowledge) and kind in action.why


def test_apim_event_from_another_apim_is_ignored() -> None:
    other = APIM.replace("apim-prod", "apim-dev")
    action = route(eventgrid("Microsoft.ApiManagement.APIUpdated", other, "/apis/orders"), CTX)
    assert isinstance(action, Acknowledge) and "not a configured event source" in action.why


@pytest.mark.parametrize("kind", ["ResourceWriteSuccess", "ResourceActionSuccess", "ResourceWriteFailure"])
def test_arm_write_or_action_on_the_apim_service_refreshes_allow_lists(kind: str) -> None:
    event = eventgrid(f"Microsoft.Resources.{kind}", "/subscriptions/sub-1/resourceGroups/rg-api", APIM)
    assert route(event, CTX) == RefreshAllowLists(f"{kind} on the APIM service")


def test_arm_delete_of_an_apim_backend_rechecks_that_backend() -> None:
    event = eventgrid("Microsoft.Resources.ResourceDeleteSuccess", "/subscriptions/sub-1", APIM + "/backends/shop-orders-abc123")
    assert route(event, CTX) == RecheckBackend(
        BackendId("shop-orders-abc123"), why="ResourceDeleteSuccess on backend 'shop-orders-abc123'"
    )


def test_arm_event_from_a_foreign_subscription_is_ignored() -> None:
    event = eventgrid("Microsoft.Resources.ResourceWriteSuccess", "/subscriptions/sub-2", APIM)
    assert isinstance(route(event, CTX), Acknowledge)


@pytest.mark.parametrize("kind", ["NodePoolRollingSucceeded", "NodePoolRollingFailed"])
def test_node_pool_upgrade_end_resyncs_the_cluster(kind: str) -> None:
    action = route(eventgrid(f"Microsoft.ContainerService.{kind}", AKS, "aks-prod", {"nodePoolName": "np1"}), CTX)
    assert isinstance(action, ReconcileScope) and action.scope == Scope("aks-prod")


def test_cluster_support_ending_is_reported_as_notable() -> None:
    action = route(eventgrid("Microsoft.ContainerService.ClusterSupportEnding", AKS, "aks-prod"), CTX)
    assert action == Acknowledge("ClusterSupportEnding is reported only", notable=True)


def test_aks_event_from_another_cluster_is_ignored() -> None:
    action = route(eventgrid("Microsoft.ContainerService.NodePoolRollingSucceeded", AKS + "-2", "x"), CTX)
    assert isinstance(action, Acknowledge)


def test_unknown_event_type_is_acknowledged() -> None:
    action = route(eventgrid("Microsoft.Storage.BlobCreated", APIM, "/x"), CTX)
    assert isinstance(action, Acknowledge) and "Microsoft.Storage.BlobCreated" in action.why


# -- malformed -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ([], "an event must be a JSON object"),
        ({}, "neither a CloudEvent (specversion) nor an Event Grid event (eventType)"),
        ({"specVersion": "1.0", "Type": "x", "id": "1", "source": "s"}, "must be lowercase"),
        ({"specversion": "0.3", "type": "x", "id": "1", "source": "s"}, "specversion '0.3' is not 1.0"),
        ({"specversion": "1.0", "id": "1", "source": "s"}, "field 'type' is missing or empty"),
        ({"eventType": "Microsoft.ApiManagement.APIUpdated", "id": "1"}, "field 'topic' is missing or empty"),
        ({"topic": APIM, "id": "1"}, "field 'eventType' is missing or empty"),
        ({"specversion": "1.0", "type": SERVICE_CHANGED, "id": "1", "source": "s", "subject": 5}, "'subject' must be a string"),
    ],
)
def test_malformed_events_name_why(raw: Any, why: str) -> None:
    action = route(raw, CTX)
    assert isinstance(action, Malformed) and why in action.why
