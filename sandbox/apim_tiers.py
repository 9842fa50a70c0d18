"""The APIM service resource as ARM returns it, for every tier and network setting the app must answer for.

The property set is that of Microsoft's published example (ApiManagementServiceGetService.json, 2024-05-01;
tests/fixtures/apim); the address fields per tier follow the REST spec's descriptions and the recorded
traffic in ../shared/notes/azure-platform.md §4.9:
- Developer, Basic, Standard, Premium: `publicIPAddresses` (one per region; Premium has additionalLocations);
  in a VNet (Developer, Premium) also `privateIPAddresses` and `virtualNetworkConfiguration.subnetResourceId`;
- Premium on stv2 with a NAT gateway: `natGatewayState: Enabled` and `outboundPublicIPAddresses` (prefixes);
- Consumption: no addresses at all (`publicIPAddresses: null`), capacity 0;
- BasicV2, StandardV2, PremiumV2: `publicIPAddresses: null`, `outboundPublicIPAddresses: null`,
  `platformVersion: "undetermined"`; StandardV2 with outbound VNet integration and PremiumV2 injected carry
  the subnet in `virtualNetworkConfiguration`.
"""

from __future__ import annotations

import copy
from typing import Any

SUBNET = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-sandbox"
    "/providers/Microsoft.Network/virtualNetworks/vnet-apim/subnets/{name}"
)
INTEGRATION_SUBNET_PREFIX = "10.20.1.0/24"
"""The prefix of the sandbox's StandardV2 integration / PremiumV2 injection subnet (ALLOWLIST_PRIVATE_PREFIXES)."""

TIERS = (
    "Developer",
    "Basic",
    "Standard",
    "Premium",
    "Premium-internal",
    "Premium-external",
    "Premium-nat",
    "Consumption",
    "BasicV2",
    "StandardV2",
    "StandardV2-vnet",
    "PremiumV2",
)
V2_WITH_SUBNET = ("StandardV2-vnet", "PremiumV2")


def _region(location: str, sku: str, public: list[str] | None, **extra: Any) -> dict[str, Any]:
    return {
        "location": location,
        "sku": {"name": sku, "capacity": 1},
        "zones": [],
        "publicIPAddresses": public,
        "privateIPAddresses": None,
        "publicIpAddressId": None,
        "virtualNetworkConfiguration": None,
        "gatewayRegionalUrl": f"https://apim-sandbox-{location.replace(' ', '').lower()}-01.regional.azure-api.net",
        "natGatewayState": "Disabled",
        "outboundPublicIPAddresses": None,
        "disableGateway": False,
        "platformVersion": "stv2",
        **extra,
    }


def service_body(tier: str, service_id: str, name: str, etag: str) -> dict[str, Any]:
    """The GET body of the service resource for one of TIERS."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; one of {', '.join(TIERS)}")
    sku = tier.split("-")[0]
    v2 = sku.endswith("V2")
    properties: dict[str, Any] = {
        "publisherEmail": "platform@contoso.example",
        "publisherName": "Contoso",
        "notificationSenderEmail": "apimgmt-noreply@mail.windowsazure.com",
        "provisioningState": "Succeeded",
        "targetProvisioningState": "",
        "createdAtUtc": "2026-01-05T09:40:00.9453556Z",
        "gatewayUrl": f"https://{name}.azure-api.net",
        "gatewayRegionalUrl": None if sku == "Consumption" else f"https://{name}-westeurope-01.regional.azure-api.net",
        "portalUrl": None if v2 or sku == "Consumption" else f"https://{name}.portal.azure-api.net",
        "developerPortalUrl": None if sku == "Consumption" else f"https://{name}.developer.azure-api.net",
        "managementApiUrl": None if v2 or sku == "Consumption" else f"https://{name}.management.azure-api.net",
        "scmUrl": None if v2 or sku == "Consumption" else f"https://{name}.scm.azure-api.net",
        "hostnameConfigurations": [
            {
                "type": "Proxy",
                "hostName": f"{name}.azure-api.net",
                "negotiateClientCertificate": False,
                "defaultSslBinding": True,
                "certificateSource": "BuiltIn",
            }
        ],
        "publicIPAddresses": ["20.0.0.1"],
        "privateIPAddresses": None,
        "additionalLocations": None,
        "virtualNetworkConfiguration": None,
        "customProperties": {"Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10": "False"},
        "virtualNetworkType": "None",
        "certificates": None,
        "disableGateway": False,
        "natGatewayState": "Disabled",
        "outboundPublicIPAddresses": None,
        "apiVersionConstraint": {"minApiVersion": None},
        "publicIpAddressId": None,
        "publicNetworkAccess": "Enabled",
        "privateEndpointConnections": None,
        "platformVersion": "stv2",
        "restore": False,
        "developerPortalStatus": "Enabled",
        "legacyPortalStatus": "Disabled",
        "enableClientCertificate": sku == "Consumption",
    }
    if tier == "Premium":
        properties["additionalLocations"] = [_region("North Europe", "Premium", ["20.0.1.1"])]
    elif tier in ("Premium-internal", "Premium-external"):
        internal = tier == "Premium-internal"
        properties.update(
            virtualNetworkType="Internal" if internal else "External",
            privateIPAddresses=["10.10.0.5"],
            virtualNetworkConfiguration={"subnetResourceId": SUBNET.format(name="apim-primary")},
            publicIpAddressId=f"{service_id}/../../Microsoft.Network/publicIPAddresses/pip-apim",
        )
        properties["additionalLocations"] = [
            _region(
                "North Europe",
                "Premium",
                ["20.0.1.1"],
                privateIPAddresses=["10.11.0.6"],
                virtualNetworkConfiguration={"subnetResourceId": SUBNET.format(name="apim-secondary")},
            )
        ]
    elif tier == "Premium-nat":
        properties.update(natGatewayState="Enabled", outboundPublicIPAddresses=["20.10.0.0/31"])
    elif sku == "Consumption":
        properties.update(publicIPAddresses=None, platformVersion="mtv1", hostnameConfigurations=[])
    elif v2:
        properties.update(publicIPAddresses=None, outboundPublicIPAddresses=None, platformVersion="undetermined")
        if tier == "StandardV2-vnet":
            properties.update(
                virtualNetworkType="External",
                virtualNetworkConfiguration={"subnetResourceId": SUBNET.format(name="apim-integration")},
            )
        elif tier == "PremiumV2":
            properties.update(
                virtualNetworkType="Internal",
                privateIPAddresses=["10.20.1.4"],
                virtualNetworkConfiguration={"subnetResourceId": SUBNET.format(name="apim-integration")},
            )
    return {
        "id": service_id,
        "name": name,
        "type": "Microsoft.ApiManagement/service",
        "tags": {},
        "location": "West Europe",
        "etag": etag,
        "properties": copy.deepcopy(properties),
        "sku": {"name": sku, "capacity": 0 if sku == "Consumption" else 1},
        "identity": {
            "type": "SystemAssigned",
            "principalId": "11111111-1111-1111-1111-111111111111",
            "tenantId": "22222222-2222-2222-2222-222222222222",
        },
        "systemData": {"createdBy": "platform@contoso.example", "createdByType": "User", "createdAt": "2026-01-05T09:40:00Z"},
        "zones": None,
    }
