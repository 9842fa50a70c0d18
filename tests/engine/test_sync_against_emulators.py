"""The whole engine over real SDK clients and real HTTP against the emulators.

Outcomes are asserted on what APIM and Kubernetes hold afterwards, on the report, and on the emulators'
request logs.
"""

from __future__ import annotations

from typing import Any

from sandbox.httpbase import Fault
from sandbox.world import World
from shared.backends import reconcile as engine
from shared.core import ownership
from shared.core.model import OwnerId, OwnerMark, ServiceRef
from shared.core.naming import backend_id_for
from shared.core.scope import Scope
from tests.conftest import RecordedSleeps, ingress, service

EVERYTHING = Scope("aks-sandbox")


def backend_id(name: str, namespace: str = "shop") -> str:
    return backend_id_for(ServiceRef("aks-sandbox", namespace, name))


def urls(world: World) -> dict[str, str]:
    return {k: v["properties"]["url"] for k, v in world.apim.backends.items()}


def foreign_backend(world: World, backend_id: str, owner: str = "someone-else") -> None:
    mark = OwnerMark(OwnerId(owner), ServiceRef("other-aks", "shop", "orders"))
    world.apim.put_backend_directly(
        backend_id, {"url": "http://keep.me", "protocol": "http", "description": ownership.render_mark(mark)}
    )


