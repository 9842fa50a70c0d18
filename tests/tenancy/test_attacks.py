"""Namespaces are tenants: each attack a namespace owner can try, from the attacker's namespace, in every scope
(the watcher's one-Service event through on_event, `?namespace=`, a full run). The victim's APIM objects and
allow-lists stay as they were, and the report names the refusal."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from sandbox.world import World
from shared import sync
from shared.core import naming
from shared.core.errors import InvalidSettings
from shared.core.model import ServiceRef
from shared.core.reporting import Report
from shared.core.scope import Scope
from shared.core.settings import load_settings
from shared.runtime.ports import Dependencies
from tests.conftest import ingress, service
from tests.events.test_on_event import deliver, service_changed

CLUSTER = "aks-sandbox"
VICTIM_POLICY: dict[str, Any] = {"namespaces": {"shop": {"apiPathPrefixes": ["orders", "healthy-api"]}}}


def backend_id(name: str, namespace: str) -> str:
    return naming.backend_id_for(ServiceRef(CLUSTER, namespace, name))


def https_service(name: str, namespace: str, annotations: dict[str, str], **options: Any) -> dict[str, Any]:
    return service(name, namespace, annotations=annotations, ports=[{"name": "https", "port": 443}], **options)


def shop_api(world: World) -> None:
    """Namespace shop publishes API 'orders' from two Services, secured with subscription keys."""
    api = {"apim-sync.io/api-id": "orders", "apim-sync.io/api-path": "orders"}
    world.kube.apply(https_service("order-reader", "shop", {**api, "apim-sync.io/operations": "GET /orders/{id}"}))
    world.kube.apply(https_service("order-writer", "shop", {**api, "apim-sync.io/operations": "POST /orders"}, lb_ip="52.0.0.11"))


def apim_state(world: World) -> dict[str, Any]:
    side = world.apim.api_side
    return copy.deepcopy(
        {
            "apis": {k: v["properties"] for k, v in side.apis.items()},
            "operations": {f"{a}/{o}": v["properties"] for (a, o), v in side.operations.items()},
            "api_policies": dict(side.api_policies),
            "operation_policies": {f"{a}/{o}": v for (a, o), v in side.operation_policies.items()},
            "backends": {k: v["properties"] for k, v in world.apim.backends.items()},
        }
    )


def of_namespace(state: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The APIM objects made from one namespace (by the owner marks)."""
    apis = {k: v for k, v in state["apis"].items() if f"namespace={namespace}" in v.get("description", "")}
    return {
        "apis": apis,
        "operations": {k: v for k, v in state["operations"].items() if k.split("/")[0] in apis},
        "backends": {k: v for k, v in state["backends"].items() if f"/{namespace}/" in v.get("description", "")},
    }


Scoped = Callable[[World, Dependencies, str, str], Report | None]


def one_service_event(world: World, deps: Dependencies, namespace: str, name: str) -> Report | None:
    deliver(service_changed(name, namespace))
    return None


def namespace_run(world: World, deps: Dependencies, namespace: str, name: str) -> Report | None:
    return sync.run(Scope(CLUSTER, namespace=namespace), deps)


def full_run(world: World, deps: Dependencies, namespace: str, name: str) -> Report | None:
    return sync.run(Scope(CLUSTER), deps)


SCOPES = pytest.mark.parametrize("run_scope", [one_service_event, namespace_run, full_run], ids=["event", "namespace", "full"])


