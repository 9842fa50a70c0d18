"""`keyvault` mode: Key Vault holds and renews the certificate; the app moves APIM from version to version in
order (trust the new issuer, wait until the ingress has it, reference the new version, retire the old issuer),
against the Key Vault and APIM emulators. What APIM presents is what the version it references holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from sandbox.keyvault import KeyVaultEmulator
from sandbox.world import World
from shared.rotation import decision, pki
from shared.runtime.ports import Dependencies
from tests.rotation.support import T0, Clock, bundle_ca_ids, ingress_backends, presented, rotate, steps

SECRET = "apim-client"
POLICY = decision.RotationPolicy(propagation=timedelta(minutes=1))


def new_issuer(name: str) -> pki.Material:
    return pki.new_ca(name, now=T0 - timedelta(days=1), days=365, kind=pki.KeyKind.EC_P256)


def renew(key_vault: KeyVaultEmulator, issuer: pki.Material, *, days: int = 90, pfx: bool = False) -> str:
    """Key Vault issues a new version from `issuer`: key, certificate and chain in the secret."""
    leaf = pki.issue_client(issuer, "apim-sandbox", now=T0 - timedelta(hours=1), days=days, kind=pki.KeyKind.EC_P256)
    if pfx:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs12

        key = serialization.load_pem_private_key(leaf.key_pem, None)
        data = pkcs12.serialize_key_and_certificates(
            b"kv",
            key,  # type: ignore[arg-type]
            x509.load_pem_x509_certificate(leaf.cert_pem),
            [x509.load_pem_x509_certificate(issuer.cert_pem)],
            serialization.NoEncryption(),
        )
        return key_vault.put_certificate_version(SECRET, b"", pkcs12=data)
    return key_vault.put_certificate_version(SECRET, leaf.key_pem + leaf.cert_pem + issuer.cert_pem)


@pytest.fixture
def kv_deps(world: World, rotation_deps: Dependencies, key_vault: KeyVaultEmulator, make_deps: Any) -> Dependencies:
    key_vault.reset()
    world.apim.key_vault = key_vault
    deps: Dependencies = make_deps(
        AzureWebJobsStorage=rotation_deps.settings.mtls.storage_connection,
        CLIENT_CERTIFICATE_SOURCE="keyvault",
        KEYVAULT_CERT_SECRET_ID=f"{key_vault.url}/secrets/{SECRET}",
        TRUST_PROPAGATION_SECONDS="60",
    )
    return deps


def entity_reference(world: World) -> str:
    (entity,) = world.apim.certificates.values()
    return str(entity["properties"]["keyVault"]["secretIdentifier"])


def in_service(deps: Dependencies, clock: Clock, key_vault: KeyVaultEmulator, issuer: pki.Material) -> str:
    version = renew(key_vault, issuer)
    first = steps(rotate(deps, clock))
    assert first == ["TrustCas", "AnnotateIngress", "AnnotateIngress"], "the issuer first; nothing is presented yet"
    clock.advance(minutes=2)
    assert steps(rotate(deps, clock)) == ["ReferenceVersion", "PointBackends", "PointBackends"]
    return version


def test_the_first_version_is_presented_only_once_the_ingress_trusts_its_issuer(
    world: World, kv_deps: Dependencies, key_vault: KeyVaultEmulator, clock: Clock
) -> None:
    issuer = new_issuer("Key Vault issuer A")
    version = in_service(kv_deps, clock, key_vault, issuer)
    assert entity_reference(world) == f"{key_vault.url}/secrets/{SECRET}/{version}", "a versioned reference"
    assert bundle_ca_ids(world) == [issuer.info.short_id]
    (entity_id,) = world.apim.certificates
    assert all(presented(world)[b] == [entity_id] for b in ingress_backends(world))
    assert steps(rotate(kv_deps, clock)) == [], "a second run has nothing to do"


def test_a_renewal_from_a_new_issuer_is_trusted_first_then_presented_then_the_old_issuer_retired(
    world: World, kv_deps: Dependencies, key_vault: KeyVaultEmulator, clock: Clock
) -> None:
    old, new = new_issuer("Key Vault issuer A"), new_issuer("Key Vault issuer B")
    first = in_service(kv_deps, clock, key_vault, old)
    second = renew(key_vault, new)

    assert steps(rotate(kv_deps, clock)) == ["TrustCas"]
    assert sorted(bundle_ca_ids(world)) == sorted([old.info.short_id, new.info.short_id])
    assert entity_reference(world).endswith(first), "APIM still presents the old version while the ingress reloads"

    clock.advance(minutes=2)
    assert steps(rotate(kv_deps, clock)) == ["ReferenceVersion", "RetireCa"]
    assert entity_reference(world).endswith(second)
    assert bundle_ca_ids(world) == [new.info.short_id]


def test_a_renewal_from_the_same_issuer_is_presented_at_once(
    world: World, kv_deps: Dependencies, key_vault: KeyVaultEmulator, clock: Clock
) -> None:
    issuer = new_issuer("Key Vault issuer A")
    in_service(kv_deps, clock, key_vault, issuer)
    renewed = renew(key_vault, issuer, pfx=True)
    assert steps(rotate(kv_deps, clock)) == ["ReferenceVersion"]
    assert entity_reference(world).endswith(renewed)


def test_a_dry_run_lists_the_ordered_steps_and_writes_nothing(
    world: World, kv_deps: Dependencies, key_vault: KeyVaultEmulator, clock: Clock
) -> None:
    renew(key_vault, new_issuer("Key Vault issuer A"))
    world.apim.clear_log()
    world.kube.clear_log()
    report = rotate(kv_deps, clock, dry_run=True)
    assert steps(report)[:2] == ["TrustCas"] or steps(report) == ["TrustCas"]
    assert world.apim.writes() == [] and world.kube.writes() == []


def test_an_expired_certificate_in_key_vault_is_an_error_naming_the_version(
    world: World, kv_deps: Dependencies, key_vault: KeyVaultEmulator, clock: Clock
) -> None:
    issuer = new_issuer("Key Vault issuer A")
    in_service(kv_deps, clock, key_vault, issuer)
    clock.advance(days=91)
    from shared.rotation import rotate as rotation_runner

    report = rotation_runner.rotate(kv_deps, clock=clock)
    assert report.error is not None and "expired" in report.error.message and not report.error.retryable


# -- the decision, in every state ---------------------------------------------------------------------------


def version(name: str, issuer: str | None, days: int = 90) -> decision.KeyVaultVersion:
    return decision.KeyVaultVersion(name, issuer, T0 + timedelta(days=days))


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (decision.KeyVaultState(version("v1", "a"), None, None), decision.TrustCas(("a",), "")),
        (decision.KeyVaultState(version("v1", "a"), None, {"a": T0}), decision.Waiting("", T0 + timedelta(minutes=1))),
        (decision.KeyVaultState(version("v1", "a"), None, {"a": T0 - timedelta(minutes=5)}), decision.ReferenceVersion("v1", "")),
        (decision.KeyVaultState(version("v2", "b"), version("v1", "a"), {"a": T0}), decision.TrustCas(("a", "b"), "")),
        (
            decision.KeyVaultState(version("v2", "b"), version("v1", "a"), {"a": T0, "b": T0}),
            decision.Waiting("", T0 + timedelta(minutes=1)),
        ),
        (
            decision.KeyVaultState(version("v2", "b"), version("v1", "a"), {"a": T0, "b": T0 - timedelta(minutes=5)}),
            decision.ReferenceVersion("v2", ""),
        ),
        (decision.KeyVaultState(version("v2", "b"), version("v2", "b"), {"a": T0, "b": T0}), decision.RetireCa("a", "")),
        (
            decision.KeyVaultState(version("v2", "b"), version("v2", "b"), {"b": T0}),
            decision.Waiting("", T0 + timedelta(days=90)),
        ),
        (decision.KeyVaultState(version("v1", None), None, None), decision.Waiting("", None)),
    ],
)
def test_keyvault_next_step(state: decision.KeyVaultState, expected: object) -> None:
    step = decision.keyvault_next_step(state, T0, POLICY)
    assert type(step) is type(expected)
    if isinstance(step, decision.TrustCas):
        assert isinstance(expected, decision.TrustCas) and step.ca_ids == expected.ca_ids
    elif isinstance(step, decision.ReferenceVersion | decision.RetireCa | decision.Waiting):
        assert {k: v for k, v in vars(step).items() if k != "why"} == {k: v for k, v in vars(expected).items() if k != "why"}
