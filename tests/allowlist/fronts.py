"""The entry points an allow-list can be written on, as parameters: the same scenarios run on each.

A front seeds the objects that make one entry point managed, names the object and field that carry the list,
and reads or edits that field in the Kubernetes emulator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.world import World
from shared.allowlists.writers import authorization_policy_name
from shared.core.annotations import AZURE_ALLOWED_IP_RANGES, DENY_ALL_EXCEPT_SOURCE_RANGES, GATEWAY_NAME_LABEL, NGINX_ALLOWLIST
from tests.conftest import ingress, service
from tests.gateway.test_httproute_discovery import gateway, httproute


@dataclass(frozen=True)
class Front:
    name: str
    kind: str
    namespace: str
    object_name: str
    seed: Callable[[World], None]
    read: Callable[[dict[str, Any]], str | None]
    """The list the object holds, as comma-separated text (None: absent)."""
    write: Callable[[dict[str, Any], str], None]
    """Put a list into the object (a hand edit)."""
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def object(self) -> str:
        return f"{self.kind} {self.namespace}/{self.object_name}"

    @property
    def path(self) -> str:
        """Where its writes go, for fault injection."""
        plural = {"Ingress": "ingresses", "Service": "services", "Gateway": "gateways"}.get(self.kind, "authorizationpolicies")
        return f"/{plural}/{self.object_name}"

    def held(self, world: World) -> str | None:
        found = world.kube.get(self.kind, self.namespace, self.object_name)
        return self.read(found) if found is not None else None

    def hand_edit(self, world: World, value: str) -> None:
        found = world.kube.get(self.kind, self.namespace, self.object_name)
        assert found is not None
        self.write(found, value)
        world.kube.apply(found)


DENY = {DENY_ALL_EXCEPT_SOURCE_RANGES: "true"}
GATEWAY_SETTINGS = {"ROUTE_KINDS": "HTTPRoute"}


def _through_ingress(world: World) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("orders", "shop", "orders.example.com", "orders"))


def _public_service(world: World) -> None:
    world.kube.apply(service("payments", annotations=DENY))


def _through_gateway(world: World) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))


def _through_gateway_with_its_service(world: World) -> None:
    _through_gateway(world)
    generated = service("shared-istio", mode=None, expose=False, annotations=DENY)
    generated["metadata"]["labels"] = {GATEWAY_NAME_LABEL: "shared"}
    generated["spec"]["externalTrafficPolicy"] = "Local"
    world.kube.apply(generated)


def _annotation(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(NGINX_ALLOWLIST)


def _set_annotation(obj: dict[str, Any], value: str) -> None:
    obj["metadata"].setdefault("annotations", {})[NGINX_ALLOWLIST] = value


def _source_ranges(obj: dict[str, Any]) -> str | None:
    ranges = obj["spec"].get("loadBalancerSourceRanges")
    return ",".join(ranges) if ranges else None


def _set_source_ranges(obj: dict[str, Any], value: str) -> None:
    obj["spec"]["loadBalancerSourceRanges"] = value.split(",")


def _infrastructure(obj: dict[str, Any]) -> str | None:
    return ((obj["spec"].get("infrastructure") or {}).get("annotations") or {}).get(AZURE_ALLOWED_IP_RANGES)


def _set_infrastructure(obj: dict[str, Any], value: str) -> None:
    obj["spec"].setdefault("infrastructure", {}).setdefault("annotations", {})[AZURE_ALLOWED_IP_RANGES] = value


def _remote_ip_blocks(obj: dict[str, Any]) -> str | None:
    return ",".join(obj["spec"]["rules"][0]["from"][0]["source"]["remoteIpBlocks"])


def _set_remote_ip_blocks(obj: dict[str, Any], value: str) -> None:
    obj["spec"]["rules"][0]["from"][0]["source"]["remoteIpBlocks"] = value.split(",")


INGRESS_NGINX = Front("ingress-nginx", "Ingress", "shop", "orders", _through_ingress, _annotation, _set_annotation)
LOAD_BALANCER = Front("public Service", "Service", "shop", "payments", _public_service, _source_ranges, _set_source_ranges)
GATEWAY_INFRASTRUCTURE = Front(
    "Gateway infrastructure",
    "Gateway",
    "shop",
    "shared",
    _through_gateway,
    _infrastructure,
    _set_infrastructure,
    GATEWAY_SETTINGS,
)
GATEWAY_SERVICE = Front(
    "Gateway's generated Service",
    "Service",
    "shop",
    "shared-istio",
    _through_gateway_with_its_service,
    _source_ranges,
    _set_source_ranges,
    {**GATEWAY_SETTINGS, "GATEWAY_ALLOWLIST": "generated-service"},
)
ISTIO = Front(
    "Istio AuthorizationPolicy",
    "AuthorizationPolicy",
    "shop",
    authorization_policy_name("shared"),
    _through_gateway,
    _remote_ip_blocks,
    _set_remote_ip_blocks,
    {**GATEWAY_SETTINGS, "GATEWAY_ALLOWLIST": "istio"},
)
FRONTS = (INGRESS_NGINX, LOAD_BALANCER, GATEWAY_INFRASTRUCTURE, GATEWAY_SERVICE, ISTIO)
