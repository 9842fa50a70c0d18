"""Zero-downtime mTLS rotation, proven with real TLS handshakes against a real nginx.

nginx (Debian package) demands a client certificate (`ssl_verify_client on`) from the CAs in the bundle
that aks-apim-sync wrote into the Kubernetes emulator's Secret, and reloads when that Secret changes, as
the ingress controller does. A client plays APIM: it sends requests without pause, each on a new TLS
connection, with the client certificate that the APIM emulator's backend currently references (decoded
from the PFX that was uploaded). Across three client-certificate rotations and one CA rotation, no
request may fail.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from sandbox.tools import Azurite, Nginx, find_nginx, start_nginx
from sandbox.world import World
from shared.rotation import pki
from shared.rotation import rotate as rotation_runner
from shared.runtime.ports import Dependencies
from tests.conftest import require_tool
from tests.rotation.support import BUNDLE, ingress_backends, presented, steps

PROPAGATION_SECONDS = 3.0
GRACE_SECONDS = 3.0


GATEWAY_BUNDLE = ("shop", "aks-apim-sync-client-ca")
"""The Gateway's copy of the bundle: a ConfigMap in its namespace (key ca.crt, not base64)."""


@pytest.fixture(params=["Ingress", "Gateway"])
def front(request: pytest.FixtureRequest) -> str:
    """What stands before the Services: ingress-nginx (the bundle Secret) or a Gateway (its ConfigMap)."""
    return str(request.param)


@pytest.fixture
def live_deps(world: World, rotation_deps: Dependencies, azurite: Azurite, make_deps: Any, front: str) -> Dependencies:
    """Real time here: nginx checks validity against the real clock, so the waits are shortened instead."""
    options = {
        "AzureWebJobsStorage": azurite.connection_string,
        "TRUST_PROPAGATION_SECONDS": str(PROPAGATION_SECONDS),
        "CERT_GRACE_SECONDS": str(GRACE_SECONDS),
    }
    if front == "Gateway":
        from shared import sync
        from shared.core.scope import Scope
        from tests.gateway.test_httproute_discovery import gateway, httproute

        world.kube.apply(gateway())
        world.kube.apply(httproute("orders"))
        world.kube.apply(httproute("payments", service_name="payments", host="payments.contoso.example"))
        options["ROUTE_KINDS"] = "HTTPRoute"
        sync.run(Scope("aks-sandbox"), make_deps(**options))
    deps: Dependencies = make_deps(**options)
    return deps


@pytest.fixture
def nginx(world: World, live_deps: Dependencies, front: str) -> Iterator[Nginx]:
    binary = require_tool(find_nginx(), "nginx (Debian package nginx)")
    rotation_runner.rotate(live_deps)
    pem = bundle_pem(world, front)
    server = start_nginx(binary, server_cert=world.tls.server_cert, server_key=world.tls.server_key, bundle_pem=pem)
    yield server
    server.stop()


def bundle_of(world: World, front: str = "Ingress") -> tuple[str, bytes] | None:
    """(resourceVersion, PEM) of the bundle the front reads: the Secret (ingress-nginx) or the ConfigMap (Gateway)."""
    if front == "Gateway":
        configmap = world.kube.get("ConfigMap", *GATEWAY_BUNDLE)
        return (configmap["metadata"]["resourceVersion"], configmap["data"]["ca.crt"].encode()) if configmap else None
    secret = world.kube.get("Secret", *BUNDLE)
    return (secret["metadata"]["resourceVersion"], base64.b64decode(secret["data"]["ca.crt"])) if secret else None


def bundle_pem(world: World, front: str = "Ingress") -> bytes:
    found = bundle_of(world, front)
    assert found is not None
    return found[1]


class BundleReloader(threading.Thread):
    """The ingress controller's (or Gateway's) part: when its bundle changes, write it out and reload nginx."""

    def __init__(self, world: World, nginx: Nginx, front: str = "Ingress") -> None:
        super().__init__(daemon=True)
        self.world, self.nginx, self.front = world, nginx, front
        self.applied_version = ""
        self.reloads = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            found = bundle_of(self.world, self.front)
            if found is None or found[0] == self.applied_version:
                continue
            self.nginx.bundle.write_bytes(found[1])
            self.nginx.reload()
            time.sleep(0.3)  # nginx starts new workers with the new bundle; the old ones finish their connections
            self.applied_version = found[0]
            self.reloads += 1

    def settle(self) -> None:
        """Wait until nginx runs with what the bundle holds now."""
        found = bundle_of(self.world, self.front)
        assert found is not None
        deadline = time.monotonic() + 10
        while self.applied_version != found[0]:
            assert time.monotonic() < deadline, "nginx did not reload the bundle"
            time.sleep(0.02)


