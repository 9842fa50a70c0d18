"""The differential property of the threat model (invariant 4): in a converged world, one hostile or broken
object in another namespace leaves every APIM object made from namespace shop exactly as the same run without
it would, and the run always ends with a report. Hypothesis draws the hostile object from every annotation
key, with values that copy shop's ids, paths and operations, and with strange, huge and control-character
values."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.world import World
from shared import sync
from shared.core import naming
from shared.core.model import ServiceRef
from shared.core.reporting import Report
from shared.core.scope import Scope
from shared.runtime.ports import Dependencies
from tests.conftest import service

CLUSTER = "aks-sandbox"
HTTPS = [{"name": "https", "port": 443}]
SHOP_POLICY: dict[str, Any] = {"namespaces": {"shop": {"apiPathPrefixes": ["orders", "catalogue"]}}}


def shop_backend(name: str) -> str:
    return naming.backend_id_for(ServiceRef(CLUSTER, "shop", name))


def shop(world: World) -> None:
    """Namespace shop: one API from two Services, one API from one Service, one plain backend."""
    orders = {"apim-sync.io/api-id": "orders", "apim-sync.io/api-path": "orders"}
    world.kube.apply(
        service("order-reader", "shop", annotations={**orders, "apim-sync.io/operations": "GET /orders/{id}"}, ports=HTTPS)
    )
    world.kube.apply(
        service("order-writer", "shop", annotations={**orders, "apim-sync.io/operations": "POST /orders"}, ports=HTTPS)
    )
    world.kube.apply(
        service("catalogue", "shop", annotations={"apim-sync.io/api-id": "catalogue", "apim-sync.io/api-path": "catalogue"})
    )
    world.kube.apply(service("plain", "shop", annotations={"apim-sync.io/backend-id": "shop-plain"}))


KEYS = ["expose", "mode", "reconcile-policy", "backend-id", "port", "protocol", "path", "url", "title", "api-id", "api-path",
        "api-display-name", "subscription-required", "products", "operations", "openapi"]  # fmt: skip
SHOPS_VALUES = [
    "orders", "catalogue", "shop-plain", shop_backend("order-reader"), shop_backend("catalogue"), "GET /orders/{id}",
    "POST /orders", "GET /orders/{id}, POST /orders", "orders/v2", "orders/", "/", "", "true", "false", "public",
    "ingress", "https://20.0.0.1", "https://169.254.169.254/", "http://user:pw@10.0.0.1/", "spec/openapi", "443", "²",
]  # fmt: skip
values = st.sampled_from(SHOPS_VALUES) | st.text(max_size=40) | st.text(alphabet="a/\r\n<>\"'{}*%", max_size=3000)
hostile_annotations = st.dictionaries(st.sampled_from(KEYS).map(lambda k: f"apim-sync.io/{k}"), values, min_size=1, max_size=6)


def made_from_shop(world: World) -> dict[str, Any]:
    """Every APIM object made from namespace shop, as APIM holds it (ETags included: unwritten is unchanged)."""
    side = world.apim.api_side
    shop_apis = {a for a, entity in side.apis.items() if "namespace=shop" in str(entity["properties"].get("description"))}
    return copy.deepcopy(
        {
            "backends": {b: e for b, e in world.apim.backends.items() if "/shop/" in str(e["properties"].get("description"))},
            "apis": {a: side.apis[a] for a in shop_apis},
            "operations": {f"{a}/{o}": e for (a, o), e in side.operations.items() if a in shop_apis},
            "policies": {a: side.api_policies.get(a) for a in shop_apis},
            "operation_policies": {f"{a}/{o}": p for (a, o), p in side.operation_policies.items() if a in shop_apis},
            "products": sorted(link for link in side.product_apis if link[1] in shop_apis),
        }
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(annotations=hostile_annotations, https=st.booleans(), also_configmap=st.booleans())
def test_one_hostile_object_in_another_namespace_changes_nothing_made_from_shop(
    world: World, make_deps: Any, annotations: dict[str, str], https: bool, also_configmap: bool
) -> None:
    world.reset()
    world.set_tenancy_policy(SHOP_POLICY)
    deps: Dependencies = make_deps()
    shop(world)
    first = sync.run(Scope(CLUSTER), deps)
    assert not first.failed, first.to_text()
    before = made_from_shop(world)

    if also_configmap:
        document: dict[str, Any] = {"paths": {"/orders/{id}": {"get": {}}, "/orders": {"post": {}}}}
        world.kube.apply(
            {"kind": "ConfigMap", "metadata": {"name": "spec", "namespace": "evil"}, "data": {"openapi": str(document)}}
        )
    world.kube.apply(service("intruder", "evil", annotations=annotations, ports=HTTPS if https else None))
    with_hostile = sync.run(Scope(CLUSTER), deps)

    assert isinstance(with_hostile, Report), "the run always ends with a report"
    assert made_from_shop(world) == before
