"""From APIM's service resource to the CIDR list that lets only APIM in.

Pure. Which addresses call a backend (Microsoft's APIM IP-address documentation):
- outside a VNet, the public IP of each region (primary and every additional location); with a NAT
  gateway (Premium, stv2) the region's outboundPublicIPAddresses instead;
- in a VNet calling private backends, a dynamic address from APIM's subnet: allow the subnet prefix
  (a setting), or the private VIPs if no prefix is configured;
- Consumption has no stable address at all, so there is nothing safe to allow;
- the v2 tiers have no dedicated address (`publicIPAddresses` is null): BasicV2, and StandardV2 without VNet
  integration, call from addresses Azure neither publishes nor keeps, so nothing is safe to allow; StandardV2
  with outbound VNet integration and PremiumV2 injected call from their subnet, whose prefix is a setting
  (ALLOWLIST_PRIVATE_PREFIXES: the service resource names the subnet, not its prefix).

The list is canonical (each address a /32 or /128, sorted, de-duplicated) so that an unchanged set never
causes a write. It is never empty and never contains a /0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.core.cidrs import AddressSource, AllowListPolicy, canonical, network
from shared.core.model import Reason


@dataclass(frozen=True, slots=True)
class Region:
    location: str
    public: tuple[str, ...] = ()
    private: tuple[str, ...] = ()
    nat_outbound: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApimAddresses:
    """The fields of the APIM service resource that decide who calls the backends."""

    sku: str
    virtual_network_type: str
    provisioning_state: str
    regions: tuple[Region, ...]
    subnet: str | None = None
    """virtualNetworkConfiguration.subnetResourceId of the primary region, if any."""


@dataclass(frozen=True, slots=True)
class NoUsableAddresses:
    """Nothing safe to write: every allow-list stays as it is."""

    why: str
    retryable: bool = False
    reason: Reason = Reason.NO_USABLE_APIM_ADDRESSES


V2_TIERS = ("basicv2", "standardv2", "premiumv2")


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value if v) if isinstance(value, list) else ()


def _region(location: str, body: Mapping[str, Any]) -> Region:
    nat = body.get("natGatewayState") == "Enabled"
    return Region(
        location=location,
        public=_strings(body.get("publicIPAddresses")),
        private=_strings(body.get("privateIPAddresses")),
        nat_outbound=_strings(body.get("outboundPublicIPAddresses")) if nat else (),
    )


def addresses_from_service(resource: Mapping[str, Any]) -> ApimAddresses:
    properties = resource.get("properties") or {}
    primary = _region(str(resource.get("location") or "primary"), properties)
    extra = [
        _region(str(location.get("location") or "?"), location)
        for location in properties.get("additionalLocations") or []
        if isinstance(location, Mapping)
    ]
    return ApimAddresses(
        sku=str((resource.get("sku") or {}).get("name") or ""),
        virtual_network_type=str(properties.get("virtualNetworkType") or "None"),
        provisioning_state=str(properties.get("provisioningState") or ""),
        regions=(primary, *extra),
        subnet=str((properties.get("virtualNetworkConfiguration") or {}).get("subnetResourceId") or "") or None,
    )


def _wants(policy: AllowListPolicy, vnet_type: str) -> tuple[bool, bool]:
    """(public, private) for the chosen source; auto follows virtualNetworkType."""
    if policy.source is AddressSource.PUBLIC:
        return True, False
    if policy.source is AddressSource.PRIVATE:
        return False, True
    if policy.source is AddressSource.BOTH:
        return True, True
    return {"External": (True, True), "Internal": (False, True)}.get(vnet_type, (True, False))


def _v2_tier(addresses: ApimAddresses, policy: AllowListPolicy) -> tuple[str, ...] | NoUsableAddresses:
    """The v2 tiers: only the subnet APIM calls from can be allowed, and only its prefix (a setting) says which."""
    tier = addresses.sku
    if addresses.subnet is None:
        return NoUsableAddresses(
            f"the {tier} tier{' without VNet integration' if tier.lower() != 'basicv2' else ''} calls backends from "
            "addresses Azure neither publishes nor keeps stable, so no allow-list can admit only APIM; every list is "
            "left as it is (integrate StandardV2 with a VNet, or use PremiumV2, and set ALLOWLIST_PRIVATE_PREFIXES to "
            "that subnet's prefix; or set ALLOWLIST_ENABLED=false)",
            reason=Reason.NO_STABLE_APIM_ADDRESS,
        )
    if not policy.private_prefixes:
        return NoUsableAddresses(
            f"the {tier} tier calls backends from its subnet {addresses.subnet.rsplit('/', 1)[-1]} ({addresses.subnet}); "
            "set ALLOWLIST_PRIVATE_PREFIXES to that subnet's address prefix: the service resource names the subnet, "
            "not its addresses",
            reason=Reason.NO_STABLE_APIM_ADDRESS,
        )
    return canonical([*(network(p) for p in policy.private_prefixes), *(network(c) for c in policy.extra_cidrs)])


def allowed_cidrs(addresses: ApimAddresses, policy: AllowListPolicy) -> tuple[str, ...] | NoUsableAddresses:
    if addresses.sku.lower() == "consumption":
        return NoUsableAddresses(
            "the Consumption tier has no stable outbound addresses, so no allow-list can admit only APIM; every list is "
            "left as it is (set ALLOWLIST_ENABLED=false to stop managing them)",
            reason=Reason.NO_STABLE_APIM_ADDRESS,
        )
    if addresses.provisioning_state and addresses.provisioning_state != "Succeeded":
        return NoUsableAddresses(
            f"APIM is {addresses.provisioning_state}; its addresses may still change, so the next run decides", retryable=True
        )
    if addresses.sku.lower() in V2_TIERS:
        return _v2_tier(addresses, policy)
    want_public, want_private = _wants(policy, addresses.virtual_network_type)
    found: list[str] = []
    if want_public:
        for region in addresses.regions:
            found.extend(region.nat_outbound or region.public)
    if want_private:
        found.extend(policy.private_prefixes or [a for r in addresses.regions for a in r.private])
    try:
        apim = [network(item) for item in found]
    except ValueError:
        return NoUsableAddresses("APIM reported an address that is not an IP address; nothing written")
    apim = [n for n in apim if n.prefixlen > 0]
    if not apim:
        wanted = " and ".join(name for name, on in (("public", want_public), ("private", want_private)) if on)
        return NoUsableAddresses(
            f"APIM reports no {wanted} addresses (virtualNetworkType {addresses.virtual_network_type}); "
            "an empty allow-list would admit everyone, so every list is left as it is"
        )
    return canonical([*apim, *(network(c) for c in policy.extra_cidrs)])