def test_first_run_creates_backends_for_every_mode(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", lb_ip="52.1.2.3"))
    world.kube.apply(service("ledger", mode="internal", internal=True, lb_ip="10.240.0.7"))
    world.kube.apply(service("catalog", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("shop", "shop", "api.contoso.example", "catalog", path="/catalog"))
    report = engine.reconcile(EVERYTHING, make_deps())
    assert urls(world) == {
        backend_id("orders"): "http://52.1.2.3",
        backend_id("ledger"): "http://10.240.0.7",
        backend_id("catalog"): "https://api.contoso.example/catalog",
    }
    assert report.counts["create"] == 3 and not report.failed
    assert [c["outcome"] for c in report.to_json()["changes"]] == ["applied"] * 3


def test_second_run_makes_zero_writes(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    world.kube.apply(service("ledger", mode="internal", internal=True, lb_ip="10.240.0.7"))
    deps = make_deps()
    engine.reconcile(EVERYTHING, deps)
    world.apim.clear_log()
    world.kube.clear_log()
    report = engine.reconcile(EVERYTHING, deps)
    assert world.apim.writes() == [] and world.kube.writes() == []
    assert report.counts == {
        "create": 0,
        "update": 0,
        "delete": 0,
        "unchanged": 2,
        "refused": 0,
        "pending": 0,
        "invalid": 0,
        "failed": 0,
    }
    # Services, Ingresses and the tenancy policy ConfigMap; one list of backends.
    assert report.requests == {"arm": 1, "arm.read": 1, "kubernetes": 3, "kubernetes.read": 3}


def test_address_change_updates_the_backend_and_keeps_fields_set_by_others(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", lb_ip="52.1.2.3"))
    deps = make_deps()
    engine.reconcile(EVERYTHING, deps)
    stored = world.apim.backends[backend_id("orders")]["properties"]
    stored.setdefault("credentials", {})
    world.apim.put_certificate_directly(
        "apim-client-1", {"keyVault": {"secretIdentifier": "https://kv.vault.azure.net/secrets/c"}}
    )
    stored["credentials"]["certificateIds"] = ["/subscriptions/x/certificates/apim-client-1"]
    stored["circuitBreaker"] = {"rules": [{"name": "trip", "tripDuration": "PT1M"}]}
    world.kube.apply(service("orders", lb_ip="52.9.9.9"))
    report = engine.reconcile(EVERYTHING, deps)
    after = world.apim.backends[backend_id("orders")]["properties"]
    assert after["url"] == "http://52.9.9.9"
    assert after["credentials"]["certificateIds"] == ["/subscriptions/x/certificates/apim-client-1"]
    assert after["circuitBreaker"] == {"rules": [{"name": "trip", "tripDuration": "PT1M"}]}
    assert report.to_json()["changes"][0]["diff"] == {"url": ["http://52.1.2.3", "http://52.9.9.9"]}


def test_a_listed_backend_names_its_certificates_and_holds_no_copy_of_its_properties(world: World, make_deps: Any) -> None:
    deps = make_deps()
    world.kube.apply(service("orders"))
    engine.reconcile(EVERYTHING, deps)
    stored = world.apim.backends[backend_id("orders")]["properties"]
    stored["credentials"] = {"certificateIds": ["/subscriptions/x/certificates/APIM-Client-1"]}

    listed = deps.backends.list_backends()[backend_id("orders")]
    read_alone = deps.backends.get_backend(backend_id("orders"))

    assert listed.certificate_ids == ("apim-client-1",) and listed.raw_properties == {}
    assert read_alone is not None and read_alone.raw_properties["credentials"] == stored["credentials"]


def test_updates_carry_if_match_and_a_412_is_re_read_and_re_planned(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", lb_ip="52.1.2.3"))
    deps = make_deps()
    engine.reconcile(EVERYTHING, deps)
    world.kube.apply(service("orders", lb_ip="52.9.9.9"))
    world.apim.inject(Fault(412, method="PUT", body={"error": {"code": "PreconditionFailed", "message": "stale"}}))
    report = engine.reconcile(EVERYTHING, deps)
    assert urls(world)[backend_id("orders")] == "http://52.9.9.9"
    assert report.to_json()["changes"][0]["attempts"] == 2 and not report.failed
    methods = [r.method for r in world.apim.log if "/backends/" in r.path]
    assert methods[-4:] == ["GET", "PUT", "GET", "PUT"]


def test_429_waits_for_retry_after_then_succeeds(world: World, make_deps: Any, sleeps: RecordedSleeps) -> None:
    world.kube.apply(service("orders"))
    world.apim.inject(
        Fault(
            429, method="PUT", headers={"Retry-After": "3"}, body={"error": {"code": "TooManyRequests", "message": "slow down"}}
        )
    )
    report = engine.reconcile(EVERYTHING, make_deps())
    assert backend_id("orders") in world.apim.backends and not report.failed
    assert sleeps == [3.0]


def test_pessimistic_concurrency_conflict_is_retried(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    body = {"error": {"code": "PessimisticConcurrencyConflict", "message": "Operation on the API is in progress"}}
    world.apim.inject(Fault(409, method="PUT", body=body))
    report = engine.reconcile(EVERYTHING, make_deps())
    assert backend_id("orders") in world.apim.backends and not report.failed


def test_persistent_5xx_fails_that_change_as_retryable_and_others_go_on(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    world.kube.apply(service("payments"))
    world.apim.inject(Fault(503, method="PUT", path_contains=backend_id("orders"), times=99))
    report = engine.reconcile(EVERYTHING, make_deps(MAX_ATTEMPTS="3"))
    assert list(world.apim.backends) == [backend_id("payments")]
    failed = [c for c in report.to_json()["changes"] if c["outcome"] == "failed"]
    assert [(c["id"], c["error_reason"], c["retryable"]) for c in failed] == [(backend_id("orders"), "ServiceUnavailable", True)]
    assert report.failed and report.retryable


def test_one_broken_service_does_not_block_the_others_and_keeps_its_backend(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    world.kube.apply(service("payments"))
    deps = make_deps()
    engine.reconcile(EVERYTHING, deps)
    world.kube.apply(service("orders", annotations={"apim-sync.io/port": "not-a-port"}))
    world.kube.apply(service("catalog"))
    report = engine.reconcile(EVERYTHING, deps)
    assert set(world.apim.backends) == {backend_id("orders"), backend_id("payments"), backend_id("catalog")}
    assert report.to_json()["errors"] == [
        {
            "object": "shop/orders",
            "field": "apim-sync.io/port",
            "reason": "InvalidAnnotation",
            "message": "'not-a-port' is not a port of the Service",
        }
    ]


def test_pending_address_creates_nothing_and_keeps_an_existing_backend(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    deps = make_deps()
    engine.reconcile(EVERYTHING, deps)
    world.kube.apply(service("orders", lb_ip=None))
    world.kube.apply(service("fresh", lb_ip=None))
    report = engine.reconcile(EVERYTHING, deps)
    assert set(world.apim.backends) == {backend_id("orders")}
    assert {p["object"] for p in report.to_json()["pending"]} == {"shop/orders", "shop/fresh"}


def test_removing_the_annotation_or_the_service_deletes_only_our_backend(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    world.kube.apply(service("payments"))
    foreign_backend(world, "hand-made")
    deps = make_deps()
    engine.reconcile(EVERYTHING, deps)
    world.kube.apply(service("orders", expose=False))
    world.kube.remove("Service", "shop", "payments")
    report = engine.reconcile(EVERYTHING, deps, allow_mass_delete=True)
    assert set(world.apim.backends) == {"hand-made"}
    assert report.counts["delete"] == 2


def test_backend_owned_by_other_is_reported_and_left_untouched(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", annotations={"apim-sync.io/backend-id": "orders"}))
    foreign_backend(world, "orders")
    report = engine.reconcile(EVERYTHING, make_deps())
    assert world.apim.backends["orders"]["properties"]["url"] == "http://keep.me"
    assert [r["reason"] for r in report.to_json()["refusals"]] == ["OwnedByOther"]
    assert world.apim.writes() == []


def test_dry_run_writes_nothing_and_shows_what_apply_would_do(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    deps = make_deps()
    planned = engine.reconcile(EVERYTHING, deps, dry_run=True)
    assert world.apim.writes() == [] and world.apim.backends == {}
    applied = engine.reconcile(EVERYTHING, deps)

    def strip(report: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k != "outcome"} for c in report.to_json()["changes"]]

    assert strip(planned) == strip(applied)
    assert planned.to_json()["changes"][0]["outcome"] == "planned"


def test_failed_kubernetes_read_never_becomes_desired_nothing(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    deps = make_deps(MAX_ATTEMPTS="2")
    engine.reconcile(EVERYTHING, deps)
    world.kube.inject(Fault(500, method="GET", times=99, body={"kind": "Status", "code": 500, "message": "etcd timeout"}))
    report = engine.reconcile(EVERYTHING, deps)
    assert backend_id("orders") in world.apim.backends
    assert report.to_json()["errors"][0]["reason"] == "SourceReadFailed" and report.retryable


def test_mass_delete_is_refused_unless_overridden(world: World, make_deps: Any) -> None:
    for i in range(12):
        world.kube.apply(service(f"svc-{i:02}"))
    deps = make_deps()
    engine.reconcile(EVERYTHING, deps)
    for i in range(12):
        world.kube.apply(service(f"svc-{i:02}", expose=False))
    refused = engine.reconcile(EVERYTHING, deps)
    assert len(world.apim.backends) == 12
    assert {r["reason"] for r in refused.to_json()["refusals"]} == {"DeleteCapReached"}
    engine.reconcile(EVERYTHING, deps, allow_mass_delete=True)
    assert world.apim.backends == {}


def test_upsert_only_policy_never_deletes(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    deps = make_deps(SYNC_POLICY="upsert-only")
    engine.reconcile(EVERYTHING, deps)
    world.kube.remove("Service", "shop", "orders")
    report = engine.reconcile(EVERYTHING, deps)
    assert backend_id("orders") in world.apim.backends
    assert [r["reason"] for r in report.to_json()["refusals"]] == ["PolicyUpsertOnly"]


def test_detach_on_delete_keeps_the_backend_after_the_service_is_deleted(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders", annotations={"apim-sync.io/reconcile-policy": "detach-on-delete"}))
    deps = make_deps()
    engine.reconcile(EVERYTHING, deps)
    world.kube.remove("Service", "shop", "orders")
    engine.reconcile(EVERYTHING, deps)
    assert backend_id("orders") in world.apim.backends


def test_backend_deleted_meanwhile_counts_as_deleted(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    deps = make_deps()
    engine.reconcile(EVERYTHING, deps)
    world.kube.remove("Service", "shop", "orders")
    world.apim.inject(Fault(404, method="DELETE", body={"error": {"code": "ResourceNotFound", "message": "Backend not found."}}))
    report = engine.reconcile(EVERYTHING, deps)
    assert not report.failed


def test_scoped_run_touches_only_its_service(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    world.kube.apply(service("payments"))
    report = engine.reconcile(Scope("aks-sandbox", "shop", "orders"), make_deps())
    assert set(world.apim.backends) == {backend_id("orders")}
    assert report.requests["kubernetes"] == 3, "the Service, its namespace's Ingresses, the tenancy policy"


def test_access_denied_is_permanent_and_named(world: World, make_deps: Any) -> None:
    world.kube.apply(service("orders"))
    world.apim.inject(Fault(403, method="PUT", body={"error": {"code": "AuthorizationFailed", "message": "no role"}}))
    report = engine.reconcile(EVERYTHING, make_deps())
    change = report.to_json()["changes"][0]
    assert (change["outcome"], change["error_reason"], change["retryable"]) == ("failed", "AccessDenied", False)
    assert report.failed and not report.retryable
