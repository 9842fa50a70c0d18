"""aks-apim-sync's engine: Kubernetes Services in, APIM backends out.

Import modules, not names, inside the package (`from shared import plan`). The names below are the
public surface for the Functions handlers, the CLI and the sandbox.
"""

from shared.core.errors import (
    AccessDenied,
    ConcurrentEdit,
    InvalidAnnotation,
    InvalidSettings,
    OwnershipConflict,
    PermanentError,
    RemoteRejected,
    RetryableError,
    ServiceUnavailable,
    SyncError,
    Throttled,
)
from shared.core.reporting import Report
from shared.core.scope import BadRequest, ResyncRequest, Scope, parse_resync_request
from shared.core.settings import Settings, load_settings

__all__ = [
    "AccessDenied",
    "BadRequest",
    "ConcurrentEdit",
    "InvalidAnnotation",
    "InvalidSettings",
    "OwnershipConflict",
    "PermanentError",
    "RemoteRejected",
    "Report",
    "ResyncRequest",
    "RetryableError",
    "Scope",
    "ServiceUnavailable",
    "Settings",
    "SyncError",
    "Throttled",
    "load_settings",
    "parse_resync_request",
]
