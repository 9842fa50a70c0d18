"""Shared by the rotation tests: a settable clock, the world's ingress-mode Services, and readers of what
APIM and Kubernetes hold."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.world import World
from shared.rotation import pki
from shared.rotation import rotate as rotation_runner
from shared.rotation.report import RotationReport
from shared.runtime.ports import Dependencies

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
BUNDLE = ("aks-apim-sync", "aks-apim-sync-client-ca")
CA_STORE = ("aks-apim-sync", "aks-apim-sync-ca")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def rotate(deps: Dependencies, clock: Clock, **options: Any) -> RotationReport:
    report = rotation_runner.rotate(deps, clock=clock, **options)
    assert not report.failed, report.to_text()
    return report


def steps(report: RotationReport) -> list[str]:
    return [s["step"] for s in report.steps]


def presented(world: World) -> dict[str, list[str]]:
    """Backend id -> the certificate entity names its credentials reference."""
    shown = {}
    for backend_id, backend in world.apim.backends.items():
        references = (backend["properties"].get("credentials") or {}).get("certificateIds") or []
        shown[backend_id] = [ref.rsplit("/", 1)[-1] for ref in references]
    return shown


def bundle_ca_ids(world: World) -> list[str]:
    secret = world.kube.get("Secret", *BUNDLE)
    assert secret is not None
    return [pki.cert_info(pem).short_id for pem in pki.split_pem_bundle(base64.b64decode(secret["data"]["ca.crt"]))]


BOTH_FRONTS = pytest.mark.parametrize("rotation_deps", ["Ingress", "HTTPRoute"], indirect=True)
"""Run a scenario with the ingress-mode Services behind Ingresses, then behind HTTPRoutes on one Gateway."""
TRUST_STEPS = {
    "Ingress": ["AnnotateIngress", "AnnotateIngress"],
    "HTTPRoute": ["CopyBundleToGateway", "ReferenceBundleOnGateway"],
}
"""How the front comes to trust the bundle: ingress-nginx's auth-tls annotations, or the Gateway's ConfigMap copy."""
COPY_STEPS = {"Ingress": [], "HTTPRoute": ["CopyBundleToGateway"]}
"""What follows a change of the bundle: the Gateway's copy is brought equal to it."""


def trusted_ca_ids(world: World, front: str) -> list[str]:
    """The CAs the front trusts; for a Gateway, its ConfigMap copy, which must equal the bundle Secret."""
    in_bundle = bundle_ca_ids(world)
    if front == "HTTPRoute":
        copy = world.kube.get("ConfigMap", "shop", BUNDLE[1])
        assert copy is not None
        assert [pki.cert_info(pem).short_id for pem in pki.split_pem_bundle(copy["data"]["ca.crt"].encode())] == in_bundle
    return in_bundle


def ingress_backends(world: World) -> list[str]:
    found = sorted(b for b in world.apim.backends if "-shop-orders-" in b or "-shop-payments-" in b)
    assert len(found) == 2, "both ingress-mode Services have backends"
    return found


def in_service(deps: Dependencies, clock: Clock) -> None:
    """From nothing to backends presenting a certificate: set up, wait out the propagation, switch."""
    assert steps(rotate(deps, clock))[:3] == ["CreateCa", "TrustCas", "IssueCertificate"]
    clock.advance(minutes=2)
    assert steps(rotate(deps, clock)) == ["PointBackends"]