def client_files(world: World, certificate_id: str, directory: Path, name: str | None = None) -> tuple[str, str]:
    """What APIM would present: the certificate and key inside the PFX that was uploaded (or read from Key Vault)."""
    pfx, password = world.apim.certificate_pfx(certificate_id)
    key, cert, _ = pkcs12.load_key_and_certificates(pfx, password.encode() or None)
    assert key is not None and cert is not None
    name = name or certificate_id
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@dataclass(eq=False)
class Traffic(threading.Thread):
    """APIM's side: request after request, each with the certificate the backend references at that moment."""

    world: World
    nginx: Nginx
    backend_id: str
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    certificates_used: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.directory = Path(tempfile.mkdtemp(prefix="apim-client-"))
        self.files: dict[str, tuple[str, str]] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            (entity,) = presented(self.world)[self.backend_id]
            # What the entity holds, not just its name: in keyvault mode one entity moves from version to version.
            certificate_id = f"{entity}-{hashlib.sha256(self.world.apim.certificate_pfx(entity)[0]).hexdigest()[:12]}"
            if certificate_id not in self.files:
                self.files[certificate_id] = client_files(self.world, entity, self.directory, certificate_id)
                self.certificates_used.append(certificate_id)
            self.sent += 1
            try:
                answer = requests.get(
                    self.nginx.url,
                    cert=self.files[certificate_id],
                    verify=str(self.world.tls.ca_cert),
                    headers={"Connection": "close"},
                    timeout=5,
                )
                if answer.status_code != 200:
                    self.failures.append(f"{certificate_id}: HTTP {answer.status_code}")
            except requests.RequestException as error:
                self.failures.append(f"{certificate_id}: {type(error).__name__}")


def status_with(world: World, nginx: Nginx, material: pki.Material) -> int | str:
    directory = Path(tempfile.mkdtemp(prefix="other-client-"))
    (directory / "c.crt").write_bytes(material.cert_pem)
    (directory / "c.key").write_bytes(material.key_pem)
    try:
        answer = requests.get(
            nginx.url, cert=(str(directory / "c.crt"), str(directory / "c.key")), verify=str(world.tls.ca_cert), timeout=5
        )
    except (requests.RequestException, ssl.SSLError) as error:
        return type(error).__name__
    return answer.status_code


