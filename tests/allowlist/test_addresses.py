"""APIM's service resource -> the CIDR list that admits only APIM, for every network mode."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.allowlists.addresses import NoUsableAddresses, addresses_from_service, allowed_cidrs
from shared.core.cidrs import AddressSource, AllowListPolicy, parse_list
from shared.core.errors import InvalidSettings
from shared.core.settings import CIDRS_EXPECTED, load_settings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "apim"


def resource(vnet: str = "None", sku: str = "Developer", state: str = "Succeeded", **properties: Any) -> dict[str, Any]:
    return {
        "location": "West Europe",
        "sku": {"name": sku, "capacity": 1},
        "properties": {"virtualNetworkType": vnet, "provisioningState": state, **properties},
    }


def cidrs(service: dict[str, Any], **policy: Any) -> tuple[str, ...] | NoUsableAddresses:
    return allowed_cidrs(addresses_from_service(service), AllowListPolicy(**policy))


def test_single_region_public_address_becomes_a_host_cidr() -> None:
    assert cidrs(resource(publicIPAddresses=["20.0.0.1"])) == ("20.0.0.1/32",)


def test_multi_region_sample_from_microsoft_lists_every_region() -> None:
    sample = json.loads((FIXTURES / "ApiManagementServiceGetService.json").read_text())["responses"]["200"]["body"]
    assert cidrs(sample) == ("13.92.130.49/32", "40.70.24.106/32")


def test_ipv6_address_becomes_a_128() -> None:
    assert cidrs(resource(publicIPAddresses=["2001:db8::7", "20.0.0.1"])) == ("20.0.0.1/32", "2001:db8::7/128")


def test_internal_vnet_uses_private_addresses() -> None:
    service = resource("Internal", publicIPAddresses=["20.0.0.1"], privateIPAddresses=["10.1.0.4"])
    assert cidrs(service) == ("10.1.0.4/32",)


def test_external_vnet_uses_public_and_private_addresses() -> None:
    service = resource("External", publicIPAddresses=["20.0.0.1"], privateIPAddresses=["10.1.0.4"])
    assert cidrs(service) == ("10.1.0.4/32", "20.0.0.1/32")


def test_setting_can_choose_public_only_in_a_vnet() -> None:
    service = resource("External", publicIPAddresses=["20.0.0.1"], privateIPAddresses=["10.1.0.4"])
    assert cidrs(service, source=AddressSource.PUBLIC) == ("20.0.0.1/32",)


def test_subnet_prefix_replaces_the_private_addresses() -> None:
    service = resource("Internal", privateIPAddresses=["10.1.0.4"])
    assert cidrs(service, private_prefixes=("10.1.0.0/27",)) == ("10.1.0.0/27",)


def test_extra_cidrs_are_always_added() -> None:
    assert cidrs(resource(publicIPAddresses=["20.0.0.1"]), extra_cidrs=("192.0.2.0/24",)) == ("20.0.0.1/32", "192.0.2.0/24")


def test_duplicates_and_order_do_not_matter() -> None:
    service = resource(
        publicIPAddresses=["20.0.0.9", "20.0.0.1"],
        additionalLocations=[{"location": "North Europe", "publicIPAddresses": ["20.0.0.1"]}],
    )
    assert cidrs(service) == ("20.0.0.1/32", "20.0.0.9/32")


def test_nat_gateway_outbound_prefixes_replace_the_public_address() -> None:
    service = resource(
        sku="Premium", publicIPAddresses=["20.0.0.1"], natGatewayState="Enabled", outboundPublicIPAddresses=["4.0.0.0/30"]
    )
    assert cidrs(service) == ("4.0.0.0/30",)


def test_no_addresses_is_an_error_never_an_empty_list() -> None:
    result = cidrs(resource(publicIPAddresses=[]), extra_cidrs=("192.0.2.0/24",))
    assert isinstance(result, NoUsableAddresses) and "would admit everyone" in result.why and not result.retryable


def test_internal_vnet_without_private_addresses_is_an_error() -> None:
    assert isinstance(cidrs(resource("Internal", publicIPAddresses=["20.0.0.1"])), NoUsableAddresses)


def test_consumption_tier_is_an_error() -> None:
    result = cidrs(resource(sku="Consumption", publicIPAddresses=["20.0.0.1"]))
    assert isinstance(result, NoUsableAddresses) and "Consumption" in result.why


def test_service_being_updated_is_a_retryable_error() -> None:
    result = cidrs(resource(state="Updating", publicIPAddresses=["20.0.0.1"]))
    assert isinstance(result, NoUsableAddresses) and result.retryable


@pytest.mark.parametrize("value", ["0.0.0.0/0", "::/0", "10.0.0.1/24", "not-a-cidr"])
def test_extra_cidrs_that_open_up_or_do_not_parse_are_refused_by_settings(value: str) -> None:
    environ = {
        "APIM_SUBSCRIPTION_ID": "s",
        "APIM_RESOURCE_GROUP": "rg",
        "APIM_SERVICE_NAME": "a",
        "CLUSTER_NAME": "c",
        "OWNER_ID": "o",
        "SYNC_POLICY": "sync",
        "KUBECONFIG": os.devnull,
        "ALLOWLIST_EXTRA_CIDRS": value,
    }
    with pytest.raises(InvalidSettings) as raised:
        load_settings(environ)
    assert raised.value.problems == (("ALLOWLIST_EXTRA_CIDRS", f"expected {CIDRS_EXPECTED}"),)


def test_held_lists_are_read_whatever_their_spacing_and_order() -> None:
    assert parse_list(" 20.0.0.9/32,20.0.0.1/32 , 20.0.0.1/32") == ("20.0.0.1/32", "20.0.0.9/32")
    assert parse_list("20.0.0.1/32,bogus") is None


addresses = st.lists(st.ip_addresses().map(str), max_size=6)


@given(public=addresses, private=addresses, vnet=st.sampled_from(["None", "External", "Internal"]))
def test_a_list_is_never_empty_never_world_open_and_stable_when_read_back(
    public: list[str], private: list[str], vnet: str
) -> None:
    result = cidrs(resource(vnet, publicIPAddresses=public, privateIPAddresses=private))
    if isinstance(result, NoUsableAddresses):
        return
    assert result and not any(c.endswith("/0") for c in result)
    assert parse_list(",".join(result)) == result
