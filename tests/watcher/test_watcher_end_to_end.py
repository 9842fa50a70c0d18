"""The real watcher against the Kubernetes emulator, publishing with the real EventGridPublisherClient to the
Event Grid stand-in, which delivers each event to on_event through the built function app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from sandbox.eventgrid import EventGridTopic
from sandbox.httpbase import Fault
from sandbox.tools import Azurite
from sandbox.world import CLUSTER_NAME, World
from shared.core import naming
from shared.core.model import ServiceRef
from shared.core.watcher_events import CLUSTER_RESYNC, SERVICE_CHANGED
from tests.conftest import service
from tests.indexed import user_function
from watcher.__main__ import Running
from watcher.settings import WatcherSettings

ON_EVENT = user_function("on_event")
TOPIC_KEY = "topic-key-for-tests"


def backend_id(name: str, namespace: str = "shop") -> str:
    return naming.backend_id_for(ServiceRef(CLUSTER_NAME, namespace, name))


def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture(scope="module")
def topic(session_world: World) -> Iterator[EventGridTopic]:
    server = EventGridTopic(tls=session_world.tls, key=TOPIC_KEY, token=session_world.token).start()
    yield server
    server.stop()


@pytest.fixture
def delivering(world: World, topic: EventGridTopic, monkeypatch: pytest.MonkeyPatch) -> Iterator[EventGridTopic]:
    """The topic, subscribed by on_event with the sandbox's app settings."""
    for name, value in world.settings().items():
        monkeypatch.setenv(name, value)
    topic.reset()

    def to_function_app(event: dict[str, Any]) -> None:
        ON_EVENT(EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={}))

    topic.subscribe(to_function_app)
    yield topic
    topic.subscribe(None)


def watcher_settings(world: World, topic: EventGridTopic, **overrides: Any) -> WatcherSettings:
    options: dict[str, Any] = {
        "cluster_name": CLUSTER_NAME,
        "topic_endpoint": topic.url + "/api/events",
        "topic_key": TOPIC_KEY,
        "source": f"urn:aks-apim-sync:watcher:{CLUSTER_NAME}",
        "kubeconfig": str(world.kubeconfig),
        "coalesce_seconds": 0.05,
        "watch_timeout_seconds": 1,
        "ca_bundle": str(world.tls.ca_cert),
    } | overrides
    return WatcherSettings(**options)


@pytest.fixture
def watcher(world: World, delivering: EventGridTopic) -> Iterator[Running]:
    running = Running(watcher_settings(world, delivering))
    assert running.watcher.ready.wait(10)
    eventually(lambda: running.outbox.pending == 0 and delivering.wait_until_idle())
    yield running
    running.stop()


def test_service_lifecycle_reaches_apim_through_the_watcher(world: World, watcher: Running, delivering: EventGridTopic) -> None:
    world.kube.apply(service("orders"))
    eventually(lambda: backend_id("orders") in world.apim.backends)

    world.kube.apply(service("orders", lb_ip="52.0.0.77"))
    eventually(lambda: world.apim.backends[backend_id("orders")]["properties"]["url"] == "http://52.0.0.77")

    world.kube.remove("Service", "shop", "orders")
    eventually(lambda: backend_id("orders") not in world.apim.backends)


def test_publishes_a_cloud_events_batch_with_the_topic_key(world: World, watcher: Running, delivering: EventGridTopic) -> None:
    world.kube.apply(service("orders"))
    eventually(lambda: any(e["type"] == SERVICE_CHANGED for e in delivering.received))
    headers = delivering.publish_headers[-1]
    assert headers["aeg-sas-key"] == TOPIC_KEY
    assert headers["content-type"].startswith("application/cloudevents-batch+json")
    event = next(e for e in delivering.received if e["type"] == SERVICE_CHANGED)
    assert event["subject"] == f"clusters/{CLUSTER_NAME}/namespaces/shop/services/orders"
    assert event["source"] == f"urn:aks-apim-sync:watcher:{CLUSTER_NAME}" and event["specversion"] == "1.0"


def test_unannotated_services_are_not_reported(world: World, watcher: Running, delivering: EventGridTopic) -> None:
    world.kube.apply(service("plain", expose=False))
    world.kube.apply(service("orders"))
    eventually(lambda: backend_id("orders") in world.apim.backends)
    subjects = [e["subject"] for e in delivering.received if e["type"] == SERVICE_CHANGED]
    assert all(not s.endswith("/plain") for s in subjects)


def test_changes_during_a_410_gone_are_found_by_the_relist(world: World, watcher: Running, delivering: EventGridTopic) -> None:
    world.kube.apply(service("orders"))
    eventually(lambda: backend_id("orders") in world.apim.backends)
    world.kube.inject(Fault(503, method="GET", path_contains="/services", query={"watch": "true"}, times=1))
    eventually(lambda: any(r.status == 503 for r in world.kube.log))

    world.kube.apply(service("payments"))
    world.kube.remove("Service", "shop", "orders")
    world.kube.compact()

    eventually(lambda: backend_id("payments") in world.apim.backends and backend_id("orders") not in world.apim.backends)
    assert watcher.watcher.relists >= 1


