"""Trust for APIM's client certificate on Gateways: the bundle copied into a ConfigMap in each managed
Gateway's namespace and referenced from spec.tls.frontend.default.validation.caCertificateRefs (Gateway API
v1.6 standard channel), following the bundle through CA rotations; nothing else on the Gateway changes."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sandbox.tools import Azurite
from sandbox.world import World
from shared import sync
from shared.core.scope import Scope
from shared.runtime.ports import Dependencies
from tests.conftest import service
from tests.gateway.test_httproute_discovery import gateway, httproute
from tests.rotation.support import BUNDLE, Clock, rotate, steps

CONFIGMAP = ("shop", "aks-apim-sync-client-ca")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway_deps(world: World, azurite: Azurite, make_deps: Any) -> Dependencies:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(gateway())
    world.kube.apply(httproute("orders"))
    deps: Dependencies = make_deps(
        AzureWebJobsStorage=azurite.connection_string,
        ROUTE_KINDS="HTTPRoute",
        TRUST_PROPAGATION_SECONDS="60",
        CERT_GRACE_SECONDS="3600",
    )
    sync.run(Scope("aks-sandbox"), deps)
    return deps


def bundle_secret_pem(world: World) -> str:
    secret = world.kube.get("Secret", *BUNDLE)
    assert secret is not None
    return base64.b64decode(secret["data"]["ca.crt"]).decode()


def test_the_gateway_trusts_the_bundle_through_a_configmap_it_references(
    world: World, gateway_deps: Dependencies, clock: Clock
) -> None:
    before = world.kube.get("Gateway", "shop", "shared")
    assert before is not None
    report = rotate(gateway_deps, clock)
    assert {"CopyBundleToGateway", "ReferenceBundleOnGateway"} <= set(steps(report))
    configmap = world.kube.get("ConfigMap", *CONFIGMAP)
    assert configmap is not None and configmap["data"]["ca.crt"] == bundle_secret_pem(world)
    after = world.kube.get("Gateway", "shop", "shared")
    assert after is not None
    assert after["spec"]["tls"]["frontend"]["default"]["validation"]["caCertificateRefs"] == [
        {"group": "", "kind": "ConfigMap", "name": "aks-apim-sync-client-ca"}
    ]
    assert after["spec"]["listeners"] == before["spec"]["listeners"], "nothing else on the Gateway is touched"

    world.kube.clear_log()
    clock.advance(minutes=2)
    assert steps(rotate(gateway_deps, clock)) == ["PointBackends"]
    assert not [r for r in world.kube.writes() if "configmaps" in r.path or "gateways" in r.path]


def test_the_configmap_follows_the_bundle_through_a_ca_rotation(world: World, gateway_deps: Dependencies, clock: Clock) -> None:
    rotate(gateway_deps, clock)
    clock.advance(minutes=2)
    rotate(gateway_deps, clock)
    rotate(gateway_deps, clock, force="ca")
    configmap = world.kube.get("ConfigMap", *CONFIGMAP)
    assert configmap is not None and configmap["data"]["ca.crt"] == bundle_secret_pem(world)
    assert configmap["data"]["ca.crt"].count("BEGIN CERTIFICATE") == 2, "old and new CA side by side"


def test_a_configmap_of_that_name_that_is_not_ours_is_left_alone_and_reported(
    world: World, gateway_deps: Dependencies, clock: Clock
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP[1], "namespace": "shop"},
        "data": {"ca.crt": "theirs"},
    }
    world.kube.apply(foreign)
    report = rotate(gateway_deps, clock)
    refused = [s for s in report.steps if s["step"] == "TrustOnGateway"]
    assert refused and refused[0]["outcome"] == "refused" and refused[0]["reason"] == "OwnedByOther"
    configmap = world.kube.get("ConfigMap", *CONFIGMAP)
    assert configmap is not None and configmap["data"]["ca.crt"] == "theirs"
    gateway_after = world.kube.get("Gateway", "shop", "shared")
    assert gateway_after is not None and "tls" not in gateway_after["spec"]
