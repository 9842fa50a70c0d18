"""Service annotations -> desired backend, pending or invalid (with object, field and reason). Pure."""

from __future__ import annotations

import pytest

from shared.adapters.kube import ingress_routes, service_view
from shared.backends.discovery import Invalid, Pending, Skipped, backend_for
from shared.core.annotations import AnnotationContext
from shared.core.model import DesiredBackend, IngressRoute, Mode, OwnerId, PublicAuthMode, Reason
from shared.core.tenancy import parse_policy
from tests.conftest import ingress, service

CONTEXT = AnnotationContext(
    cluster="aks-prod",
    owner=OwnerId("team-a"),
    prefix="apim-sync.io",
    default_mode=Mode.INGRESS,
    public_auth_header="X-Apim-Backend-Token",
    public_auth_named_value="aks-backend-token",
    public_auth=PublicAuthMode.HEADER,
    policy=parse_policy({"namespaces": {"shop": {"urlHosts": ["*.internal.example"]}}}, "test"),
)


def outcome_for(manifest: dict, routes: list[IngressRoute] | None = None):  # type: ignore[no-untyped-def,type-arg]
    return backend_for(service_view(manifest), routes or [], CONTEXT)


def url_of(manifest: dict, routes: list[IngressRoute] | None = None) -> str:  # type: ignore[type-arg]
    result = outcome_for(manifest, routes)
    assert isinstance(result, DesiredBackend), result
    return result.spec.url


def test_public_mode_uses_the_load_balancer_ip_and_the_service_port() -> None:
    assert url_of(service("orders", lb_ip="52.1.2.3", ports=[{"name": "web", "port": 8080}])) == "http://52.1.2.3:8080"


def test_public_mode_accepts_a_load_balancer_hostname() -> None:
    manifest = service("orders", lb_ip=None)
    manifest["status"]["loadBalancer"] = {"ingress": [{"hostname": "orders.westeurope.cloudapp.azure.com"}]}
    assert url_of(manifest) == "http://orders.westeurope.cloudapp.azure.com"


def test_public_https_backend_carries_the_named_value_header_as_the_option_1_credential() -> None:
    result = outcome_for(service("orders", ports=[{"name": "https", "port": 443}]))
    assert isinstance(result, DesiredBackend)
    assert result.spec.headers == (("X-Apim-Backend-Token", ("{{aks-backend-token}}",)),)


def test_a_plain_http_public_backend_gets_no_token_and_says_how_to_get_it() -> None:
    result = outcome_for(service("orders"))
    assert isinstance(result, DesiredBackend) and result.spec.url.startswith("http://")
    assert result.spec.headers == ()
    [(field, message)] = result.warnings
    assert field == "apim-sync.io/protocol" and "plain http" in message and "plainHttpCredentials" in message


def test_https_is_chosen_for_port_443_and_can_be_set_explicitly() -> None:
    assert url_of(service("a", ports=[{"name": "tls", "port": 443}])) == "https://52.0.0.10"
    assert (
        url_of(service("b", annotations={"apim-sync.io/protocol": "https"}, ports=[{"port": 8443}])) == "https://52.0.0.10:8443"
    )


def test_named_port_and_base_path_annotations_shape_the_url() -> None:
    manifest = service(
        "orders",
        annotations={"apim-sync.io/port": "api", "apim-sync.io/path": "/v1/"},
        ports=[{"name": "metrics", "port": 9090}, {"name": "api", "port": 8080}],
    )
    assert url_of(manifest) == "http://52.0.0.10:8080/v1"


def test_internal_mode_uses_the_internal_load_balancer_ip() -> None:
    assert url_of(service("ledger", mode="internal", internal=True, lb_ip="10.240.0.7")) == "http://10.240.0.7"


def test_internal_mode_without_an_internal_load_balancer_is_invalid() -> None:
    result = outcome_for(service("ledger", mode="internal"))
    assert (
        isinstance(result, Invalid) and result.field == "apim-sync.io/mode" and "azure-load-balancer-internal" in result.message
    )


