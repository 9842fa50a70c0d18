"""Plan the IP allow-lists of the cluster's entry points: which objects, which field, what value.

Pure. A writer knows one object model (ingress-nginx annotations, LoadBalancer source ranges, a Gateway's
infrastructure annotations, the Service an implementation generated for a Gateway, an Istio
AuthorizationPolicy): which objects it manages, what they hold now, and the patch that sets a list. Objects
are managed only when they front a Service this deployment exposes; nothing else is read for writing. Every
patch carries the resourceVersion it was planned on, so a concurrent edit is a conflict, not a lost update.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.backends.exposure import Exposure
from shared.core.annotations import (
    AZURE_ALLOWED_IP_RANGES,
    DENY_ALL_EXCEPT_SOURCE_RANGES,
    GATEWAY_NAME_LABEL,
    SECRET_OWNER,
    AnnotationChoice,
)
from shared.core.cidrs import parse_list
from shared.core.model import IngressView, Mode, Reason, ServiceView

SOURCE_RANGES_FIELD = "spec.loadBalancerSourceRanges"


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Finding:
    """A preflight warning: the allow-list cannot work as intended, or was not written, and why."""

    object: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class AllowListChange:
    target: Target
    cidrs: tuple[str, ...]
    writer: AllowListWriter

    @property
    def patch(self) -> Mapping[str, Any]:
        """Made when written, not when planned: a first sync plans thousands, and their bodies need not wait."""
        return self.writer.patch(self.target, self.cidrs)

    @property
    def restored(self) -> bool:
        """The object held a list that differs: someone edited it (or APIM's addresses changed)."""
        return any(value is not None for _, value in self.target.held)


class AllowListWriter(Protocol):
    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]: ...

    def target_of(self, obj: Any, was: Target) -> Target | None:
        """The target again from a fresh read of `was`'s object after a conflict (None: it is gone), or None
        when there is nothing left to manage."""
        ...

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]: ...


class IngressNginxWriter:
    """ingress-nginx: the source-range annotation on Ingresses that route to ingress-mode Services."""

    def __init__(self, choice: AnnotationChoice) -> None:
        self.keys = choice.keys

    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]:
        return [self._target(ingress) for ingress in exposure.managed_ingresses()], []

    def target_of(self, obj: Any, was: Target) -> Target | None:
        return self._target(obj) if isinstance(obj, IngressView) else None

    def _target(self, ingress: IngressView) -> Target:
        held = tuple((key, ingress.annotations.get(key)) for key in self.keys)
        return Target("Ingress", ingress.namespace, ingress.name, ingress.resource_version, held)

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]:
        value = ",".join(cidrs)
        return {"metadata": {"resourceVersion": target.resource_version, "annotations": dict.fromkeys(self.keys, value)}}


def _source_ranges_target(service: ServiceView) -> Target:
    held = ",".join(service.load_balancer_source_ranges) if service.load_balancer_source_ranges else None
    return Target("Service", service.namespace, service.name, service.resource_version, ((SOURCE_RANGES_FIELD, held),))


