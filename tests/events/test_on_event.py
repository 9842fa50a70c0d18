"""on_event through the built function app, with events decoded as the Functions worker decodes them,
against the APIM and Kubernetes emulators: what APIM holds afterwards, and what it cost."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

import shared
from sandbox.httpbase import Fault
from sandbox.world import SERVICE_NAME, World
from shared.core import naming
from shared.core.model import ServiceRef
from shared.core.watcher_events import CLUSTER_RESYNC, SERVICE_CHANGED, watcher_source
from tests.conftest import service
from tests.indexed import user_function

ON_EVENT = user_function("on_event")
CLUSTER = "aks-sandbox"


def deliver(body: dict[str, Any]) -> None:
    """What the host does with one event of a delivery: decode it (the worker's converter), call the function."""
    event = EventGridEventInConverter.decode(meta.Datum(json.dumps(body), "json"), trigger_metadata={})
    ON_EVENT(event)


def service_changed(name: str, namespace: str = "shop", *, event_id: str = "e", **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": watcher_source(CLUSTER),
        "type": SERVICE_CHANGED,
        "subject": f"clusters/{CLUSTER}/namespaces/{namespace}/services/{name}",
        "time": "2026-11-28T10:00:00Z",
        "data": data,
    }


def arm_event(world: World, kind: str, subject: str) -> dict[str, Any]:
    return {
        "id": "arm-1",
        "topic": world.apim.service_id.rsplit("/providers/", 1)[0],
        "subject": subject,
        "eventType": f"Microsoft.Resources.{kind}",
        "eventTime": "2026-11-28T10:00:00Z",
        "data": {"operationName": "Microsoft.ApiManagement/service/write", "status": "Succeeded"},
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def backend_id(name: str, namespace: str = "shop") -> str:
    return naming.backend_id_for(ServiceRef(CLUSTER, namespace, name))


@pytest.fixture
def app(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    for name, value in world.settings().items():
        monkeypatch.setenv(name, value)
    return world


def requests_of(world: World) -> dict[str, list[str]]:
    return {
        "apim": [
            f"{r.method} {r.path.split('?')[0].split('/providers/Microsoft.ApiManagement/service/')[-1]}" for r in world.apim.log
        ],
        "kube": [f"{r.method} {r.path.split('?')[0]}" for r in world.kube.log],
    }


def test_service_event_creates_its_backend_with_a_constant_number_of_requests(app: World) -> None:
    for i in range(30):
        app.kube.apply(service(f"other-{i}"))
    app.kube.apply(service("orders"))
    app.apim.clear_log()
    app.kube.clear_log()

    deliver(service_changed("orders"))

    assert app.apim.backends[backend_id("orders")]["properties"]["url"] == "http://52.0.0.10"
    assert requests_of(app) == {
        "apim": [
            f"GET {SERVICE_NAME}/backends/{backend_id('orders')}",
            f"PUT {SERVICE_NAME}/backends/{backend_id('orders')}",
            f"GET {SERVICE_NAME}",
        ],
        "kube": [
            "GET /api/v1/namespaces/shop/services/orders",
            "GET /apis/networking.k8s.io/v1/namespaces/shop/ingresses",
            "GET /api/v1/namespaces/aks-apim-sync/configmaps/aks-apim-sync-tenancy",
            "PATCH /api/v1/namespaces/shop/services/orders",
        ],
    }


def test_second_delivery_of_the_same_event_writes_nothing(app: World) -> None:
    app.kube.apply(service("orders"))
    deliver(service_changed("orders"))
    app.apim.clear_log()
    app.kube.clear_log()

    deliver(service_changed("orders"))

    assert app.apim.writes() == [] and app.kube.writes() == []


def test_deleted_service_event_removes_its_backend(app: World) -> None:
    app.kube.apply(service("orders"))
    deliver(service_changed("orders"))
    app.kube.remove("Service", "shop", "orders")

    deliver(service_changed("orders", event_id="e2"))

    assert app.apim.backends == {}


def test_backend_renamed_by_annotation_is_moved_using_the_events_hint(app: World) -> None:
    app.kube.apply(service("orders", annotations={"apim-sync.io/backend-id": "orders-v1"}))
    deliver(service_changed("orders"))
    app.kube.apply(service("orders", annotations={"apim-sync.io/backend-id": "orders-v2"}))

    deliver(service_changed("orders", event_id="e2", backendIds=["orders-v1"]))

    assert sorted(app.apim.backends) == ["orders-v2"]


def test_reordered_events_end_in_the_state_of_the_cluster(app: World) -> None:
    app.kube.apply(service("orders"))
    created = service_changed("orders", event_id="created")
    app.kube.remove("Service", "shop", "orders")
    deleted = service_changed("orders", event_id="deleted")
    app.kube.apply(service("orders", lb_ip="52.0.0.99"))
    recreated = service_changed("orders", event_id="recreated")

    for event in (recreated, deleted, created, deleted):
        deliver(event)

    assert app.apim.backends[backend_id("orders")]["properties"]["url"] == "http://52.0.0.99"


def test_spoofed_event_from_a_foreign_source_changes_nothing(app: World) -> None:
    app.kube.apply(service("orders"))
    spoofed = service_changed("orders")
    spoofed["source"] = "/subscriptions/attacker/resourceGroups/rg/providers/Microsoft.EventGrid/topics/t"

    deliver(spoofed)

    assert app.apim.backends == {} and app.apim.log == [] and app.kube.log == []


def test_cloud_event_with_capitalised_attributes_is_acknowledged_with_the_reason(
    app: World, caplog: pytest.LogCaptureFixture
) -> None:
    quirky = {"specVersion": "1.0", "Type": SERVICE_CHANGED, "id": "q", "source": watcher_source(CLUSTER), "data": {}}
    with caplog.at_level(logging.WARNING):
        deliver(quirky)
    assert "capitalised attribute names" in caplog.text and app.apim.log == []


def test_transient_failure_raises_so_event_grid_redelivers(app: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    app.kube.apply(service("orders"))
    app.apim.inject(Fault(503, method="PUT", times=1))

    with pytest.raises(shared.RetryableError):
        deliver(service_changed("orders"))
    deliver(service_changed("orders"))  # the redelivery

    assert backend_id("orders") in app.apim.backends


def test_permanent_failure_is_logged_and_acknowledged(app: World, caplog: pytest.LogCaptureFixture) -> None:
    app.kube.apply(service("orders"))
    app.apim.inject(Fault(403, method="PUT", times=1))
    with caplog.at_level(logging.ERROR):
        deliver(service_changed("orders"))
    assert "permanent failure, not retried" in caplog.text and app.apim.backends == {}


def test_cluster_resync_event_reconciles_every_service(app: World) -> None:
    app.kube.apply(service("orders"))
    app.kube.apply(service("payments", "billing"))
    deliver(
        {
            "specversion": "1.0",
            "id": "r",
            "source": watcher_source(CLUSTER),
            "type": CLUSTER_RESYNC,
            "subject": f"clusters/{CLUSTER}",
        }
    )
    assert sorted(app.apim.backends) == sorted([backend_id("orders"), backend_id("payments", "billing")])


def test_backend_edited_by_hand_is_repaired_when_arm_reports_the_write(app: World) -> None:
    app.kube.apply(service("orders"))
    deliver(service_changed("orders"))
    edited = dict(app.apim.backends[backend_id("orders")]["properties"], url="http://10.9.9.9")
    app.apim.put_backend_directly(backend_id("orders"), edited)
    app.apim.clear_log()

    deliver(arm_event(app, "ResourceWriteSuccess", f"{app.apim.service_id}/backends/{backend_id('orders')}"))

    assert app.apim.backends[backend_id("orders")]["properties"]["url"] == "http://52.0.0.10"
    assert not any(r.path.endswith("/backends") for r in app.apim.log), "no list of all backends"


def test_backend_deleted_in_the_portal_is_recreated(app: World) -> None:
    app.kube.apply(service("orders"))
    deliver(service_changed("orders"))
    del app.apim.backends[backend_id("orders")]

    deliver(arm_event(app, "ResourceDeleteSuccess", f"{app.apim.service_id}/backends/{backend_id('orders')}"))

    assert backend_id("orders") in app.apim.backends


def test_foreign_backend_write_is_left_alone(app: World) -> None:
    app.apim.put_backend_directly("hand-made", {"url": "http://x", "protocol": "http"})
    app.apim.clear_log()
    deliver(arm_event(app, "ResourceWriteSuccess", f"{app.apim.service_id}/backends/hand-made"))
    assert app.apim.writes() == [] and app.apim.backends["hand-made"]["properties"]["url"] == "http://x"


def test_apim_address_change_reported_by_arm_updates_the_allow_lists(app: World) -> None:
    app.kube.apply(service("orders"))
    deliver(service_changed("orders"))
    app.apim.service["properties"]["publicIPAddresses"] = ["20.0.0.2"]

    deliver(arm_event(app, "ResourceWriteSuccess", app.apim.service_id))

    orders = app.kube.get("Service", "shop", "orders")
    assert orders is not None and orders["spec"]["loadBalancerSourceRanges"] == ["20.0.0.2/32"]


def api_event(world: World, kind: str, api_id: str) -> dict[str, Any]:
    return {
        "id": "api-1",
        "topic": world.apim.service_id,
        "subject": f"/apis/{api_id}",
        "eventType": f"Microsoft.ApiManagement.{kind}",
        "eventTime": "2026-11-28T10:00:00Z",
        "data": {"resourceUri": f"{world.apim.service_id}/apis/{api_id}"},
        "dataVersion": "1",
        "metadataVersion": "1",
    }


def test_managed_api_deleted_in_the_portal_is_put_back(app: World) -> None:
    app.kube.apply(service("orders", annotations={"apim-sync.io/api-id": "orders"}))
    deliver(service_changed("orders"))
    assert "orders" in app.apim.api_side.apis
    del app.apim.api_side.apis["orders"]

    deliver(api_event(app, "APIDeleted", "orders"))

    assert "orders" in app.apim.api_side.apis


def test_service_that_dropped_its_api_id_leaves_the_api_with_the_events_hint(app: World) -> None:
    app.kube.apply(service("orders", annotations={"apim-sync.io/api-id": "orders"}))
    deliver(service_changed("orders"))
    app.kube.apply(service("orders"))

    deliver(service_changed("orders", event_id="e2", apiIds=["orders"]))

    assert app.apim.api_side.apis == {}


def test_event_about_a_foreign_api_changes_nothing(app: World) -> None:
    app.apim.api_side.apis["theirs"] = app.apim.api_side._entity(
        "apis", "apis/theirs", "theirs", {"path": "theirs", "displayName": "Theirs", "description": ""}
    )
    app.apim.clear_log()
    deliver(api_event(app, "APIUpdated", "theirs"))
    assert app.apim.writes() == []


def test_a_dropped_event_is_made_good_by_the_periodic_resync(app: World) -> None:
    from azure.functions.timer import TimerRequest

    app.kube.apply(service("orders"))  # its event is lost
    app.kube.apply(service("payments"))
    deliver(service_changed("payments"))
    assert backend_id("orders") not in app.apim.backends, "an event reconciles only the scope it names"

    user_function("periodic_resync")(TimerRequest(past_due=False))

    assert backend_id("orders") in app.apim.backends