def test_a_long_topic_outage_ends_in_one_cluster_resync(world: World, delivering: EventGridTopic) -> None:
    running = Running(watcher_settings(world, delivering, give_up_after_seconds=0.2))
    try:
        assert running.watcher.ready.wait(10)
        eventually(lambda: running.outbox.pending == 0)
        delivering.inject(Fault(503, method="POST", path_contains="/api/events", times=10_000))
        for name in ("a", "b", "c"):
            world.kube.apply(service(name))
        eventually(lambda: running.outbox.collapsed >= 3)
        delivering.faults.clear()
        eventually(lambda: all(backend_id(n) in world.apim.backends for n in ("a", "b", "c")))
        assert delivering.received[-1]["type"] == CLUSTER_RESYNC
    finally:
        running.stop()


def test_python_m_watcher_exits_cleanly_on_sigterm(world: World, delivering: EventGridTopic) -> None:
    environment = {
        **os.environ,
        "CLUSTER_NAME": CLUSTER_NAME,
        "EVENTGRID_TOPIC_ENDPOINT": delivering.url + "/api/events",
        "EVENTGRID_TOPIC_KEY": TOPIC_KEY,
        "EVENTGRID_CA_BUNDLE": str(world.tls.ca_cert),
        "KUBECONFIG": str(world.kubeconfig),
        "WATCH_TIMEOUT_SECONDS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "watcher"], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    eventually(lambda: any(e["type"] == CLUSTER_RESYNC for e in delivering.received))
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "stopping" in output and TOPIC_KEY not in output


def test_a_tenancy_policy_change_brings_apim_along_through_a_cluster_resync(
    world: World, watcher: Running, delivering: EventGridTopic
) -> None:
    world.kube.apply(service("feed", annotations={"apim-sync.io/url": "https://api.partner.example/"}))
    eventually(lambda: any(e["type"] == SERVICE_CHANGED for e in delivering.received))
    assert backend_id("feed") not in world.apim.backends, "the url host is not granted yet"
    delivering.received.clear()

    world.set_tenancy_policy({"namespaces": {"shop": {"urlHosts": ["api.partner.example"]}}})

    eventually(lambda: any(e["type"] == CLUSTER_RESYNC for e in delivering.received))
    eventually(lambda: backend_id("feed") in world.apim.backends)
    assert world.apim.backends[backend_id("feed")]["properties"]["url"] == "https://api.partner.example/"


def test_a_hand_edited_trust_bundle_is_put_back_by_the_event_not_by_the_timer(
    world: World, delivering: EventGridTopic, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    from shared import deps
    from shared.core.watcher_events import TRUST_CHANGED
    from shared.rotation import pki, rotate
    from tests.conftest import ingress
    from tests.rotation.support import BUNDLE

    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("orders", "shop", "orders.example.com", "orders"))
    deps.reset()
    assert not rotate.rotate(deps.dependencies()).failed  # the CA, trusted in the bundle
    trusted = world.kube.get("Secret", *BUNDLE)
    assert trusted is not None
    running = Running(watcher_settings(world, delivering))
    try:
        assert running.watcher.ready.wait(10)
        eventually(lambda: running.outbox.pending == 0 and delivering.wait_until_idle())
        delivering.received.clear()
        world.kube.apply({**trusted, "data": {"ca.crt": ""}})  # someone empties the bundle by hand

        def restored() -> bool:
            secret = world.kube.get("Secret", *BUNDLE)
            return secret is not None and len(pki.split_pem_bundle(base64.b64decode(secret["data"]["ca.crt"]))) == 1

        eventually(lambda: any(e["type"] == TRUST_CHANGED for e in delivering.received))
        eventually(restored)
    finally:
        running.stop()


def test_an_httproute_change_reaches_apim_through_the_watcher(
    world: World, delivering: EventGridTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.gateway.test_httproute_discovery import gateway, httproute

    monkeypatch.setenv("ROUTE_KINDS", "HTTPRoute")
    from shared import deps

    deps.reset()
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    running = Running(watcher_settings(world, delivering, watch_routes=True))
    try:
        assert running.watcher.ready.wait(10)
        world.kube.apply(httproute("orders"))
        eventually(
            lambda: (
                world.apim.backends.get(backend_id("orders"), {}).get("properties", {}).get("url")
                == "https://orders.contoso.example/api"
            )
        )
        world.kube.apply(httproute("orders", path="/v2"))
        eventually(lambda: world.apim.backends[backend_id("orders")]["properties"]["url"] == "https://orders.contoso.example/v2")
    finally:
        running.stop()


def test_a_deleted_istio_allow_policy_is_made_again_by_the_event(
    world: World, delivering: EventGridTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared import deps
    from shared.allowlists.writers import authorization_policy_name
    from tests.gateway.test_httproute_discovery import gateway, httproute

    monkeypatch.setenv("ROUTE_KINDS", "HTTPRoute")
    monkeypatch.setenv("GATEWAY_ALLOWLIST", "istio")
    deps.reset()
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))
    policy = authorization_policy_name("shared")
    running = Running(watcher_settings(world, delivering, watch_routes=True, watch_istio_policies=True))
    try:
        assert running.watcher.ready.wait(10)
        eventually(lambda: world.kube.get("AuthorizationPolicy", "shop", policy) is not None)
        eventually(lambda: running.outbox.pending == 0 and delivering.wait_until_idle())
        delivering.received.clear()
        world.kube.remove("AuthorizationPolicy", "shop", policy)  # the Gateway is open to everyone until it is back

        eventually(lambda: any(e["type"] == CLUSTER_RESYNC for e in delivering.received))
        eventually(lambda: world.kube.get("AuthorizationPolicy", "shop", policy) is not None)
    finally:
        running.stop()