def _source_ranges_patch(target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": target.resource_version}, "spec": {"loadBalancerSourceRanges": list(cidrs)}}


def _source_ranges_findings(service: ServiceView, where: str) -> tuple[bool, list[Finding]]:
    """(writable, warnings) for loadBalancerSourceRanges on a LoadBalancer Service."""
    if service.annotations.get(AZURE_ALLOWED_IP_RANGES, "").strip():
        message = f"{AZURE_ALLOWED_IP_RANGES} is set; it excludes {SOURCE_RANGES_FIELD}, so nothing was written"
        return False, [Finding(where, Reason.EXCLUSIVE_ALLOW_LIST_ANNOTATION, message)]
    if service.annotations.get(DENY_ALL_EXCEPT_SOURCE_RANGES, "").strip().lower() != "true":
        return True, [Finding(where, Reason.VNET_TRAFFIC_NOT_DENIED, _VNET_TRAFFIC_GETS_IN)]
    return True, []


_VNET_TRAFFIC_GETS_IN = f'without {DENY_ALL_EXCEPT_SOURCE_RANGES}: "true" traffic from inside the VNet still gets in'
"""One text for every Service it applies to (thousands at a first sync)."""


class LoadBalancerWriter:
    """public-mode Services of type LoadBalancer: spec.loadBalancerSourceRanges."""

    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]:
        modes = exposure.modes
        targets: list[Target] = []
        findings: list[Finding] = []
        for service in exposure.services:
            if modes.get((service.namespace, service.name)) is not Mode.PUBLIC or service.type != "LoadBalancer":
                continue
            writable, found = _source_ranges_findings(service, f"Service {service.namespace}/{service.name}")
            findings += found
            if writable:
                targets.append(_source_ranges_target(service))
        return targets, findings

    def target_of(self, obj: Any, was: Target) -> Target | None:
        return _source_ranges_target(obj) if isinstance(obj, ServiceView) else None

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]:
        return _source_ranges_patch(target, cidrs)


GATEWAY_INFRASTRUCTURE_FIELD = f"spec.infrastructure.annotations[{AZURE_ALLOWED_IP_RANGES}]"


def _route_findings(exposure: Exposure) -> list[Finding]:
    return [
        Finding(f"Service {ns}/{name}", Reason.ROUTE_NOT_ATTACHED, note)
        for (ns, name), notes in sorted(exposure.route_notes.items())
        if exposure.modes.get((ns, name)) is Mode.INGRESS
        for note in notes
    ]


def _gateway_preflight(exposure: Exposure) -> tuple[list[Mapping[str, Any]], list[Finding]]:
    """The managed Gateways, and the warnings every Gateway writer gives: routes that do not attach, and load
    balancers that lose client addresses or let the VNet in."""
    findings = _route_findings(exposure)
    gateways = exposure.managed_gateways()
    for gateway in gateways:
        findings += generated_service_findings(gateway, exposure.services)
    return gateways, findings


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


class GatewayInfrastructureWriter:
    """Gateways (Gateway API) exposed through an Azure load balancer: the azure-allowed-ip-ranges annotation in
    spec.infrastructure.annotations, which the implementation propagates to the load-balancer Service it makes
    (Gateway API's infrastructure field; Istio and AKS's approuting-istio do). Nothing else on the Gateway."""

    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]:
        gateways, findings = _gateway_preflight(exposure)
        return [self._target(gateway) for gateway in gateways], findings

    def target_of(self, obj: Any, was: Target) -> Target | None:
        return self._target(obj) if isinstance(obj, Mapping) else None

    def _target(self, gateway: Mapping[str, Any]) -> Target:
        annotations = ((gateway.get("spec") or {}).get("infrastructure") or {}).get("annotations") or {}
        held = annotations.get(AZURE_ALLOWED_IP_RANGES)
        namespace, name = _key(gateway)
        resource_version = str((gateway.get("metadata") or {}).get("resourceVersion") or "")
        return Target(
            "Gateway",
            namespace,
            name,
            resource_version,
            ((GATEWAY_INFRASTRUCTURE_FIELD, str(held) if held is not None else None),),
        )

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]:
        return {
            "metadata": {"resourceVersion": target.resource_version},
            "spec": {"infrastructure": {"annotations": {AZURE_ALLOWED_IP_RANGES: ",".join(cidrs)}}},
        }


