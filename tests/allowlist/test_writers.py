"""Which objects each allow-list writer manages, and when a held list counts as unchanged. Pure."""

from __future__ import annotations

from shared.allowlists.writers import IngressNginxWriter, LoadBalancerWriter, Target, change_for, controller_findings
from shared.backends.exposure import expose
from shared.core.annotations import NGINX_ALLOWLIST, AnnotationChoice, AnnotationContext
from shared.core.model import IngressRoute, IngressView, Mode, OwnerId, ServiceView

CTX = AnnotationContext(cluster="c", owner=OwnerId("o"), prefix="apim-sync.io", default_mode=Mode.INGRESS)
EXPOSED = {"apim-sync.io/expose": "true"}


def route(service_name: str) -> IngressRoute:
    return IngressRoute("shop", "web", "a.example", "/", service_name, "80", True)


def test_ingress_to_an_ingress_mode_service_is_managed_and_others_are_not() -> None:
    services = [
        ServiceView("shop", "orders", EXPOSED),
        ServiceView("shop", "public", {**EXPOSED, "apim-sync.io/mode": "public"}, type="LoadBalancer"),
        ServiceView("shop", "skipped", {**EXPOSED, "apim-sync.io/reconcile-policy": "skip"}),
    ]
    ingresses = [
        IngressView("shop", "to-orders", {}, "1", (route("orders"),)),
        IngressView("shop", "to-public", {}, "1", (route("public"),)),
        IngressView("shop", "to-skipped", {}, "1", (route("skipped"),)),
        IngressView("other", "same-name-other-namespace", {}, "1", (route("orders"),)),
    ]
    targets, _ = IngressNginxWriter(AnnotationChoice.ALLOWLIST).targets(expose(services, ingresses, CTX))
    assert [t.name for t in targets] == ["to-orders"]


def test_held_list_with_the_same_set_is_unchanged() -> None:
    target = Target("Ingress", "shop", "web", "1", ((NGINX_ALLOWLIST, "20.0.0.9/32, 20.0.0.1/32"),))
    writer = IngressNginxWriter(AnnotationChoice.ALLOWLIST)
    assert change_for(target, ("20.0.0.1/32", "20.0.0.9/32"), writer) is None


def test_patch_carries_the_resource_version_and_only_the_managed_annotation() -> None:
    target = Target("Ingress", "shop", "web", "42", ((NGINX_ALLOWLIST, None),))
    change = change_for(target, ("20.0.0.1/32",), IngressNginxWriter(AnnotationChoice.ALLOWLIST))
    assert change is not None and not change.restored
    assert change.patch == {"metadata": {"resourceVersion": "42", "annotations": {NGINX_ALLOWLIST: "20.0.0.1/32"}}}


def test_load_balancer_patch_sets_source_ranges() -> None:
    service = ServiceView("shop", "pay", {**EXPOSED, "apim-sync.io/mode": "public"}, type="LoadBalancer", resource_version="7")
    (target,), _ = LoadBalancerWriter().targets(expose([service], [], CTX))
    change = change_for(target, ("20.0.0.1/32",), LoadBalancerWriter())
    assert change is not None
    assert change.patch == {"metadata": {"resourceVersion": "7"}, "spec": {"loadBalancerSourceRanges": ["20.0.0.1/32"]}}


def test_controller_with_local_traffic_policy_has_no_warning() -> None:
    controller = ServiceView("ingress-nginx", "c", type="LoadBalancer", external_traffic_policy="Local")
    assert controller_findings(controller, "ingress-nginx/c") == []
