"""The allow-list the app writes for every APIM tier and network setting, against the emulator's service
resource as ARM returns it for that tier (sandbox.apim_tiers), through the real SDKs. README's allow-list
section has the same table."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.apim_tiers import INTEGRATION_SUBNET_PREFIX, TIERS
from sandbox.world import World
from shared import sync
from shared.allowlists.report import AllowListReport
from shared.core.annotations import DENY_ALL_EXCEPT_SOURCE_RANGES
from shared.core.scope import Scope, Steps
from tests.conftest import service

WRITTEN = {
    "Developer": ["20.0.0.1/32"],
    "Basic": ["20.0.0.1/32"],
    "Standard": ["20.0.0.1/32"],
    "Premium": ["20.0.0.1/32", "20.0.1.1/32"],
    "Premium-internal": ["10.10.0.5/32", "10.11.0.6/32"],
    "Premium-external": ["10.10.0.5/32", "10.11.0.6/32", "20.0.0.1/32", "20.0.1.1/32"],
    "Premium-nat": ["20.10.0.0/31"],
}
"""Tier -> loadBalancerSourceRanges written (ALLOWLIST_PRIVATE_PREFIXES unset)."""
REFUSED = {
    "Consumption": "Consumption tier has no stable outbound addresses",
    "BasicV2": "BasicV2 tier calls backends from addresses Azure neither publishes nor keeps stable",
    "StandardV2": "StandardV2 tier without VNet integration calls backends from addresses",
    "StandardV2-vnet": "StandardV2 tier calls backends from its subnet apim-integration",
    "PremiumV2": "PremiumV2 tier calls backends from its subnet apim-integration",
}
"""Tier -> why nothing is written (reason NoStableApimAddress), ALLOWLIST_PRIVATE_PREFIXES unset."""


def test_every_tier_has_an_answer() -> None:
    assert set(WRITTEN) | set(REFUSED) == set(TIERS)


def allowlist_of(world: World, make_deps: Any, tier: str, **settings: str) -> AllowListReport:
    world.apim.set_tier(tier)
    world.kube.apply(service("payments", annotations={DENY_ALL_EXCEPT_SOURCE_RANGES: "true"}))
    report = sync.run(Scope("aks-sandbox"), make_deps(**settings), steps=Steps.ALLOWLIST)
    assert isinstance(report.allowlists, AllowListReport)
    return report.allowlists


@pytest.mark.parametrize("tier", sorted(WRITTEN))
def test_a_tier_with_stable_addresses_gets_them_written(world: World, make_deps: Any, tier: str) -> None:
    allowlist_of(world, make_deps, tier)
    stored = world.kube.get("Service", "shop", "payments")
    assert stored is not None and stored["spec"]["loadBalancerSourceRanges"] == WRITTEN[tier]


@pytest.mark.parametrize("tier", sorted(REFUSED))
def test_a_tier_without_stable_addresses_writes_nothing_and_says_why_naming_the_tier(
    world: World, make_deps: Any, tier: str
) -> None:
    report = allowlist_of(world, make_deps, tier)
    assert report.error is not None and report.error.reason == "NoStableApimAddress"
    assert REFUSED[tier] in report.error.message and not report.error.retryable
    stored = world.kube.get("Service", "shop", "payments")
    assert stored is not None and "loadBalancerSourceRanges" not in stored["spec"]


@pytest.mark.parametrize("tier", ["StandardV2-vnet", "PremiumV2"])
def test_a_v2_tier_in_a_subnet_gets_the_subnet_prefix_the_platform_sets(world: World, make_deps: Any, tier: str) -> None:
    allowlist_of(world, make_deps, tier, ALLOWLIST_PRIVATE_PREFIXES=INTEGRATION_SUBNET_PREFIX)
    stored = world.kube.get("Service", "shop", "payments")
    assert stored is not None and stored["spec"]["loadBalancerSourceRanges"] == [INTEGRATION_SUBNET_PREFIX]


def test_every_tiers_service_body_has_the_properties_of_the_published_example(world: World) -> None:
    import json
    from pathlib import Path

    import requests

    published = json.loads((Path(__file__).parents[1] / "fixtures/apim/ApiManagementServiceGetService.json").read_text())
    expected = set(published["responses"]["200"]["body"]["properties"])
    for tier in TIERS:
        world.apim.set_tier(tier)
        body = requests.get(
            f"{world.apim.url}{world.apim.service_id}",
            params={"api-version": "2024-05-01"},
            headers={"Authorization": f"Bearer {world.token}"},
            verify=str(world.tls.ca_cert),
            timeout=10,
        ).json()
        missing = expected - set(body["properties"])
        assert not missing, (tier, sorted(missing))
