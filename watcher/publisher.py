"""Publish watcher messages as CloudEvents with azure-eventgrid's EventGridPublisherClient; the only SDK user here."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.eventgrid import EventGridPublisherClient

from shared.core import watcher_events as fmt
from watcher.outbox import ClusterResync, Message, TrustChanged

# With per-send options the SDK also offers them to its CloudEvent model, which warns that each is "not a
# known attribute" on every send; the options still reach the transport, so the warning is only noise.
logging.getLogger("azure.eventgrid._legacy._generated._serialization").setLevel(logging.ERROR)


def cloud_event(message: Message, *, cluster: str, source: str) -> dict[str, Any]:
    """A CloudEvent 1.0 in its JSON form, which EventGridPublisherClient.send accepts as it is."""
    data: dict[str, Any]
    if isinstance(message, ClusterResync):
        subject, kind, data = fmt.cluster_subject(cluster), fmt.CLUSTER_RESYNC, {fmt.DATA_WHY: message.why}
    elif isinstance(message, TrustChanged):
        subject, kind, data = fmt.cluster_subject(cluster), fmt.TRUST_CHANGED, {fmt.DATA_WHY: message.why}
    else:
        subject = fmt.service_subject(cluster, message.namespace, message.name)
        kind, data = fmt.SERVICE_CHANGED, {}
        if message.backend_ids:
            data[fmt.DATA_BACKEND_IDS] = sorted(message.backend_ids)
        if message.api_ids:
            data[fmt.DATA_API_IDS] = sorted(message.api_ids)
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": kind,
        "subject": subject,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


class TopicPublisher:
    def __init__(
        self,
        endpoint: str,
        credential: AzureKeyCredential | TokenCredential,
        *,
        cluster: str,
        source: str,
        ca_bundle: str | None = None,
    ) -> None:
        self._client = EventGridPublisherClient(endpoint, credential)
        # azure-eventgrid 4.22 drops constructor options for basic (non-namespace) topics, so they go with each
        # send.
        # The Outbox is the retry loop; the SDK's own would hold a batch for minutes.
        self._options: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": 10,
            "read_timeout": 30,
            "connection_verify": ca_bundle or True,
        }
        self._cluster, self._source = cluster, source

    def __call__(self, messages: Sequence[Message]) -> None:
        events = [cloud_event(m, cluster=self._cluster, source=self._source) for m in messages]
        self._client.send(events, **self._options)

    def close(self) -> None:
        self._client.close()
