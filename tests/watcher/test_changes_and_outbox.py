"""What the watcher reports, and how its outbox coalesces, retries and degrades. Pure: no servers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ingress, service
from watcher.changes import ServiceChange, ingress_events, ingress_state, relist_diff, service_event, service_state
from watcher.outbox import ClusterResync, Message, Outbox

PREFIX = "apim-sync.io"
ROOT = Path(__file__).parent.parent.parent
KEY = ("shop", "orders")


def state(manifest: dict[str, Any]) -> Any:
    return service_state(manifest, PREFIX)


def test_new_exposed_service_is_reported() -> None:
    assert service_event(KEY, None, state(service("orders"))) == ServiceChange("shop", "orders")


def test_service_that_was_never_exposed_is_not_reported() -> None:
    plain = state(service("orders", expose=False))
    assert service_event(KEY, None, plain) is None
    assert service_event(KEY, plain, None) is None


def test_service_that_loses_the_annotation_is_reported() -> None:
    before = state(service("orders"))
    after = state(service("orders", expose=False))
    assert service_event(KEY, before, after) == ServiceChange("shop", "orders")


def test_deleted_service_carries_its_old_backend_id_as_a_hint() -> None:
    before = state(service("orders", annotations={"apim-sync.io/backend-id": "orders-v1"}))
    assert service_event(KEY, before, None) == ServiceChange("shop", "orders", frozenset({"orders-v1"}))


def test_service_that_leaves_an_api_carries_the_api_id_as_a_hint() -> None:
    before = state(service("orders", annotations={"apim-sync.io/api-id": "orders"}))
    after = state(service("orders"))
    assert service_event(KEY, before, after) == ServiceChange("shop", "orders", api_ids=frozenset({"orders"}))


def test_label_only_change_is_not_reported() -> None:
    manifest = service("orders")
    relabelled = service("orders")
    relabelled["metadata"]["labels"] = {"team": "blue"}
    relabelled["metadata"]["resourceVersion"] = "99"
    assert service_event(KEY, state(manifest), state(relabelled)) is None


def test_load_balancer_address_change_is_reported() -> None:
    assert service_event(KEY, state(service("orders")), state(service("orders", lb_ip="52.0.0.11"))) is not None


def test_ingress_change_is_reported_for_the_exposed_services_it_routes_to_before_and_after() -> None:
    before = ingress_state(ingress("web", "shop", "a.example", "orders"))
    after = ingress_state(ingress("web", "shop", "a.example", "payments"))
    exposed = [("shop", "orders"), ("shop", "payments"), ("other", "orders")]
    assert ingress_events("shop", before, after, exposed) == [ServiceChange("shop", "orders"), ServiceChange("shop", "payments")]


def test_ingress_to_unexposed_services_is_not_reported() -> None:
    assert ingress_events("shop", None, ingress_state(ingress("web", "shop", "a.example", "legacy")), [("shop", "orders")]) == []


def test_relist_reports_changes_and_deletions_since_the_last_watch() -> None:
    known = {("a", "x"): 1, ("a", "y"): 2, ("a", "gone"): 3}
    listed = {("a", "x"): 1, ("a", "y"): 20, ("a", "new"): 4}
    assert relist_diff(known, listed) == [(("a", "gone"), 3, None), (("a", "new"), None, 4), (("a", "y"), 2, 20)]


# -- outbox --------------------------------------------------------------------------------------------


class Topic:
    def __init__(self) -> None:
        self.batches: list[list[Message]] = []
        self.down = False

    def __call__(self, messages: Sequence[Message]) -> None:
        if self.down:
            raise ConnectionError("topic unavailable")
        self.batches.append(list(messages))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def topic() -> Topic:
    return Topic()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def outbox(topic: Topic, clock: Clock, **overrides: Any) -> Outbox:
    options: dict[str, Any] = {"window_seconds": 2.0, "give_up_after_seconds": 60.0} | overrides
    return Outbox(topic, clock=clock, **options)


def test_a_burst_of_changes_to_one_service_is_one_event(topic: Topic, clock: Clock) -> None:
    box = outbox(topic, clock)
    for _ in range(5):
        box.add(ServiceChange("shop", "orders"))
        clock.now += 0.1
    box.flush()
    assert topic.batches == []
    clock.now += 2
    box.flush()
    assert topic.batches == [[ServiceChange("shop", "orders")]]


def test_coalesced_events_keep_every_backend_hint(topic: Topic, clock: Clock) -> None:
    box = outbox(topic, clock, window_seconds=0)
    box.add(ServiceChange("shop", "orders", frozenset({"v1"})))
    box.add(ServiceChange("shop", "orders", frozenset({"v2"})))
    box.flush()
    assert topic.batches == [[ServiceChange("shop", "orders", frozenset({"v1", "v2"}))]]


def test_failed_publish_keeps_the_changes_and_backs_off(topic: Topic, clock: Clock) -> None:
    box = outbox(topic, clock, window_seconds=0)
    box.add(ServiceChange("shop", "orders"))
    topic.down = True
    assert box.flush() is False
    topic.down = False
    box.flush()
    assert topic.batches == [], "still inside the backoff"
    clock.now += 1
    box.flush()
    assert topic.batches == [[ServiceChange("shop", "orders")]]


def test_long_outage_collapses_into_one_cluster_resync(topic: Topic, clock: Clock) -> None:
    box = outbox(topic, clock, window_seconds=0, give_up_after_seconds=60)
    topic.down = True
    for minute in range(3):
        for i in range(50):
            box.add(ServiceChange("shop", f"s{minute}-{i}"))
        box.flush(force=True)
        clock.now += 31
    assert box.pending == 1
    topic.down = False
    clock.now += 60
    box.flush()
    assert len(topic.batches) == 1 and len(topic.batches[0]) == 1
    assert isinstance(topic.batches[0][0], ClusterResync)


def test_too_many_waiting_changes_collapse_into_one_cluster_resync(topic: Topic, clock: Clock) -> None:
    box = outbox(topic, clock, window_seconds=0, max_pending=10)
    for i in range(11):
        box.add(ServiceChange("shop", f"s{i}"))
    box.flush()
    assert [type(m) for m in topic.batches[0]] == [ClusterResync]


# -- packaging -----------------------------------------------------------------------------------------


def test_watcher_rbac_is_read_only_on_what_it_watches() -> None:
    import yaml

    documents = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "watcher.yaml").read_text()))
    (role,) = [d for d in documents if d["kind"] == "ClusterRole"]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes", "gateways", "referencegrants"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": ["security.istio.io"], "resources": ["authorizationpolicies"], "verbs": ["get", "list", "watch"]},
    ]
    (role,) = [d for d in documents if d["kind"] == "Role" and d["metadata"]["name"] == "aks-apim-sync-watcher-policy"]
    assert all(rule["verbs"] == ["get", "list", "watch"] and rule.get("resourceNames") for rule in role["rules"])
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_watcher_needs_only_its_own_requirements() -> None:
    probe = (
        "import sys, watcher.__main__, watcher.loop, watcher.publisher; "
        "print(sorted({m.split('.')[0] + '.' + m.split('.')[1] for m in sys.modules if m.startswith('azure.')}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT).stdout  # noqa: S603
    assert out.strip() == "['azure.core', 'azure.eventgrid']"
    wanted = {line.split("==")[0] for line in (ROOT / "watcher" / "requirements.txt").read_text().splitlines() if "==" in line}
    assert wanted == {"azure-core", "azure-eventgrid", "azure-identity", "kubernetes"}
