"""One run at a time across all instances: a lease on a blob in the Functions storage account.

The timer's own singleton lock does not cover an HTTP-triggered run, so rotation takes this lease
(azure-storage-blob; AzureWebJobsStorage, or the host's identity-based AzureWebJobsStorage__* settings). A
lease expires by itself if its holder dies, so a crash never blocks rotation for longer than the lease
duration. The only module that imports azure-storage-blob.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobLeaseClient, ContainerClient

from shared.adapters.azure_errors import storage

CONTAINER = "aks-apim-sync-locks"
LEASE_SECONDS = 60


class Lease:
    def __init__(self, lease: BlobLeaseClient) -> None:
        self._lease = lease

    def renew(self) -> None:
        """Call between long steps: the lease lasts LEASE_SECONDS from the last renewal."""
        with storage("renew the lock"):
            self._lease.renew()


def _container(
    connection_string: str | None, account_url: str | None, credential: TokenCredential | None, **options: Any
) -> ContainerClient:
    if connection_string is not None:
        return ContainerClient.from_connection_string(connection_string, CONTAINER, **options)
    assert account_url is not None and credential is not None
    return ContainerClient(account_url, CONTAINER, credential=credential, **options)


def probe(
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: TokenCredential | None = None,
    **options: Any,
) -> None:
    """Reach the lock's container (whether it exists yet or not) and change nothing: raises what a lock would meet."""
    with storage("reach the lock container"):
        # One try: a checklist should say "unreachable" in seconds, not after the SDK's minute of retries.
        _container(connection_string, account_url, credential, retry_total=0, connection_timeout=5, **options).exists()


@contextmanager
def exclusive(
    name: str,
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: TokenCredential | None = None,
    **client_options: Any,
) -> Iterator[Lease]:
    """Hold the lease `name` for the block; raises LeaseHeld at once when another instance holds it. The
    account is a connection string, or a blob service URL reached with a token credential (no shared key)."""
    container = _container(connection_string, account_url, credential, **client_options)
    blob = container.get_blob_client(f"{name}.lock")
    with storage(f"take the lock {name}"):
        with suppress(ResourceExistsError):
            container.create_container()
        with suppress(ResourceExistsError):
            blob.upload_blob(b"", overwrite=False)
        lease = blob.acquire_lease(lease_duration=LEASE_SECONDS)
    try:
        yield Lease(lease)
    finally:
        with suppress(Exception):  # an unreleased lease expires by itself in LEASE_SECONDS
            lease.release()
