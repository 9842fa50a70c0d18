"""Key Vault events start the rotation check (issue 16): routed from the vaults and objects the app uses, in
both schemas and both spellings of the data keys, and end to end through on_event: a renewal from a new issuer
is trusted before APIM presents it; repeated, foreign, malformed events write nothing; a transient failure
raises so Event Grid redelivers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from sandbox.httpbase import Fault
from sandbox.keyvault import KeyVaultEmulator
from sandbox.world import World
from shared.core.errors import RetryableError
from shared.events import routing
from shared.runtime.ports import Dependencies
from tests.events.test_on_event import ON_EVENT
from tests.rotation.support import bundle_ca_ids
from tests.rotation.test_keyvault_rotation import SECRET, entity_reference, new_issuer, renew

VAULT_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-sandbox/providers/Microsoft.KeyVault/vaults/sandbox-kv"
)
CONTEXT = routing.EventContext(
    cluster="aks-sandbox",
    apim_service_id="/subscriptions/0/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim",
    key_vault_objects=frozenset({routing.KeyVaultObject("https://sandbox-kv.vault.azure.net", SECRET)}),
)


def keyvault_event(
    kind: str = "CertificateNewVersionCreated",
    *,
    origin: str = "https://sandbox-kv.vault.azure.net",
    name: str = SECRET,
    source: str = VAULT_ID,
    cloud_events: bool = False,
    event_id: str = "kv-1",
) -> dict[str, Any]:
    """As Key Vault sends it: capitalised data keys in the Event Grid schema; the SDK's camelCase in CloudEvents."""
    object_type = "Certificate" if kind.startswith("Certificate") else "Secret"
    collection = "certificates" if object_type == "Certificate" else "secrets"
    values = [
        f"{origin}/{collection}/{name}/0123abcd",
        source.rsplit("/", 1)[-1],
        object_type,
        name,
        "0123abcd",
        1764662400,
        1772438400,
    ]
    if cloud_events:
        data = dict(zip(["id", "vaultName", "objectType", "objectName", "version", "nbf", "exp"], values, strict=True))
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": f"Microsoft.KeyVault.{kind}",
            "subject": name,
            "data": data,
        }
    data = dict(zip(["Id", "VaultName", "ObjectType", "ObjectName", "Version", "NBF", "EXP"], values, strict=True))
    return {
        "id": event_id,
        "topic": source,
        "subject": name,
        "eventType": f"Microsoft.KeyVault.{kind}",
        "eventTime": "2026-12-02T08:00:00Z",
        "data": data,
        "dataVersion": "1",
        "metadataVersion": "1",
    }


@pytest.mark.parametrize(
    "kind", ["CertificateNewVersionCreated", "CertificateNearExpiry", "SecretNewVersionCreated", "SecretNearExpiry"]
)
@pytest.mark.parametrize("cloud_events", [False, True])
def test_an_event_for_the_certificate_the_app_uses_runs_the_rotation_check(kind: str, cloud_events: bool) -> None:
    action = routing.route(keyvault_event(kind, cloud_events=cloud_events), CONTEXT)
    assert isinstance(action, routing.Rotate) and not action.expired


def test_an_expired_event_is_marked_expired() -> None:
    action = routing.route(keyvault_event("CertificateExpired"), CONTEXT)
    assert isinstance(action, routing.Rotate) and action.expired


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (keyvault_event(name="another-certificate"), "not an object aks-apim-sync uses"),
        (
            keyvault_event(origin="https://other-kv.vault.azure.net", source=VAULT_ID.replace("sandbox-kv", "other-kv")),
            "not an object",
        ),
        (
            keyvault_event(source="/subscriptions/0/resourceGroups/x/providers/Microsoft.Storage/storageAccounts/sandbox-kv"),
            "not a configured event source",
        ),
        (keyvault_event("KeyNewVersionCreated"), "not a Key Vault event aks-apim-sync acts on"),
    ],
)
def test_events_for_other_vaults_objects_or_types_are_acknowledged(event: dict[str, Any], why: str) -> None:
    action = routing.route(event, CONTEXT)
    assert isinstance(action, routing.Acknowledge) and why in action.why


def test_an_event_without_the_data_it_needs_is_malformed() -> None:
    event = keyvault_event()
    del event["data"]["ObjectName"]
    action = routing.route(event, CONTEXT)
    assert isinstance(action, routing.Malformed) and "ObjectName" in action.why


