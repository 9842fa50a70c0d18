"""Shared by the rotation tests: a settable clock, the world's ingress-mode Services, and readers of what
APIM and Kubernetes hold."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

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


def ingress_backends(world: World) -> list[str]:
    found = sorted(b for b in world.apim.backends if "-shop-orders-" in b or "-shop-payments-" in b)
    assert len(found) == 2, "both ingress-mode Services have backends"
    return found


def in_service(deps: Dependencies, clock: Clock) -> None:
    """From nothing to backends presenting a certificate: set up, wait out the propagation, switch."""
    assert steps(rotate(deps, clock))[:3] == ["CreateCa", "TrustCas", "IssueCertificate"]
    clock.advance(minutes=2)
    assert steps(rotate(deps, clock)) == ["PointBackends"]
