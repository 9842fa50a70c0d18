"""The error tree of aks-apim-sync: every error says whether retrying can help.

    SyncError                      base; str() never holds secrets, at most a short prefix of remote text
    ├── RetryableError             retry_after_seconds: float | None
    │   ├── Throttled              429; honours Retry-After
    │   ├── ServiceUnavailable     5xx, timeouts, connection errors
    │   ├── ConcurrentEdit         412 (If-Match failed), 409 conflicts: re-read, re-plan
    │   └── LeaseHeld              another instance holds the run's lock; it will do the work
    └── PermanentError
        ├── InvalidSettings        lists every missing/invalid setting by name
        ├── InvalidAnnotation      names namespace/name, annotation key and why
        ├── OwnershipConflict      object exists with another owner (or none)
        ├── AccessDenied           401/403: a role or RBAC binding is missing
        └── RemoteRejected         any other 4xx: the request itself is wrong
            └── NotFound           404: the object does not exist (adapters turn it into None where absence is an answer)

Only adapters translate client-library errors into these (shared.adapters.azure_errors for every Azure
service, shared.adapters.kube for Kubernetes), chaining the original as the cause. Error classes are
defined here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

REMOTE_TEXT_LIMIT = 256


def truncate_remote_text(text: str, limit: int = REMOTE_TEXT_LIMIT) -> str:
    """Keep only a short prefix of text that came from a remote server: long bodies may echo secrets."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SyncError(Exception):
    """Base of every error aks-apim-sync raises on purpose."""

    retryable = False
    reason = "Error"


class RetryableError(SyncError):
    retryable = True
    reason = "Transient"

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Throttled(RetryableError):
    reason = "Throttled"


class ServiceUnavailable(RetryableError):
    reason = "ServiceUnavailable"


class ConcurrentEdit(RetryableError):
    reason = "ConcurrentEdit"


class LeaseHeld(RetryableError):
    reason = "LeaseHeld"


class PermanentError(SyncError):
    reason = "Permanent"


class InvalidSettings(PermanentError):
    reason = "InvalidSettings"

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        listed = "; ".join(f"{name}: {why}" for name, why in self.problems)
        super().__init__(f"invalid settings ({len(self.problems)}): {listed}")


class InvalidAnnotation(PermanentError):
    reason = "InvalidAnnotation"

    def __init__(self, *, obj: str, field: str, why: str) -> None:
        self.obj, self.field, self.why = obj, field, why
        super().__init__(f"{obj}: {field}: {why}")


class OwnershipConflict(PermanentError):
    reason = "OwnedByOther"


class AccessDenied(PermanentError):
    reason = "AccessDenied"


class RemoteRejected(PermanentError):
    reason = "RemoteRejected"


class NotFound(RemoteRejected):
    reason = "NotFound"


@contextmanager
def translating(translate: Callable[[Exception, str], SyncError], what: str) -> Iterator[None]:
    """Turn any client-library error raised inside the block into ours, chaining the original as the cause."""
    try:
        yield
    except SyncError:
        raise
    except Exception as exc:
        raise translate(exc, what) from exc
