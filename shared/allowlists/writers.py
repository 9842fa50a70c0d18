"""Plan the IP allow-lists of the cluster's entry points: which objects, which field, what value.

Pure. A writer knows one object model (ingress-nginx annotations, LoadBalancer source ranges; a Gateway
API or Istio writer would be a third): which objects it manages, what they hold now, and the patch that
sets a list. Objects are managed only when they front a Service this deployment exposes; nothing else is
read for writing. Every patch carries the resourceVersion it was planned on, so a concurrent edit is a
conflict, not a lost update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.backends.exposure import Exposure
from shared.core.annotations import (
    AZURE_ALLOWED_IP_RANGES,
    DENY_ALL_EXCEPT_SOURCE_RANGES,
    AnnotationChoice,
)
from shared.core.cidrs import parse_list
from shared.core.model import IngressView, Mode, Reason, ServiceView

SOURCE_RANGES_FIELD = "spec.loadBalancerSourceRanges"


@dataclass(frozen=True)
class Target:
    """One object whose allow-list fields are managed, with what each field holds now (None: absent)."""

    kind: str
    namespace: str
    name: str
    resource_version: str
    held: tuple[tuple[str, str | None], ...]

    @property
    def object(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Finding:
    """A preflight warning: the allow-list cannot work as intended, or was not written, and why."""

    object: str
    reason: str
    message: str


@dataclass(frozen=True)
class AllowListChange:
    target: Target
    cidrs: tuple[str, ...]
    patch: Mapping[str, Any]

    @property
    def restored(self) -> bool:
        """The object held a list that differs: someone edited it (or APIM's addresses changed)."""
        return any(value is not None for _, value in self.target.held)


class AllowListWriter(Protocol):
    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]: ...

    def target_of(self, obj: Any) -> Target | None:
        """The target for one freshly read object (after a conflict), if this writer manages its kind."""
        ...

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]: ...


class IngressNginxWriter:
    """ingress-nginx: the source-range annotation on Ingresses that route to ingress-mode Services."""

    def __init__(self, choice: AnnotationChoice) -> None:
        self.keys = choice.keys

    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]:
        return [self.target_of(ingress) for ingress in exposure.managed_ingresses()], []

    def target_of(self, obj: ServiceView | IngressView) -> Target:
        assert isinstance(obj, IngressView)
        held = tuple((key, obj.annotations.get(key)) for key in self.keys)
        return Target("Ingress", obj.namespace, obj.name, obj.resource_version, held)

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]:
        value = ",".join(cidrs)
        return {"metadata": {"resourceVersion": target.resource_version, "annotations": dict.fromkeys(self.keys, value)}}


class LoadBalancerWriter:
    """public-mode Services of type LoadBalancer: spec.loadBalancerSourceRanges."""

    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]:
        modes = exposure.modes
        targets: list[Target] = []
        findings: list[Finding] = []
        for service in exposure.services:
            if modes.get((service.namespace, service.name)) is not Mode.PUBLIC or service.type != "LoadBalancer":
                continue
            where = f"Service {service.namespace}/{service.name}"
            if service.annotations.get(AZURE_ALLOWED_IP_RANGES, "").strip():
                findings.append(
                    Finding(
                        where,
                        Reason.EXCLUSIVE_ALLOW_LIST_ANNOTATION,
                        f"{AZURE_ALLOWED_IP_RANGES} is set; it excludes {SOURCE_RANGES_FIELD}, so nothing was written",
                    )
                )
                continue
            if service.annotations.get(DENY_ALL_EXCEPT_SOURCE_RANGES, "").strip().lower() != "true":
                findings.append(
                    Finding(
                        where,
                        Reason.VNET_TRAFFIC_NOT_DENIED,
                        f'without {DENY_ALL_EXCEPT_SOURCE_RANGES}: "true" traffic from inside the VNet still gets in',
                    )
                )
            targets.append(self.target_of(service))
        return targets, findings

    def target_of(self, obj: ServiceView | IngressView) -> Target:
        assert isinstance(obj, ServiceView)
        held = ",".join(obj.load_balancer_source_ranges) if obj.load_balancer_source_ranges else None
        return Target("Service", obj.namespace, obj.name, obj.resource_version, ((SOURCE_RANGES_FIELD, held),))

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": target.resource_version}, "spec": {"loadBalancerSourceRanges": list(cidrs)}}


