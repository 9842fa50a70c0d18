"""One translation of azure-core errors into our error tree, for every Azure service the app calls
(ARM, Key Vault, Storage). The exception class alone says little (a 412 arrives as a plain
HttpResponseError, APIM's 409 PessimisticConcurrencyConflict as ResourceExistsError), so status and error
code decide. Messages never hold a response body beyond a short, whitespace-folded prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.core import errors

RETRYABLE_CONFLICT_CODES = {"PessimisticConcurrencyConflict", "ManagementApiRequestFailed"}
LEASE_HELD_CODES = {"LeaseAlreadyPresent", "LeaseIdMismatchWithLeaseOperation"}


def _retry_after(exc: HttpResponseError) -> float | None:
    response: Any = exc.response
    header = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def _code_and_message(exc: HttpResponseError) -> tuple[str, str]:
    """ARM and Key Vault carry an OData error; Storage sets `error_code` from its x-ms-error-code header."""
    code = str(getattr(exc, "error_code", "") or "")
    if exc.error is not None:
        return code or exc.error.code or "", exc.error.message or ""
    return code, exc.reason or ""


def translator(service: str) -> Callable[[Exception, str], errors.SyncError]:
    """The translation for one Azure service; `service` names it in messages (ARM, Key Vault, storage)."""

    def translate(exc: Exception, what: str) -> errors.SyncError:
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return errors.ServiceUnavailable(f"{what}: cannot reach {service} ({type(exc).__name__})")
        if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
            return errors.AccessDenied(f"{what}: could not get a token for {service}")
        if not isinstance(exc, HttpResponseError):
            return errors.RemoteRejected(f"{what}: {type(exc).__name__}")
        status = exc.status_code or 0
        code, text = _code_and_message(exc)
        message = errors.truncate_remote_text(text)
        detail = f"{what}: {service} {status} {code}: {message}".rstrip(": ")
        wait = _retry_after(exc)
        if status == 429:
            return errors.Throttled(detail, retry_after_seconds=wait)
        if status >= 500 or status == 408:
            return errors.ServiceUnavailable(detail, retry_after_seconds=wait)
        if status == 409 and code in LEASE_HELD_CODES:
            return errors.LeaseHeld(f"{what}: another instance holds the lease")
        if status == 412 or (status in (409, 422) and (code in RETRYABLE_CONFLICT_CODES or "in progress" in message.lower())):
            return errors.ConcurrentEdit(detail, retry_after_seconds=wait)
        if status in (401, 403):
            return errors.AccessDenied(detail)
        if status == 404:
            return errors.NotFound(detail)
        return errors.RemoteRejected(detail)

    return translate


translate_arm = translator("ARM")
translate_keyvault = translator("Key Vault")
translate_storage = translator("storage")


def arm(what: str) -> AbstractContextManager[None]:
    return errors.translating(translate_arm, what)


def keyvault(what: str) -> AbstractContextManager[None]:
    return errors.translating(translate_keyvault, what)


def storage(what: str) -> AbstractContextManager[None]:
    return errors.translating(translate_storage, what)