def deliver(event: dict[str, Any]) -> None:
    ON_EVENT(EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={}))


@pytest.fixture
def kv_app(
    world: World, rotation_deps: Dependencies, key_vault: KeyVaultEmulator, monkeypatch: pytest.MonkeyPatch
) -> KeyVaultEmulator:
    key_vault.reset()
    world.apim.key_vault = key_vault
    settings = {
        **world.settings(),
        "AzureWebJobsStorage": str(rotation_deps.settings.mtls.storage_connection),
        "CLIENT_CERTIFICATE_SOURCE": "keyvault",
        "KEYVAULT_CERT_SECRET_ID": f"{key_vault.url}/secrets/{SECRET}",
        "TRUST_PROPAGATION_SECONDS": "1",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    from shared import deps

    deps.reset()
    return key_vault


def test_a_renewal_from_a_new_issuer_is_trusted_by_the_event_before_apim_presents_it(
    world: World, kv_app: KeyVaultEmulator
) -> None:
    old, new = new_issuer("Key Vault issuer A"), new_issuer("Key Vault issuer B")
    first = renew(kv_app, old)
    deliver(keyvault_event(origin=kv_app.url, event_id="v1"))
    time.sleep(1.1)
    deliver(keyvault_event(origin=kv_app.url, event_id="v1-again"))  # a redelivery (or the timer) goes on
    assert entity_reference(world).endswith(first)

    second = renew(kv_app, new)
    deliver(keyvault_event(origin=kv_app.url, event_id="v2"))
    assert sorted(bundle_ca_ids(world)) == sorted([old.info.short_id, new.info.short_id]), "the new issuer is trusted"
    assert entity_reference(world).endswith(first), "and APIM still presents the old version"
    time.sleep(1.1)
    deliver(keyvault_event(origin=kv_app.url, event_id="v2-again"))
    assert entity_reference(world).endswith(second) and bundle_ca_ids(world) == [new.info.short_id]

    world.apim.clear_log()
    world.kube.clear_log()
    deliver(keyvault_event(origin=kv_app.url, event_id="v2-repeated"))
    assert world.apim.writes() == [] and world.kube.writes() == [], "a repeated event writes nothing"


def test_an_event_for_another_object_writes_nothing(world: World, kv_app: KeyVaultEmulator) -> None:
    renew(kv_app, new_issuer("Key Vault issuer A"))
    world.apim.clear_log()
    world.kube.clear_log()
    deliver(keyvault_event(origin=kv_app.url, name="someone-elses"))
    assert world.apim.writes() == [] and world.kube.writes() == []


def test_a_transient_key_vault_failure_raises_so_event_grid_redelivers(
    world: World, kv_app: KeyVaultEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    from shared import deps

    deps.reset()
    renew(kv_app, new_issuer("Key Vault issuer A"))
    kv_app.inject(Fault(503, path_contains="/secrets/", times=5))
    with pytest.raises(RetryableError):
        deliver(keyvault_event(origin=kv_app.url))


@pytest.mark.parametrize("cloud_events", [False, True])
def test_the_event_grid_stand_in_delivers_a_key_vault_event_and_redelivers_after_a_transient_failure(
    world: World, kv_app: KeyVaultEmulator, cloud_events: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.eventgrid import EventGridTopic
    from shared import deps
    from tests.rotation.support import BUNDLE

    monkeypatch.setenv("MAX_ATTEMPTS", "1")  # the app does not retry itself: the 503 fails the delivery
    deps.reset()
    issuer = new_issuer("Key Vault issuer A")
    renew(kv_app, issuer)
    topic = EventGridTopic(tls=world.tls, key="k", token=world.token).start()
    assert isinstance(topic, EventGridTopic)
    try:
        kv_app.inject(Fault(503, path_contains="/secrets/", times=1))
        topic.subscribe(deliver)
        topic.raise_system_event(keyvault_event(origin=kv_app.url, cloud_events=cloud_events))
        assert topic.wait_until_idle()
        assert 503 in [r.status for r in kv_app.log if "/secrets/" in r.path], "the first delivery failed"
        assert topic.dead_lettered == [] and len(topic.delivered) == 1, "and the redelivery succeeded"
        assert world.kube.get("Secret", *BUNDLE) is not None and bundle_ca_ids(world) == [issuer.info.short_id]
    finally:
        topic.stop()
