"""One run at a time across all instances: a lease on a blob in the Functions storage account.

The timer's own singleton lock does not cover an HTTP-triggered run, so rotation takes this lease
(azure-storage-blob; AzureWebJobsStorage, or the host's identity-based AzureWebJobsStorage__* settings). A
lease expires by itself if its holder dies, so a crash never blocks rotation for longer than the lease
duration. The only module that imports azure-storage-blob.

Runs of one key are coordinated across instances the same way (BlobRunLedger): a blob per key, whose lease is
the turn and whose metadata numbers the runs (`started`, `completed`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

from shared.adapters.azure_errors import storage
from shared.core import errors

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


def _numbers(metadata: dict[str, str]) -> tuple[int, int]:
    def number(name: str) -> int:
        text = metadata.get(name, "0")
        return int(text) if text.isdigit() else 0

    return number("started"), number("completed")


class _BlobTurn:
    """A held lease on a key's blob, renewed in the background while the run lasts."""

    def __init__(self, blob: BlobClient, lease: BlobLeaseClient, started: int, completed: int) -> None:
        self._blob, self._lease = blob, lease
        self._started, self.completed = started, completed
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._keep_renewing, name="run-lease-renewal", daemon=True)

    def _keep_renewing(self) -> None:
        # A failed renewal is not fatal: the worst case is a second instance running the same key at once, which
        # the writes' preconditions make safe; it costs budget only.
        while not self._stop.wait(LEASE_SECONDS / 3):
            with suppress(Exception):
                self._lease.renew()

    def _record(self, started: int, completed: int) -> None:
        with storage("record the run"):
            self._blob.set_blob_metadata({"started": str(started), "completed": str(completed)}, lease=self._lease)
        self._started, self.completed = started, completed

    def begin(self) -> int:
        number = self._started + 1
        self._record(number, self.completed)
        return number

    def end(self, number: int) -> None:
        self._record(self._started, number)

    def __enter__(self) -> _BlobTurn:
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with suppress(Exception):  # an unreleased lease expires by itself in LEASE_SECONDS
            self._lease.release()


class BlobRunLedger:
    def __init__(
        self,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: TokenCredential | None = None,
        **options: Any,
    ) -> None:
        # No SDK retries (they sleep in real time, unseen): a failed ledger call leaves the run uncoordinated at once,
        # which is safe, rather than holding the run up for the SDK's minutes of backoff.
        self._container = _container(
            connection_string, account_url, credential, retry_total=0, connection_timeout=5, read_timeout=10, **options
        )
        self._made: set[str] = set()

    def _blob(self, key: str) -> BlobClient:
        # The key names scope, steps and hints: hashed, so no namespace-chosen text becomes a blob name.
        return self._container.get_blob_client(f"runs/{hashlib.sha256(key.encode()).hexdigest()[:40]}.lock")

    def _read(self, key: str) -> tuple[int, int]:
        with storage("read the run ledger"):
            try:
                return _numbers(dict(self._blob(key).get_blob_properties().metadata or {}))
            except ResourceNotFoundError:
                return 0, 0

    def last_started(self, key: str) -> int:
        return self._read(key)[0]

    def last_completed(self, key: str) -> int:
        return self._read(key)[1]

    def try_turn(self, key: str) -> _BlobTurn | None:
        blob = self._blob(key)
        with storage("take the run's turn"):
            if key not in self._made:
                with suppress(ResourceExistsError):
                    self._container.create_container()
                with suppress(ResourceExistsError):
                    blob.upload_blob(b"", overwrite=False)
                self._made.add(key)
        try:
            with storage("take the run's turn"):
                lease = blob.acquire_lease(lease_duration=LEASE_SECONDS)
        except errors.LeaseHeld:
            return None
        started, completed = self._read(key)
        return _BlobTurn(blob, lease, started, completed)
