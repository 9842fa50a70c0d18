"""Rotation against the APIM and Kubernetes emulators, with its lock in Azurite: what each side holds after each run."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
from typing import Any

import azure.functions as func
import pytest

from functions import rotation as rotation_functions
from sandbox.httpbase import Fault
from sandbox.keyvault import KeyVaultEmulator
from sandbox.tools import Azurite
from sandbox.world import World
from shared.__main__ import main
from shared.rotation import pki
from shared.rotation import rotate as rotation_runner
from shared.rotation.report import RotationReport
from shared.runtime.ports import Dependencies
from tests.rotation.support import (
    BOTH_FRONTS,
    BUNDLE,
    CA_STORE,
    COPY_STEPS,
    T0,
    TRUST_STEPS,
    Clock,
    bundle_ca_ids,
    in_service,
    ingress_backends,
    presented,
    rotate,
    steps,
    trusted_ca_ids,
)


@BOTH_FRONTS
def test_first_run_sets_up_trust_and_uploads_then_the_next_switches_after_propagation(
    world: World, rotation_deps: Dependencies, clock: Clock, front: str
) -> None:
    first = rotate(rotation_deps, clock)
    assert steps(first) == ["CreateCa", "TrustCas", "IssueCertificate", *TRUST_STEPS[front]]
    assert len(world.apim.certificates) == 1 and trusted_ca_ids(world, front) != []
    assert all(refs == [] for refs in presented(world).values()), "nothing presents a certificate before the front trusts its CA"
    assert first.next_step is not None and "not trusted long enough" in first.next_step["why"]
    if front == "Ingress":
        annotations = world.kube.get("Ingress", "shop", "orders")["metadata"]["annotations"]  # type: ignore[index]
        assert annotations["nginx.ingress.kubernetes.io/auth-tls-secret"] == "aks-apim-sync/aks-apim-sync-client-ca"
        assert annotations["nginx.ingress.kubernetes.io/auth-tls-verify-client"] == "on"
    else:
        validation = world.kube.get("Gateway", "shop", "shared")["spec"]["tls"]["frontend"]["default"]["validation"]  # type: ignore[index]
        assert validation["caCertificateRefs"] == [{"group": "", "kind": "ConfigMap", "name": BUNDLE[1]}]

    clock.advance(minutes=2)
    second = rotate(rotation_deps, clock)

    (certificate,) = world.apim.certificates
    assert steps(second) == ["PointBackends"]
    assert {b: presented(world)[b] for b in ingress_backends(world)} == {b: [certificate] for b in ingress_backends(world)}
    assert all(refs == [] for b, refs in presented(world).items() if b not in ingress_backends(world)), (
        "public backends untouched"
    )
    assert steps(rotate(rotation_deps, clock)) == []


@BOTH_FRONTS
def test_forced_rotation_switches_at_once_and_prunes_after_the_grace_period(
    world: World, rotation_deps: Dependencies, clock: Clock
) -> None:
    in_service(rotation_deps, clock)
    (old,) = world.apim.certificates

    clock.advance(minutes=1)
    forced = rotate(rotation_deps, clock, force="certificate")

    assert steps(forced) == ["IssueCertificate", "PointBackends"]
    new = max(world.apim.certificates)
    assert new != old and all(presented(world)[b] == [new] for b in ingress_backends(world))
    assert old in world.apim.certificates, "kept for the grace period"
    clock.advance(hours=2)
    assert steps(rotate(rotation_deps, clock)) == ["DeleteCertificate"]
    assert sorted(world.apim.certificates) == [new]


@BOTH_FRONTS
def test_ca_rotation_overlaps_old_and_new_ca_then_retires_the_old(
    world: World, rotation_deps: Dependencies, clock: Clock, front: str
) -> None:
    in_service(rotation_deps, clock)
    (old_ca,) = trusted_ca_ids(world, front)

    clock.advance(minutes=1)
    started = rotate(rotation_deps, clock, force="ca")
    assert steps(started) == ["CreateCa", "TrustCas", "IssueCertificate", *COPY_STEPS[front]]
    assert len(trusted_ca_ids(world, front)) == 2 and old_ca in trusted_ca_ids(world, front)
    assert all(presented(world)[b][0].endswith(old_ca) for b in ingress_backends(world)), "old CA's certificate until propagation"

    clock.advance(minutes=2)
    assert steps(rotate(rotation_deps, clock)) == ["PointBackends"]
    clock.advance(hours=2)
    finished = rotate(rotation_deps, clock)
    assert steps(finished) == ["DeleteCertificate", "RetireCa", "TrustCas", *COPY_STEPS[front]]
    (new_ca,) = trusted_ca_ids(world, front)
    assert new_ca != old_ca and all(presented(world)[b][0].endswith(new_ca) for b in ingress_backends(world))
    ca_files = world.kube.get("Secret", *CA_STORE)["data"]  # type: ignore[index]
    assert sorted(ca_files) == [f"ca-{new_ca}.crt", f"ca-{new_ca}.key"]


def test_a_run_that_failed_halfway_is_finished_by_the_next(world: World, rotation_deps: Dependencies, clock: Clock) -> None:
    rotate(rotation_deps, clock)
    clock.advance(minutes=2)
    world.apim.inject(Fault(403, method="PUT", path_contains="/backends/", times=1))
    broken = rotation_runner.rotate(rotation_deps, clock=clock)
    assert broken.failed and not broken.retryable

    healed = rotate(rotation_deps, clock)

    assert steps(healed) == ["PointBackends"]
    assert all(presented(world)[b] for b in ingress_backends(world))


def test_foreign_certificate_entities_are_never_touched(world: World, rotation_deps: Dependencies, clock: Clock) -> None:
    ca = pki.new_ca("someone else", now=T0, days=10, kind=pki.KeyKind.EC_P256)
    data, password = pki.to_pfx(pki.issue_client(ca, "x", now=T0, days=1, kind=pki.KeyKind.EC_P256), "x")
    rotation_deps.certificates.put_certificate("their-cert", {"data": base64.b64encode(data).decode(), "password": password})
    for _ in range(3):
        rotate(rotation_deps, clock)
        clock.advance(days=30)
    assert "their-cert" in world.apim.certificates


def test_two_rotations_at_once_exactly_one_acts(world: World, rotation_deps: Dependencies, clock: Clock) -> None:
    world.apim.latency_seconds = 0.05  # keep the first run busy while the second tries the lock
    reports: list[RotationReport] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        reports.append(rotation_runner.rotate(rotation_deps, clock=clock))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    acted = [r for r in reports if r.steps]
    skipped = [r for r in reports if r.skipped]
    assert len(acted) == 1 and len(skipped) == 1
    assert skipped[0].skipped == "another rotation holds the lock; it does the work"
    assert len(world.apim.certificates) == 1


def test_no_key_or_password_reaches_the_report_or_the_log(
    world: World, rotation_deps: Dependencies, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        report = rotate(rotation_deps, clock)
    (certificate,) = world.apim.certificates
    _, password = world.apim.certificate_pfx(certificate)
    ca_key = next(v for k, v in world.kube.get("Secret", *CA_STORE)["data"].items() if k.endswith(".key"))  # type: ignore[index]
    shown = json.dumps(report.to_json()) + report.to_text() + caplog.text
    assert password not in shown and ca_key not in shown and "PRIVATE KEY" not in shown


def test_dry_run_shows_the_steps_and_writes_nothing(world: World, rotation_deps: Dependencies, clock: Clock) -> None:
    world.apim.clear_log()
    world.kube.clear_log()
    report = rotation_runner.rotate(rotation_deps, clock=clock, dry_run=True)
    assert [s["step"] for s in report.steps] == ["CreateCa", "TrustCas", "IssueCertificate"]
    assert world.apim.writes() == [] and world.kube.writes() == []


def test_rotate_endpoint_runs_with_force_and_reports(
    world: World, rotation_deps: Dependencies, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**world.settings(), "AzureWebJobsStorage": azurite.connection_string}.items():
        monkeypatch.setenv(name, value)
    request = func.HttpRequest("POST", "http://localhost/api/rotate", params={"dryRun": "true"}, body=b"")
    response = rotation_functions.rotate.build().get_user_function()(request)
    assert response.status_code == 200 and json.loads(response.get_body())["dry_run"] is True
    bad = func.HttpRequest("POST", "http://localhost/api/rotate", params={"force": "maybe"}, body=b"")
    assert rotation_functions.rotate.build().get_user_function()(bad).status_code == 400


def test_cli_rotate_prints_what_expires_when(
    world: World, rotation_deps: Dependencies, azurite: Azurite, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = world.write_env_file()
    with env_file.open("a") as handle:
        handle.write(f"AzureWebJobsStorage={azurite.connection_string}\n")
    assert main(["rotate", "--env-file", str(env_file)]) == 0
    out = capsys.readouterr().out
    assert "✓ CreateCa" in out and "expires" in out and "next:" in out


def test_a_new_ingress_service_presents_the_certificate_in_use_at_its_first_sync(
    world: World, rotation_deps: Dependencies, clock: Clock
) -> None:
    from shared import sync
    from shared.core.scope import Scope
    from tests.conftest import ingress, service

    in_service(rotation_deps, clock)
    (certificate,) = world.apim.certificates
    world.kube.apply(service("catalog", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("catalog", "shop", "catalog.example.com", "catalog"))

    report = sync.run(Scope("aks-sandbox", "shop", "catalog"), dataclasses.replace(rotation_deps, wall_clock=clock))

    (catalog,) = [b for b in world.apim.backends if "-shop-catalog-" in b]
    assert presented(world)[catalog] == [certificate]
    assert "1 new ingress backend(s) present the client certificate in use" in report.notes


def test_rotation_timer_sets_everything_up_from_nothing(
    world: World, rotation_deps: Dependencies, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.functions.timer import TimerRequest

    from tests.indexed import user_function

    for name, value in {**world.settings(), "AzureWebJobsStorage": azurite.connection_string}.items():
        monkeypatch.setenv(name, value)
    user_function("rotate_certificates")(TimerRequest(past_due=False))
    assert world.kube.get("Secret", *CA_STORE) is not None and len(world.apim.certificates) == 1


def test_the_ca_can_live_in_key_vault_instead_of_a_secret(
    world: World, rotation_deps: Dependencies, azurite: Azurite, key_vault: KeyVaultEmulator, make_deps: Any, clock: Clock
) -> None:
    key_vault.reset()
    deps = make_deps(
        AzureWebJobsStorage=azurite.connection_string,
        TRUST_PROPAGATION_SECONDS="60",
        CERT_GRACE_SECONDS="3600",
        CA_KEYVAULT_URL=key_vault.url,
    )
    first = rotate(deps, clock)
    stored = key_vault.latest("aks-apim-sync-ca")
    assert stored is not None and world.kube.get("Secret", *CA_STORE) is None
    assert list(json.loads(stored["value"])["cas"]) == bundle_ca_ids(world)
    clock.advance(minutes=2)
    rotate(deps, clock)
    clock.advance(minutes=1)
    rotate(deps, clock, force="ca")
    clock.advance(minutes=2)
    rotate(deps, clock)
    clock.advance(hours=2)
    rotate(deps, clock)
    (ca_id,) = json.loads(key_vault.latest("aks-apim-sync-ca")["value"])["cas"]  # type: ignore[index]
    assert bundle_ca_ids(world) == [ca_id] and len(key_vault.secrets["aks-apim-sync-ca"]) == 3
    assert "PRIVATE KEY" not in json.dumps(first.to_json()) + first.to_text()


@pytest.mark.parametrize("edit", ["emptied", "a foreign CA added"])
def test_a_hand_edited_trust_bundle_is_put_back_and_reported_restored(
    world: World, rotation_deps: Dependencies, clock: Clock, edit: str
) -> None:
    in_service(rotation_deps, clock)
    secret = world.kube.get("Secret", *BUNDLE)
    assert secret is not None
    held = base64.b64decode(secret["data"]["ca.crt"])
    foreign = pki.new_ca("someone else's CA", now=T0, days=30, kind=pki.KeyKind.EC_P256).cert_pem
    edited = b"" if edit == "emptied" else held + foreign
    world.kube.apply({**secret, "data": {"ca.crt": base64.b64encode(edited).decode()}})

    report = rotate(rotation_deps, clock)

    [restore] = [s for s in report.steps if s["step"] == "TrustCas"]
    assert restore.get("reason") == "Restored"
    restored = world.kube.get("Secret", *BUNDLE)
    assert restored is not None and base64.b64decode(restored["data"]["ca.crt"]) == held