@pytest.fixture
def app(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    for name, value in world.settings().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ALLOWLIST_ENABLED", "false")
    world.set_tenancy_policy(VICTIM_POLICY)
    return world


@pytest.fixture
def deps(app: World, make_deps: Any) -> Dependencies:
    built: Dependencies = make_deps(ALLOWLIST_ENABLED="false")
    return built


def problems_of(report: Report | None) -> list[dict[str, Any]]:
    if report is None:
        return []
    shown = report.to_json()
    return [*shown["errors"], *shown["refusals"], *((shown.get("apis") or {}).get("problems") or [])]


@SCOPES
def test_another_namespace_cannot_take_over_an_api(app: World, deps: Dependencies, run_scope: Scoped) -> None:
    shop_api(app)
    sync.run(Scope(CLUSTER), deps)
    before = apim_state(app)
    assert before["apis"]["orders"]["subscriptionRequired"] is True

    app.kube.apply(
        https_service(
            "grab",
            "evil",
            {
                "apim-sync.io/api-id": "orders",
                "apim-sync.io/api-path": "orders",
                "apim-sync.io/subscription-required": "false",
                "apim-sync.io/url": "https://attacker.example",
            },
        )
    )
    report = run_scope(app, deps, "evil", "grab")

    after = apim_state(app)
    assert of_namespace(after, "shop") == of_namespace(before, "shop")
    assert after["api_policies"] == before["api_policies"] and after["operation_policies"] == before["operation_policies"]
    reasons = {p["reason"] for p in problems_of(report)}
    if report is not None:
        assert reasons & {"NotGrantedByPolicy", "ClaimedByOtherNamespace", "UnsafeUrl"}, reasons


@SCOPES
def test_an_api_claim_from_another_namespace_is_refused_even_when_granted_everything(
    app: World, deps: Dependencies, run_scope: Scoped
) -> None:
    shop_api(app)
    sync.run(Scope(CLUSTER), deps)
    before = apim_state(app)
    app.set_tenancy_policy({**VICTIM_POLICY, "default": {"anonymousApis": True}})
    app.kube.apply(https_service("grab", "evil", {"apim-sync.io/api-id": "orders", "apim-sync.io/api-path": "orders"}))

    report = run_scope(app, deps, "evil", "grab")

    assert of_namespace(apim_state(app), "shop") == of_namespace(before, "shop")
    if report is not None:
        claimed = [p for p in problems_of(report) if p["reason"] in ("ClaimedByOtherNamespace", "ApiConflict")]
        assert claimed, problems_of(report)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/metadata/identity/oauth2/token?resource=x", "UnsafeUrl"),
        ("http://127.0.0.1:8080/", "UnsafeUrl"),
        ("http://[::ffff:127.0.0.1]/", "UnsafeUrl"),
        ("http://2130706433/", "UnsafeUrl"),
        ("http://localhost/", "UnsafeUrl"),
        ("https://user:secret@attacker.example/", "UnsafeUrl"),
        ("https://orders.example/\r\nX-Injected: 1", "UnsafeUrl"),
        ("gopher://attacker.example/", "UnsafeUrl"),
        ("https://kubernetes.default.svc/api", "NotGrantedByPolicy"),
        ("http://payments.team-b.svc.cluster.local/", "NotGrantedByPolicy"),
        ("https://attacker.example/", "NotGrantedByPolicy"),
    ],
)
@SCOPES
def test_a_url_annotation_never_points_apim_anywhere_the_platform_has_not_allowed(
    app: World, deps: Dependencies, url: str, reason: str, run_scope: Scoped
) -> None:
    app.kube.apply(https_service("grab", "evil", {"apim-sync.io/url": url}))
    report = run_scope(app, deps, "evil", "grab")
    assert app.apim.backends == {}
    if report is None:  # the event's run: what APIM holds is the proof, its report is the function's log
        return
    [problem] = problems_of(report)
    assert (problem["object"], problem["field"], problem["reason"]) == ("evil/grab", "apim-sync.io/url", reason)
    assert "secret" not in report.to_text()


def test_a_granted_url_host_gets_a_backend_but_no_credentials_unless_granted_for_them(app: World, deps: Dependencies) -> None:
    app.set_tenancy_policy({"namespaces": {"partners": {"urlHosts": ["*.partner.example"]}}})
    app.kube.apply(https_service("feed", "partners", {"apim-sync.io/url": "https://api.partner.example/v1"}))
    report = sync.run(Scope(CLUSTER), deps)
    stored = app.apim.backends[backend_id("feed", "partners")]["properties"]
    assert stored["url"] == "https://api.partner.example/v1"
    assert "header" not in (stored.get("credentials") or {}), "the Option 1 token is withheld"
    assert [w["reason"] for w in report.to_json()["warnings"]] == ["CredentialWithheld"]

    app.set_tenancy_policy(
        {"namespaces": {"partners": {"urlHosts": ["*.partner.example"], "credentialHosts": ["api.partner.example"]}}}
    )
    sync.run(Scope(CLUSTER), deps)
    stored = app.apim.backends[backend_id("feed", "partners")]["properties"]
    assert stored["credentials"]["header"] == {"X-Apim-Backend-Token": ["{{aks-backend-token}}"]}