def test_ingress_mode_uses_the_host_and_path_of_the_rule_that_routes_to_the_service() -> None:
    routes = ingress_routes(ingress("shop", "shop", "api.contoso.example", "orders", path="/orders"))
    assert url_of(service("orders", mode="ingress", lb_ip=None), routes) == "https://api.contoso.example/orders"


def test_ingress_mode_without_tls_on_the_host_uses_http() -> None:
    routes = ingress_routes(ingress("shop", "shop", "api.contoso.example", "orders", tls=False))
    assert url_of(service("orders", mode="ingress"), routes) == "http://api.contoso.example"


def test_explicit_url_overrides_discovery() -> None:
    manifest = service("orders", lb_ip=None, annotations={"apim-sync.io/url": "https://orders.internal.example/api"})
    assert url_of(manifest) == "https://orders.internal.example/api"


def test_pending_load_balancer_is_reported_pending() -> None:
    result = outcome_for(service("orders", lb_ip=None))
    assert isinstance(result, Pending) and result.reason is Reason.ADDRESS_PENDING


def test_ingress_mode_without_a_rule_is_pending() -> None:
    assert isinstance(outcome_for(service("orders", mode="ingress")), Pending)


def test_service_without_the_expose_annotation_is_not_managed() -> None:
    assert outcome_for(service("orders", expose=False)) is None


def test_skip_policy_reads_only() -> None:
    assert isinstance(outcome_for(service("orders", annotations={"apim-sync.io/reconcile-policy": "skip"})), Skipped)


@pytest.mark.parametrize(
    ("annotations", "field", "words"),
    [
        ({"apim-sync.io/mode": "sideways"}, "apim-sync.io/mode", "not one of public, ingress, internal"),
        ({"apim-sync.io/port": "99999"}, "apim-sync.io/port", "not a port number"),
        ({"apim-sync.io/port": "grpc"}, "apim-sync.io/port", "not a port of the Service"),
        ({"apim-sync.io/protocol": "gopher"}, "apim-sync.io/protocol", "not http or https"),
        ({"apim-sync.io/backend-id": "orders#1"}, "apim-sync.io/backend-id", "only letters"),
        ({"apim-sync.io/backend-id": "x" * 81}, "apim-sync.io/backend-id", "longer than 80"),
        ({"apim-sync.io/path": "v1"}, "apim-sync.io/path", "must start with '/'"),
        ({"apim-sync.io/reconcile-policy": "yolo"}, "apim-sync.io/reconcile-policy", "not one of manage"),
        ({"apim-sync.io/expose": "yes"}, "apim-sync.io/expose", "not 'true' or 'false'"),
    ],
)
def test_invalid_annotation_names_object_field_and_reason(annotations: dict[str, str], field: str, words: str) -> None:
    result = outcome_for(service("orders", annotations=annotations))
    assert isinstance(result, Invalid)
    assert (str(result.source), result.field, result.reason) == ("shop/orders", field, Reason.INVALID_ANNOTATION)
    assert words in result.message


def test_several_ports_without_a_port_annotation_is_invalid() -> None:
    result = outcome_for(service("orders", ports=[{"name": "a", "port": 1}, {"name": "b", "port": 2}]))
    assert isinstance(result, Invalid) and result.field == "apim-sync.io/port"


def test_a_service_view_keeps_every_annotation_but_the_copy_kubectl_apply_leaves() -> None:
    manifest = service("orders")
    applied_copy = '{"apiVersion":"v1","kind":"Service","metadata":{"name":"orders"}}' * 40
    manifest["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = applied_copy

    view = service_view(manifest)

    assert "kubectl.kubernetes.io/last-applied-configuration" not in view.annotations
    assert view.annotations == {"apim-sync.io/expose": "true", "apim-sync.io/mode": "public"}