class GeneratedServiceWriter:
    """Gateways whose implementation does not propagate spec.infrastructure.annotations: loadBalancerSourceRanges
    on the LoadBalancer Service the implementation generated for the Gateway (Gateway API's gateway-name label,
    the Gateway's namespace). Only that field is written; an implementation that rewrites the whole Service
    puts it back on every reconcile, which the next run reports as Restored."""

    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]:
        gateways, findings = _gateway_preflight(exposure)
        targets: list[Target] = []
        for gateway in gateways:
            namespace, name = _key(gateway)
            generated = [s for s in _generated_services(gateway, exposure.services) if s.type == "LoadBalancer"]
            if not generated:
                message = (
                    "no LoadBalancer Service with the label gateway.networking.k8s.io/gateway-name="
                    f"{name} in {namespace}: nothing to write the allow-list on"
                )
                findings.append(Finding(f"Gateway {namespace}/{name}", Reason.GATEWAY_SERVICE_NOT_FOUND, message))
            for service in generated:
                writable, _ = _source_ranges_findings(service, "")
                if writable:
                    targets.append(_source_ranges_target(service))
                else:
                    where = f"Service {service.namespace}/{service.name} (of Gateway {namespace}/{name})"
                    message = f"{AZURE_ALLOWED_IP_RANGES} is set; it excludes {SOURCE_RANGES_FIELD}, so nothing was written"
                    findings.append(Finding(where, Reason.EXCLUSIVE_ALLOW_LIST_ANNOTATION, message))
        return targets, findings

    def target_of(self, obj: Any, was: Target) -> Target | None:
        return _source_ranges_target(obj) if isinstance(obj, ServiceView) else None

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]:
        return _source_ranges_patch(target, cidrs)


