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
from typing import TYPE_CHECKING

from shared.backends.reconcile import Dependencies
from shared.core.settings import Settings, load_settings
from shared.runtime.counters import RequestCounter

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
    sink = ApimSink(settings.apim, arm_credential, counter=counter, ca_bundle=settings.credentials.arm_ca_bundle)
    source = KubeSource(api_client_for(settings.kube, kube_token), settings.kube, counter=counter)
    return Dependencies(settings=settings, source=source, sink=sink, counter=counter, sleep=sleep, credential=arm_credential)


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
