"""Build the engine's dependencies once per worker process, lazily.

Nothing here runs at import: the SDK adapters (azure-mgmt-apimanagement, kubernetes, azure-identity)
are imported on the first call, so `import function_app` stays light and a bad setting becomes a
reported error instead of an indexing failure. Thread-safe: sync functions run in a thread pool.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from shared.core.errors import InvalidSettings
from shared.core.settings import CertificateSource, Settings, load_settings
from shared.runtime.counters import RequestCounter
from shared.runtime.ports import (
    CaStore,
    Dependencies,
    KeyVaultCertificate,
    Lease,
    LeaseFactory,
    RunLedger,
    RunTurn,
    no_lease,
)
from shared.runtime.telemetry import NoTelemetry, Telemetry

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_lock = threading.Lock()
_cached: Dependencies | None = None


def build_dependencies(settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> Dependencies:
    from shared.adapters import credentials
    from shared.adapters.apim import ApimSink
    from shared.adapters.kube import KubeSource, api_client_for

    counter = RequestCounter()
    arm_credential: TokenCredential
    if settings.credentials.sandbox_token:
        arm_credential = credentials.SandboxCredential(settings.credentials.sandbox_token, endpoint=settings.apim.arm_endpoint)
        kube_token = None
    else:
        azure = credentials.azure_credential()
        arm_credential = azure
        kube_token = credentials.RefreshingToken(azure) if not settings.kube.kubeconfig else None
    apim = ApimSink(settings.apim, arm_credential, counter=counter, ca_bundle=settings.credentials.arm_ca_bundle)
    try:
        kube_client = api_client_for(settings.kube, kube_token)
    except Exception:  # noqa: BLE001 - any failure to read the file is the same answer: the setting is wrong
        raise InvalidSettings([("KUBECONFIG", "is not a kubeconfig the Kubernetes client can read")]) from None
    kube = KubeSource(kube_client, settings.kube, counter=counter)
    lease_factory, lock_probe, run_ledger = _storage_locks(settings, arm_credential)
    return Dependencies(
        settings=settings,
        cluster=kube,
        cluster_writer=kube,
        secrets=kube,
        backends=apim,
        certificates=apim,
        apim_service=apim,
        apis=apim.api_store(),
        ca_store=_keyvault_ca_store(settings, arm_credential),
        keyvault_certificate=_keyvault_certificate(settings, arm_credential),
        lease=lease_factory,
        lock_probe=lock_probe,
        run_ledger=run_ledger,
        access=kube,
        telemetry=_telemetry(settings),
        counter=counter,
        sleep=sleep,
    )


def _keyvault_certificate(settings: Settings, credential: TokenCredential) -> KeyVaultCertificate | None:
    mtls = settings.mtls
    if mtls.source is not CertificateSource.KEYVAULT or not mtls.keyvault_secret_id:
        return None
    from shared.adapters.keyvault import KeyVaultCertificateSecret  # azure-keyvault-secrets: only when configured

    return KeyVaultCertificateSecret(mtls.keyvault_secret_id, credential, ca_bundle=settings.credentials.arm_ca_bundle)


def _keyvault_ca_store(settings: Settings, credential: TokenCredential) -> CaStore | None:
    mtls = settings.mtls
    if not mtls.ca_keyvault_url:
        return None
    from shared.adapters.keyvault import KeyVaultCaStore  # azure-keyvault-secrets: only when configured

    return KeyVaultCaStore(mtls.ca_keyvault_url, mtls.ca_keyvault_name, credential, ca_bundle=settings.credentials.arm_ca_bundle)


def _telemetry(settings: Settings) -> Telemetry:
    connection_string = settings.telemetry.connection_string
    if not connection_string:
        return NoTelemetry()
    from shared.adapters import credentials, telemetry  # OpenTelemetry and the Azure Monitor distro: only when on

    client_id = settings.telemetry.client_id
    telemetry.configure_azure_monitor(connection_string, credentials.managed_identity(client_id) if client_id else None)
    return telemetry.OpenTelemetry()


class _LazyRunLedger:
    """A BlobRunLedger made on first use, so azure-storage-blob loads only when a run is coordinated."""

    def __init__(self, **where: Any) -> None:
        self._where = where
        self._ledger: RunLedger | None = None

    def _made(self) -> RunLedger:
        if self._ledger is None:
            from shared.adapters import lease

            self._ledger = lease.BlobRunLedger(**self._where)
        return self._ledger

    def last_started(self, key: str) -> int:
        return self._made().last_started(key)

    def last_completed(self, key: str) -> int:
        return self._made().last_completed(key)

    def try_turn(self, key: str) -> RunTurn | None:
        return self._made().try_turn(key)


def _storage_locks(
    settings: Settings, app_credential: TokenCredential
) -> tuple[LeaseFactory, Callable[[], None] | None, RunLedger | None]:
    """The rotation lock, doctor's probe of it, and the run ledger: all in the Functions storage account."""
    from shared.adapters import credentials

    mtls = settings.mtls
    connection, account_url = mtls.storage_connection, mtls.storage_blob_uri
    if not connection and not account_url:
        return no_lease, None, None
    storage_credential: TokenCredential | None = None
    if not connection:
        sandbox_token = settings.credentials.sandbox_token
        if sandbox_token:
            storage_credential = credentials.SandboxCredential(sandbox_token, endpoint=str(account_url))
        elif mtls.storage_client_id:
            storage_credential = credentials.managed_identity(mtls.storage_client_id)
        else:
            storage_credential = app_credential
    options = {"connection_verify": settings.credentials.arm_ca_bundle} if settings.credentials.arm_ca_bundle else {}

    def exclusive(name: str) -> AbstractContextManager[Lease]:
        from shared.adapters import lease  # azure-storage-blob: only when a lock is taken

        return lease.exclusive(
            name, connection_string=connection, account_url=account_url, credential=storage_credential, **options
        )

    def probe() -> None:
        from shared.adapters import lease

        lease.probe(connection_string=connection, account_url=account_url, credential=storage_credential, **options)

    ledger = _LazyRunLedger(connection_string=connection, account_url=account_url, credential=storage_credential, **options)
    return exclusive, probe, ledger


def dependencies(environ: Mapping[str, str] | None = None) -> Dependencies:
    """The worker's dependencies, built on first use from the app settings; raises InvalidSettings."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = build_dependencies(load_settings(os.environ if environ is None else environ))
        return _cached


def reset() -> None:
    """Forget the cached dependencies (tests, or after settings change)."""
    global _cached
    with _lock:
        _cached = None