GATEWAY_INFRASTRUCTURE_FIELD = f"spec.infrastructure.annotations[{AZURE_ALLOWED_IP_RANGES}]"


class GatewayInfrastructureWriter:
    """Gateways (Gateway API) exposed through an Azure load balancer: the azure-allowed-ip-ranges annotation in
    spec.infrastructure.annotations, which the implementation propagates to the load-balancer Service it makes
    (Gateway API's infrastructure field; Istio and AKS's approuting-istio do). Nothing else on the Gateway."""

    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]:
        findings = [
            Finding(f"Service {ns}/{name}", Reason.ROUTE_NOT_ATTACHED, note)
            for (ns, name), notes in sorted(exposure.route_notes.items())
            if exposure.modes.get((ns, name)) is Mode.INGRESS
            for note in notes
        ]
        gateways = exposure.managed_gateways()
        for gateway in gateways:
            findings += generated_service_findings(gateway, exposure.services)
        return [self.target_of(gateway) for gateway in gateways], findings

    def target_of(self, obj: Any) -> Target:
        metadata = obj.get("metadata") or {}
        annotations = ((obj.get("spec") or {}).get("infrastructure") or {}).get("annotations") or {}
        held = annotations.get(AZURE_ALLOWED_IP_RANGES)
        return Target(
            "Gateway",
            str(metadata.get("namespace") or ""),
            str(metadata.get("name") or ""),
            str(metadata.get("resourceVersion") or ""),
            ((GATEWAY_INFRASTRUCTURE_FIELD, str(held) if held is not None else None),),
        )

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]:
        return {
            "metadata": {"resourceVersion": target.resource_version},
            "spec": {"infrastructure": {"annotations": {AZURE_ALLOWED_IP_RANGES: ",".join(cidrs)}}},
        }


def generated_service_findings(gateway: Mapping[str, Any], services: Sequence[ServiceView]) -> list[Finding]:
    """The load-balancer Service an implementation generated for the Gateway (by Gateway API's gateway-name
    label), when it was read: client addresses must survive it, and VNet traffic must be denied too."""
    metadata = gateway.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    findings: list[Finding] = []
    for service in services:
        if service.namespace != namespace or service.gateway_name != name or service.type != "LoadBalancer":
            continue
        where = f"Service {service.namespace}/{service.name} (of Gateway {namespace}/{name})"
        if service.external_traffic_policy != "Local":
            message = "externalTrafficPolicy is not Local: the Gateway sees node addresses, not APIM's"
            findings.append(Finding(where, Reason.CLIENT_ADDRESS_NOT_PRESERVED, message))
        if service.annotations.get(DENY_ALL_EXCEPT_SOURCE_RANGES, "").strip().lower() != "true":
            message = f'without {DENY_ALL_EXCEPT_SOURCE_RANGES}: "true" traffic from inside the VNet still gets in'
            findings.append(Finding(where, Reason.VNET_TRAFFIC_NOT_DENIED, message))
    return findings


def change_for(target: Target, cidrs: tuple[str, ...], writer: AllowListWriter) -> AllowListChange | None:
    """None when every field already holds exactly this set (order, spacing and duplicates aside)."""
    assert cidrs, "an empty allow-list admits everyone; never planned"
    if all(parse_list(value) == cidrs for _, value in target.held):
        return None
    return AllowListChange(target, cidrs, writer.patch(target, cidrs))


def controller_findings(controller: ServiceView | None, name: str) -> list[Finding]:
    """ingress-nginx sees node addresses, not APIM's, unless its Service keeps the client address."""
    if controller is None:
        return [
            Finding(
                f"Service {name}", Reason.INGRESS_CONTROLLER_NOT_FOUND, "the configured ingress controller Service is missing"
            )
        ]
    if controller.type == "LoadBalancer" and controller.external_traffic_policy != "Local":
        return [
            Finding(
                f"Service {name}",
                Reason.CLIENT_ADDRESS_NOT_PRESERVED,
                "externalTrafficPolicy is Cluster: ingress-nginx sees node addresses, not APIM's, so the allow-list "
                "refuses APIM too; set externalTrafficPolicy: Local",
            )
        ]
    return []