def test_the_option_1_token_never_travels_over_plain_http(app: World, deps: Dependencies) -> None:
    app.kube.apply(service("orders", "shop"))  # port 80: http
    report = sync.run(Scope(CLUSTER), deps)
    stored = app.apim.backends[backend_id("orders", "shop")]["properties"]
    assert stored["url"] == "http://52.0.0.10" and "header" not in (stored.get("credentials") or {})
    [warning] = report.to_json()["warnings"]
    assert warning["object"] == "shop/orders" and "plainHttpCredentials" in warning["message"]


def test_an_ingress_in_another_namespace_cannot_redirect_a_service(app: World, deps: Dependencies) -> None:
    app.kube.apply(service("catalog", "shop", mode="ingress", lb_ip=None))
    app.kube.apply(ingress("shop", "shop", "api.contoso.example", "catalog", path="/catalog"))
    app.kube.apply(ingress("aaa", "evil", "attacker.example", "catalog"))
    sync.run(Scope(CLUSTER), deps)
    assert app.apim.backends[backend_id("catalog", "shop")]["properties"]["url"] == "https://api.contoso.example/catalog"


@SCOPES
def test_naming_another_services_backend_id_neither_takes_it_over_nor_freezes_it(
    app: World, deps: Dependencies, run_scope: Scoped
) -> None:
    victim = backend_id("orders", "shop")
    app.kube.apply(https_service("orders", "shop", {}))
    sync.run(Scope(CLUSTER), deps)
    app.kube.apply(https_service("grab", "evil", {"apim-sync.io/backend-id": victim}, lb_ip="6.6.6.6"))
    run_scope(app, deps, "evil", "grab")
    assert app.apim.backends[victim]["properties"]["url"] == "https://52.0.0.10"

    app.kube.apply(https_service("orders", "shop", {}, lb_ip="52.0.0.99"))  # shop's address changes: it still follows
    sync.run(Scope(CLUSTER), deps)
    assert app.apim.backends[victim]["properties"]["url"] == "https://52.0.0.99"
    assert "shop/orders" in app.apim.backends[victim]["properties"]["description"]

    app.kube.apply(https_service("orders", "shop", {}, lb_ip=None))  # shop pending: still not taken
    report = sync.run(Scope(CLUSTER), deps)
    assert app.apim.backends[victim]["properties"]["url"] == "https://52.0.0.99"
    assert any(r["reason"] in ("ClaimedByOtherNamespace", "DuplicateBackendId") for r in problems_of(report)), problems_of(report)


@SCOPES
def test_a_path_under_another_namespaces_api_is_refused(app: World, deps: Dependencies, run_scope: Scoped) -> None:
    app.set_tenancy_policy({})
    app.kube.apply(https_service("health", "shop", {"apim-sync.io/api-id": "healthy-api"}))
    sync.run(Scope(CLUSTER), deps)
    app.kube.apply(
        https_service("admin", "evil", {"apim-sync.io/api-id": "evil-admin", "apim-sync.io/api-path": "healthy-api/admin"})
    )
    report = run_scope(app, deps, "evil", "admin")
    assert set(app.apim.api_side.apis) == {"healthy-api"}
    if report is not None:
        assert any(p["reason"] == "PathTaken" for p in problems_of(report)), problems_of(report)


def test_the_root_path_needs_a_grant(app: World, deps: Dependencies) -> None:
    app.kube.apply(https_service("all", "evil", {"apim-sync.io/api-id": "everything", "apim-sync.io/api-path": "/"}))
    report = sync.run(Scope(CLUSTER), deps)
    assert app.apim.api_side.apis == {}
    assert [(p["field"], p["reason"]) for p in problems_of(report)] == [("apim-sync.io/api-path", "NotGrantedByPolicy")]


