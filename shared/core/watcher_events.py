"""The format of the events the in-cluster watcher publishes and the router reads: defined once, here.

CloudEvents 1.0 on an Event Grid custom topic. `type` says what changed, `subject` names it, `data` carries
hints only (ids a Service used before it changed), never desired state.
"""

from __future__ import annotations

import re

SERVICE_CHANGED = "io.apim-sync.service.changed"
CLUSTER_RESYNC = "io.apim-sync.cluster.resync"
TRUST_CHANGED = "io.apim-sync.trust.changed"
"""The trust bundle or the CA Secret in the app's namespace changed (a hand edit, a restore): check rotation."""
WATCHER_SOURCE_PREFIX = "urn:aks-apim-sync:watcher:"
DATA_BACKEND_IDS = "backendIds"
DATA_API_IDS = "apiIds"
DATA_WHY = "why"
MAX_HINTS = 8
"""Hints beyond this many are ignored: an event must not be able to make a run read without bound."""

_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
SERVICE_SUBJECT = re.compile(
    rf"^clusters/(?P<cluster>[^/]+)/namespaces/(?P<namespace>{_DNS_LABEL})/services/(?P<name>{_DNS_LABEL})$"
)
CLUSTER_SUBJECT = re.compile(r"^clusters/(?P<cluster>[^/]+)$")


def watcher_source(cluster: str) -> str:
    """The CloudEvents source the in-cluster watcher uses unless told otherwise."""
    return f"{WATCHER_SOURCE_PREFIX}{cluster}"


def service_subject(cluster: str, namespace: str, name: str) -> str:
    return f"clusters/{cluster}/namespaces/{namespace}/services/{name}"


def cluster_subject(cluster: str) -> str:
    return f"clusters/{cluster}"