def test_three_certificate_rotations_and_one_ca_rotation_drop_no_request(
    world: World, live_deps: Dependencies, nginx: Nginx, front: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reloader = BundleReloader(world, nginx, front)
    reloader.start()
    reloader.settle()
    time.sleep(PROPAGATION_SECONDS)
    assert steps(rotation_runner.rotate(live_deps)) == ["PointBackends"]
    backend = ingress_backends(world)[0]
    traffic = Traffic(world, nginx, backend)
    traffic.start()
    timeline: list[tuple[float, str, int, int]] = []
    started = time.monotonic()

    def mark(event: str) -> None:
        time.sleep(0.4)  # let requests flow with what was just done
        timeline.append((time.monotonic() - started, event, traffic.sent, len(traffic.failures)))

    def run(**options: Any) -> list[str]:
        report = rotation_runner.rotate(live_deps, **options)
        assert not report.failed, report.to_text()
        reloader.settle()
        return steps(report)

    mark("traffic started")
    for n in range(1, 4):
        assert run(force="certificate")[:2] == ["IssueCertificate", "PointBackends"]
        mark(f"client certificate rotation {n}")

    old_ca = pki.cert_info(bundle_pem(world, front)).short_id
    assert run(force="ca")[:3] == ["CreateCa", "TrustCas", "IssueCertificate"]
    assert len(pki.split_pem_bundle(bundle_pem(world, front))) == 2
    assert presented(world)[backend][0].endswith(old_ca), "the new CA's certificate waits for nginx to trust it"
    mark("CA rotation: new CA trusted next to the old")
    time.sleep(PROPAGATION_SECONDS)
    run()
    assert not presented(world)[backend][0].endswith(old_ca)
    mark("CA rotation: backends present the new CA's certificate")
    time.sleep(GRACE_SECONDS)
    run()
    assert len(pki.split_pem_bundle(bundle_pem(world, front))) == 1 and len(world.apim.certificates) == 1
    mark("CA rotation: old certificates deleted, old CA retired")

    traffic.stop.set()
    traffic.join(10)
    reloader.stop.set()
    with capsys.disabled():
        print(f"\nzero-downtime timeline through {front} (s, event, requests sent, failed):")
        for at, event, sent, failed in timeline:
            print(f"  {at:6.2f}  {event:55} {sent:6} {failed:3}")
        print(f"  certificates presented: {len(traffic.certificates_used)}, nginx reloads: {reloader.reloads}")
    assert traffic.failures == []
    assert traffic.sent > 50 and len(traffic.certificates_used) == 5

    (current_ca,) = pki.split_pem_bundle(bundle_pem(world, front))
    now = datetime.now(UTC)
    untrusted = pki.new_ca("not trusted", now=now, days=30, kind=pki.KeyKind.EC_P256)
    intruder = pki.issue_client(untrusted, "intruder", now=now, days=1, kind=pki.KeyKind.EC_P256)
    assert status_with(world, nginx, intruder) == 400
    ca_store = world.kube.get("Secret", "aks-apim-sync", "aks-apim-sync-ca")
    assert ca_store is not None
    files = {k: base64.b64decode(v) for k, v in ca_store["data"].items()}
    ca_id = pki.cert_info(current_ca).short_id
    signing = pki.Material(files[f"ca-{ca_id}.crt"], files[f"ca-{ca_id}.key"])
    long_ago = now - timedelta(days=400)
    expired = pki.issue_client(signing, "expired", now=long_ago, days=1, kind=pki.KeyKind.EC_P256)
    assert status_with(world, nginx, expired) == 400


def test_a_key_vault_renewal_from_a_new_issuer_drops_no_request(
    world: World,
    rotation_deps: Dependencies,
    azurite: Azurite,
    key_vault: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """keyvault mode, end to end through on_event: Key Vault renews the certificate from a new issuer; the event
    makes the ingress trust that issuer first, APIM presents the new version only after the propagation time,
    and the old issuer is retired: continuous traffic, no failed request."""
    from tests.rotation.test_keyvault_events import deliver, keyvault_event
    from tests.rotation.test_keyvault_rotation import SECRET

    binary = require_tool(find_nginx(), "nginx (Debian package nginx)")
    key_vault.reset()
    world.apim.key_vault = key_vault
    settings = {
        **world.settings(),
        "AzureWebJobsStorage": azurite.connection_string,
        "CLIENT_CERTIFICATE_SOURCE": "keyvault",
        "KEYVAULT_CERT_SECRET_ID": f"{key_vault.url}/secrets/{SECRET}",
        "TRUST_PROPAGATION_SECONDS": str(PROPAGATION_SECONDS),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    from shared import deps

    deps.reset()
    now = datetime.now(UTC)

    def version_from(issuer: pki.Material) -> None:
        leaf = pki.issue_client(issuer, "apim-sandbox", now=now - timedelta(minutes=5), days=30, kind=pki.KeyKind.EC_P256)
        key_vault.put_certificate_version(SECRET, leaf.key_pem + leaf.cert_pem + issuer.cert_pem)

    old = pki.new_ca("Key Vault issuer A", now=now - timedelta(days=1), days=365, kind=pki.KeyKind.EC_P256)
    new = pki.new_ca("Key Vault issuer B", now=now - timedelta(days=1), days=365, kind=pki.KeyKind.EC_P256)
    version_from(old)
    deliver(keyvault_event(origin=key_vault.url, event_id="first"))
    server = start_nginx(binary, server_cert=world.tls.server_cert, server_key=world.tls.server_key, bundle_pem=bundle_pem(world))
    reloader = BundleReloader(world, server)
    reloader.start()
    traffic: Traffic | None = None
    try:
        reloader.settle()
        time.sleep(PROPAGATION_SECONDS)
        deliver(keyvault_event(origin=key_vault.url, event_id="first-again"))
        traffic = Traffic(world, server, ingress_backends(world)[0])
        traffic.start()
        time.sleep(0.5)

        version_from(new)
        deliver(keyvault_event(origin=key_vault.url, event_id="renewed"))
        reloader.settle()
        time.sleep(PROPAGATION_SECONDS)
        deliver(keyvault_event(origin=key_vault.url, event_id="renewed-again"))  # a redelivery, or the timer
        reloader.settle()
        time.sleep(0.5)
    finally:
        if traffic is not None:
            traffic.stop.set()
            traffic.join(10)
        reloader.stop.set()
        server.stop()
    assert traffic is not None
    with capsys.disabled():
        print(f"\nKey Vault renewal with a new issuer: {traffic.sent} requests, {len(traffic.failures)} failed")
    assert traffic.failures == []
    assert len(traffic.certificates_used) == 2 and traffic.sent > 20
    assert [pki.cert_info(p).short_id for p in pki.split_pem_bundle(bundle_pem(world))] == [new.info.short_id]