def test_narrowing_namespaces_deletes_nothing_made_from_the_others(app: World, make_deps: Any) -> None:
    app.set_tenancy_policy({})
    for namespace in ("shop", "finance", "hr"):
        app.kube.apply(https_service("api", namespace, {"apim-sync.io/api-id": f"{namespace}-api"}))
    sync.run(Scope(CLUSTER), make_deps(ALLOWLIST_ENABLED="false"))
    before = apim_state(app)
    assert len(before["backends"]) == 3 and len(before["apis"]) == 3

    report = sync.run(Scope(CLUSTER), make_deps(ALLOWLIST_ENABLED="false", NAMESPACES="shop"))

    assert apim_state(app) == before
    assert any("OutOfScope" in note for note in report.notes), report.notes
    [out_of_scope] = [p for p in problems_of(report) if p["reason"] == "OutOfScope"]
    assert out_of_scope["message"].startswith("2 owned API(s) of namespaces outside NAMESPACES left alone")


@pytest.mark.parametrize("name", ["aks/prod", "aks;prod", "aks=prod", "a" * 64])
def test_a_cluster_name_that_would_break_the_owner_mark_is_refused(app: World, name: str) -> None:
    with pytest.raises(InvalidSettings) as raised:
        load_settings({**app.settings(), "CLUSTER_NAME": name})
    assert [p for p, _ in raised.value.problems] == ["CLUSTER_NAME"]


def test_a_create_never_overwrites_a_backend_that_appeared_meanwhile(app: World, deps: Dependencies) -> None:
    from shared.backends.discovery import backend_for
    from shared.core.errors import ConcurrentEdit
    from shared.runtime.cluster import annotation_context, read_cluster

    app.kube.apply(https_service("orders", "shop", {}))
    view = read_cluster(Scope(CLUSTER), deps)
    desired = backend_for(view.services[0], [], annotation_context(deps.settings, view.policy))
    app.apim.put_backend_directly(backend_id("orders", "shop"), {"url": "https://someone.else", "protocol": "http"})
    with pytest.raises(ConcurrentEdit):
        deps.backends.put_backend(desired, base=None)  # type: ignore[arg-type]
    assert app.apim.backends[backend_id("orders", "shop")]["properties"]["url"] == "https://someone.else"


# -- the policy itself -----------------------------------------------------------------------------------


def test_an_invalid_policy_stops_every_write_and_names_the_field(app: World, deps: Dependencies) -> None:
    app.set_tenancy_policy({"namespaces": {"shop": {"urlHosts": "everything"}}})
    app.kube.apply(https_service("orders", "shop", {}))
    report = sync.run(Scope(CLUSTER), deps)
    assert app.apim.backends == {} and app.apim.writes() == []
    assert report.failed and not report.retryable
    [error] = report.to_json()["errors"]
    assert error["reason"] == "SourceReadFailed"
    assert "namespaces.shop.urlHosts" in error["message"] and "nothing is written" in error["message"]


def test_without_a_policy_the_safe_defaults_apply(app: World, deps: Dependencies) -> None:
    app.set_tenancy_policy(None)
    app.kube.apply(https_service("orders", "shop", {"apim-sync.io/api-id": "orders", "apim-sync.io/products": "gold"}))
    app.kube.apply(https_service("open", "shop", {"apim-sync.io/api-id": "open", "apim-sync.io/subscription-required": "false"}))
    report = sync.run(Scope(CLUSTER), deps)
    assert set(app.apim.api_side.apis) == {"orders"}
    assert {(p["object"], p["field"], p["reason"]) for p in problems_of(report)} == {
        ("shop/orders", "apim-sync.io/products", "NotGrantedByPolicy"),
        ("shop/open", "apim-sync.io/subscription-required", "NotGrantedByPolicy"),
    }


def test_an_explicit_grant_allows_what_it_names(app: World, deps: Dependencies) -> None:
    app.set_tenancy_policy({"namespaces": {"shop": {"anonymousApis": True, "products": ["gold"]}}})
    app.apim.api_side.products["gold"] = app.apim.api_side._entity("products", "products/gold", "gold", {"displayName": "Gold"})
    app.kube.apply(https_service("open", "shop", {"apim-sync.io/api-id": "open", "apim-sync.io/subscription-required": "false"}))
    app.kube.apply(https_service("orders", "shop", {"apim-sync.io/api-id": "orders", "apim-sync.io/products": "gold"}))
    report = sync.run(Scope(CLUSTER), deps)
    assert not report.failed and problems_of(report) == []
    assert app.apim.api_side.apis["open"]["properties"]["subscriptionRequired"] is False