AUTHORIZATION_POLICY_FIELD = "spec.rules[0].from[0].source.remoteIpBlocks"
NOT_AS_WRITTEN = "(edited: not as written)"
"""What an owned AuthorizationPolicy held when more than its list was changed (action, targets, other rules)."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "aks-apim-sync"}
_MAX_NAME = 253


def authorization_policy_name(gateway_name: str) -> str:
    name = f"aks-apim-sync-{gateway_name}"
    if len(name) <= _MAX_NAME:
        return name
    return f"{name[: _MAX_NAME - 7]}-{hashlib.sha256(gateway_name.encode()).hexdigest()[:6]}"


def authorization_policy_spec(gateway_name: str, cidrs: Sequence[str]) -> dict[str, Any]:
    """ALLOW only these source addresses at this Gateway. Istio denies what no ALLOW policy of a workload
    matches, so this one policy admits APIM and nobody else (unless another ALLOW policy admits more)."""
    return {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway_name}],
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"remoteIpBlocks": list(cidrs)}}]}],
    }


class IstioAuthorizationPolicyWriter:
    """Istio (the approuting-istio GatewayClass, the Istio add-on): one AuthorizationPolicy per managed Gateway,
    created and owned by this deployment (owner annotation), attached with targetRefs. `policies` holds the
    AuthorizationPolicies read in each managed Gateway's namespace. A policy of that name that is not ours is
    reported and left alone; any edit to ours (its list, action, targets or rules) is put back whole."""

    def __init__(self, owner: str, policies: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self.owner = owner
        self.policies = policies
        self._gateway_of: dict[tuple[str, str], str] = {}

    def targets(self, exposure: Exposure) -> tuple[list[Target], list[Finding]]:
        gateways, findings = _gateway_preflight(exposure)
        targets: list[Target] = []
        for gateway in gateways:
            namespace, gateway_name = _key(gateway)
            name = authorization_policy_name(gateway_name)
            self._gateway_of[(namespace, name)] = gateway_name
            in_namespace = self.policies.get(namespace) or ()
            existing = next((p for p in in_namespace if _key(p) == (namespace, name)), None)
            findings += [
                Finding(
                    f"AuthorizationPolicy {namespace}/{_key(p)[1]}",
                    Reason.ALLOW_POLICY_WIDENS,
                    f"another ALLOW policy applies to Gateway {namespace}/{gateway_name}; Istio admits what any ALLOW "
                    "policy matches, so it may admit more than APIM",
                )
                for p in in_namespace
                if _key(p) != (namespace, name) and _allows_at(p, gateway_name)
            ]
            target = self._target(existing, namespace, name)
            if target is None:
                message = f"exists but is not owned by '{self.owner}' ({SECRET_OWNER}); not touched"
                findings.append(Finding(f"AuthorizationPolicy {namespace}/{name}", Reason.OWNED_BY_OTHER, message))
            else:
                targets.append(target)
        return targets, findings

    def target_of(self, obj: Any, was: Target) -> Target | None:
        return self._target(obj, was.namespace, was.name)

    def _target(self, policy: Mapping[str, Any] | None, namespace: str, name: str) -> Target | None:
        if policy is None:
            return Target("AuthorizationPolicy", namespace, name, "", ((AUTHORIZATION_POLICY_FIELD, None),))
        metadata = policy.get("metadata") or {}
        if (metadata.get("annotations") or {}).get(SECRET_OWNER) != self.owner:
            return None
        spec = policy.get("spec") or {}
        rules = spec.get("rules") or [{}]
        listed = ((((rules[0] or {}).get("from") or [{}])[0] or {}).get("source") or {}).get("remoteIpBlocks")
        as_written = isinstance(listed, list) and spec == authorization_policy_spec(
            self._gateway_of.get((namespace, name), ""), listed
        )
        held = ",".join(str(c) for c in listed) if as_written and isinstance(listed, list) else NOT_AS_WRITTEN
        return Target(
            "AuthorizationPolicy",
            namespace,
            name,
            str(metadata.get("resourceVersion") or ""),
            ((AUTHORIZATION_POLICY_FIELD, held),),
        )

    def patch(self, target: Target, cidrs: tuple[str, ...]) -> dict[str, Any]:
        spec = authorization_policy_spec(self._gateway_of.get((target.namespace, target.name), ""), cidrs)
        if not target.resource_version:
            return {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {
                    "name": target.name,
                    "namespace": target.namespace,
                    "labels": dict(MANAGED_BY),
                    "annotations": {SECRET_OWNER: self.owner},
                },
                "spec": spec,
            }
        # A merge patch replaces lists whole; the other spec fields are nulled so a hand-added selector or
        # provider cannot survive next to ours.
        cleared = dict.fromkeys(("selector", "targetRef", "provider"), None)
        return {"metadata": {"resourceVersion": target.resource_version}, "spec": {**cleared, **spec}}


def _allows_at(policy: Mapping[str, Any], gateway_name: str) -> bool:
    """An ALLOW policy (in the Gateway's namespace) that applies to the Gateway: it targets it, selects its pods
    by the gateway-name label, or applies to the whole namespace (no target, no selector)."""
    spec = policy.get("spec") or {}
    if (spec.get("action") or "ALLOW") != "ALLOW" or spec.get("provider"):
        return False
    refs = list(spec.get("targetRefs") or []) + ([spec["targetRef"]] if spec.get("targetRef") else [])
    if refs:
        return any((r or {}).get("kind") == "Gateway" and (r or {}).get("name") == gateway_name for r in refs)
    labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
    if labels:
        return labels == {GATEWAY_NAME_LABEL: gateway_name}
    return True


def _generated_services(gateway: Mapping[str, Any], services: Sequence[ServiceView]) -> list[ServiceView]:
    namespace, name = _key(gateway)
    return [s for s in services if s.namespace == namespace and s.gateway_name == name]


def generated_service_findings(gateway: Mapping[str, Any], services: Sequence[ServiceView]) -> list[Finding]:
    """The load-balancer Service an implementation generated for the Gateway (by Gateway API's gateway-name
    label), when it was read: client addresses must survive it, and VNet traffic must be denied too."""
    namespace, name = _key(gateway)
    findings: list[Finding] = []
    for service in _generated_services(gateway, services):
        if service.type != "LoadBalancer":
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
    return AllowListChange(target, cidrs, writer)


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