# -- the property: one namespace's objects never change what was made from another ------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HOSTILE_VALUES = {
    "apim-sync.io/api-id": st.sampled_from(["orders", "finance-api", "evil-api", "x" * 90, ""]),
    "apim-sync.io/api-path": st.sampled_from(["orders", "orders/admin", "/", "ledger", "ledger/x", "evil", "../orders"]),
    "apim-sync.io/backend-id": st.sampled_from(
        [backend_id("order-reader", "shop"), backend_id("ledger", "finance"), "payments", "ok-id"]
    ),
    "apim-sync.io/url": st.sampled_from(
        ["http://169.254.169.254/", "https://attacker.example/", "https://user:pw@x.example/", "http://10.0.0.1/"]
    ),
    "apim-sync.io/subscription-required": st.sampled_from(["false", "true", "maybe"]),
    "apim-sync.io/operations": st.sampled_from(["GET /orders/{id}", "POST /orders", "GET /*", "BOGUS"]),
    "apim-sync.io/mode": st.sampled_from(["public", "ingress", "internal", "weird"]),
    "apim-sync.io/products": st.sampled_from(["starter", "gold", ""]),
    "apim-sync.io/port": st.text(max_size=6),
}


@st.composite
def hostile_services(draw: st.DrawFn) -> list[dict[str, str]]:
    found = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        keys = draw(st.sets(st.sampled_from(sorted(HOSTILE_VALUES)), min_size=1, max_size=5))
        found.append({key: draw(HOSTILE_VALUES[key]) for key in sorted(keys)})
    return found


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=hostile_services())
def test_whatever_one_namespace_writes_the_others_objects_stay_as_without_it(
    app: World, make_deps: Any, hostile: list[dict[str, str]]
) -> None:
    deps = make_deps()  # allow-lists on: the victims' source ranges are part of what must not move
    app.reset()
    app.set_tenancy_policy({"default": {"anonymousApis": True, "products": ["starter"]}})
    shop_api(app)
    app.kube.apply(https_service("ledger", "finance", {"apim-sync.io/api-id": "finance-api", "apim-sync.io/api-path": "ledger"}))
    sync.run(Scope(CLUSTER), deps)
    without = apim_state(app)
    ranges_without = victims_source_ranges(app)

    for i, written in enumerate(hostile):
        app.kube.apply(https_service(f"h{i}", "evil", written, lb_ip=f"6.6.6.{i + 1}"))
    report = sync.run(Scope(CLUSTER), deps)

    with_evil = apim_state(app)
    for victim in ("shop", "finance"):
        assert of_namespace(with_evil, victim) == of_namespace(without, victim), (victim, hostile)
    victims_policies = {k: v for k, v in with_evil["api_policies"].items() if k in ("orders", "finance-api")}
    assert victims_policies == {k: v for k, v in without["api_policies"].items() if k in ("orders", "finance-api")}
    assert victims_source_ranges(app) == ranges_without and any(ranges_without.values())
    assert report.to_json() is not None


def victims_source_ranges(world: World) -> dict[str, Any]:
    found = {}
    for namespace, name in (("shop", "order-reader"), ("shop", "order-writer"), ("finance", "ledger")):
        held = world.kube.get("Service", namespace, name)
        found[f"{namespace}/{name}"] = (held or {}).get("spec", {}).get("loadBalancerSourceRanges")
    return found


def test_an_ingress_mode_service_pointing_elsewhere_by_url_never_gets_the_client_certificate(app: World) -> None:
    from shared.adapters.kube import service_view
    from shared.backends.exposure import expose
    from shared.core.annotations import AnnotationContext
    from shared.core.model import Mode, OwnerId
    from shared.core.tenancy import parse_policy

    context = AnnotationContext(
        cluster=CLUSTER,
        owner=OwnerId("o"),
        prefix="apim-sync.io",
        default_mode=Mode.INGRESS,
        policy=parse_policy({"namespaces": {"evil": {"urlHosts": ["*.team-b.example"]}}}, "test"),
    )
    manifest = service("grab", "evil", mode="ingress", annotations={"apim-sync.io/url": "https://api.team-b.example/"})
    exposure = expose([service_view(manifest)], [], context)
    [outcome] = exposure.outcomes.values()
    assert exposure.client_certificate_backends() == set()
    assert [field for field, _ in outcome.warnings] == ["apim-sync.io/url"]  # type: ignore[union-attr]
