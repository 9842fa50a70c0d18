"""APIM through azure-mgmt-apimanagement; the only module that imports it.

`ApimSink` serves the backend, certificate and service roles; `ApimApis` (shared.adapters.apim_apis)
serves the API role over the same client. Errors are translated by shared.adapters.azure_errors. The SDK's
retry policy is off: shared.runtime.retry is the only retry loop.
"""

from __future__ import annotations

import io
import json
import sys
from contextlib import suppress
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.apimanagement import ApiManagementClient

from shared.adapters.apim_apis import ApimApis
from shared.adapters.azure_errors import arm
from shared.core import errors, ownership
from shared.core.model import BackendId, BackendSpec, DesiredBackend, ObservedBackend, OwnerId, normalise_headers
from shared.core.settings import ApimSettings
from shared.runtime.counters import RequestCounter
from shared.runtime.pacing import Pacer, operation_class, pacer_for


class _Pace(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Each request waits for its token (shared.runtime.pacing); each answer corrects the model: the
    remaining-quota header, and a 429's Retry-After."""

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        self._pacer.acquire(operation_class(request.http_request.method))

    def on_response(self, request: PipelineRequest, response: Any) -> None:  # type: ignore[type-arg]
        kind = operation_class(request.http_request.method)
        headers = response.http_response.headers
        remaining = headers.get(f"x-ms-ratelimit-remaining-subscription-global-{kind}")
        with suppress(ValueError):
            if remaining is not None:
                self._pacer.observe(kind, float(remaining))
        if response.http_response.status_code == 429:
            retry_after: float | None = None
            with suppress(TypeError, ValueError):
                retry_after = float(headers.get("Retry-After"))
            self._pacer.throttled(kind, retry_after)


class _CountRequests(SansIOHTTPPolicy):  # type: ignore[type-arg]
    def __init__(self, counter: RequestCounter) -> None:
        self._counter = counter

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        self._counter.add("arm", request.http_request.method)

    def on_response(self, request: PipelineRequest, response: Any) -> None:  # type: ignore[type-arg]
        if response.http_response.status_code == 429:
            self._counter.throttled("arm")


def observed_from_json(
    backend_id: str, properties: dict[str, Any], etag: str | None, *, keep_properties: bool = True
) -> ObservedBackend:
    """`keep_properties`: False for a listed backend, which is never the base of a write (see ObservedBackend)."""
    credentials = properties.get("credentials") or {}
    spec = BackendSpec(
        url=properties.get("url") or "",
        description=properties.get("description") or "",
        title=properties.get("title") or "",
        protocol=sys.intern(properties.get("protocol") or ""),
        headers=normalise_headers(credentials.get("header")),
    )
    return ObservedBackend(
        id=BackendId(backend_id),
        spec=spec,
        mark=ownership.parse_mark(properties.get("description")),
        etag=etag,
        raw_properties=properties if keep_properties else {},
        certificate_ids=tuple(str(ref).rsplit("/", 1)[-1].lower() for ref in credentials.get("certificateIds") or ()),
    )


def body_for(desired: DesiredBackend, base: ObservedBackend | None) -> dict[str, Any]:
    """The PUT body: what APIM holds, with the managed fields laid over it (a PUT replaces the entity)."""
    properties: dict[str, Any] = json.loads(json.dumps(dict(base.raw_properties))) if base else {}
    spec = desired.spec
    properties.update(url=spec.url, protocol=spec.protocol, description=spec.description)
    if spec.title:
        properties["title"] = spec.title
    else:
        properties.pop("title", None)
    credentials = dict(properties.get("credentials") or {})
    if spec.headers:
        credentials["header"] = {name: list(values) for name, values in spec.headers}
    else:
        credentials.pop("header", None)
    if credentials:
        properties["credentials"] = credentials
    else:
        properties.pop("credentials", None)
    return {"properties": properties}


class ApimSink:
    def __init__(
        self, settings: ApimSettings, credential: TokenCredential, *, counter: RequestCounter, ca_bundle: str | None = None
    ) -> None:
        self._settings = settings
        self._client = ApiManagementClient(
            credential,
            settings.subscription_id,
            base_url=settings.arm_endpoint,
            credential_scopes=[settings.arm_scope],
            retry_total=0,
            connection_timeout=10,
            read_timeout=30,
            connection_verify=ca_bundle or True,
            per_retry_policies=[
                _Pace(
                    pacer_for(
                        settings.arm_endpoint,
                        settings.subscription_id,
                        share=settings.budget_share,
                        time_scale=settings.pacing_time_scale,
                    )
                ),
                _CountRequests(counter),
            ],
        )
        self._where = (settings.resource_group, settings.service_name)

    def list_backends(self) -> dict[BackendId, ObservedBackend]:
        found: dict[BackendId, ObservedBackend] = {}

        with arm("list backends"):
            for item in self._client.backend.list_by_service(*self._where):
                raw = item.serialize(keep_readonly=True)
                observed = observed_from_json(item.name or "", raw.get("properties", {}), etag=None, keep_properties=False)
                found[observed.id] = observed
        return found

    def get_backend(self, backend_id: BackendId) -> ObservedBackend | None:
        def raw_with_etag(pipeline_response: Any, _model: Any, headers: dict[str, str]) -> tuple[dict[str, Any], str]:
            return pipeline_response.http_response.json(), headers.get("ETag", "")

        body: dict[str, Any]
        etag: str
        try:
            with arm(f"backend {backend_id}"):
                body, etag = self._client.backend.get(*self._where, backend_id, cls=raw_with_etag)  # type: ignore[misc]
        except errors.NotFound:
            return None
        return observed_from_json(backend_id, body.get("properties", {}), etag=etag)

    def get_service(self) -> dict[str, Any]:
        """The APIM service resource as ARM returns it (addresses, VNet type, SKU, provisioning state)."""

        def raw(pipeline_response: Any, _model: Any, _headers: dict[str, str]) -> dict[str, Any]:
            body: dict[str, Any] = pipeline_response.http_response.json()
            return body

        with arm(f"APIM service {self._settings.service_name}"):
            return self._client.api_management_service.get(*self._where, cls=raw)  # type: ignore[return-value]

    def named_value_exists(self, name: str) -> bool:
        try:
            with arm(f"named value {name}"):
                self._client.named_value.get(*self._where, name)
        except errors.NotFound:
            return False
        return True

    def effective_permissions(self) -> tuple[list[str], list[str]]:
        """(actions, notActions) the caller holds on the APIM service, from ARM's Microsoft.Authorization/permissions
        for that scope (every role assignment's entry together)."""
        from azure.core.rest import HttpRequest

        scope = (
            f"/subscriptions/{self._settings.subscription_id}/resourceGroups/{self._settings.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self._settings.service_name}"
        )
        request = HttpRequest("GET", f"{scope}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01")
        with arm("list the identity's permissions on the APIM service"):
            # This SDK generation names it _send_request; it runs the request through the client's own pipeline.
            response = self._client._send_request(request)
            response.raise_for_status()
        actions: list[str] = []
        not_actions: list[str] = []
        for entry in response.json().get("value") or []:
            actions += entry.get("actions") or []
            not_actions += entry.get("notActions") or []
        return actions, not_actions

    def api_store(self) -> ApimApis:
        """APIs, operations, policies, tags and products, through the same client."""
        return ApimApis(self._client, self._where)

    def list_certificates(self) -> list[dict[str, Any]]:
        """Every certificate entity, as ARM returns it (id, name, properties.expirationDate, thumbprint...)."""
        found: list[dict[str, Any]] = []
        with arm("list certificates"):
            for item in self._client.certificate.list_by_service(*self._where):
                found.append(dict(item.serialize(keep_readonly=True)))
        return found

    def put_certificate(self, certificate_id: str, properties: dict[str, Any]) -> str:
        """Create or replace a certificate entity (PFX + password, or a Key Vault reference); returns its resource id."""
        body = io.BytesIO(json.dumps({"properties": properties}).encode())
        with arm(f"certificate {certificate_id}"):
            created = self._client.certificate.create_or_update(
                *self._where, certificate_id, body, content_type="application/json"
            )
        return str(created.id or "")

    def delete_certificate(self, certificate_id: str) -> None:
        with suppress(errors.NotFound), arm(f"certificate {certificate_id}"):
            self._client.certificate.delete(*self._where, certificate_id, if_match="*")

    def set_backend_certificates(self, backend_id: BackendId, certificate_ids: list[str], *, owner: str) -> bool:
        """Point an owned backend's credentials.certificateIds at these entities (If-Match); False if not ours any more."""
        observed = self.get_backend(backend_id)
        if observed is None or not ownership.is_owned(observed.mark, OwnerId(owner)):
            return False
        properties: dict[str, Any] = json.loads(json.dumps(dict(observed.raw_properties)))
        credentials = dict(properties.get("credentials") or {})
        if [str(c).lower() for c in credentials.get("certificateIds") or []] == [c.lower() for c in certificate_ids]:
            return True
        credentials["certificateIds"] = certificate_ids
        properties["credentials"] = credentials
        body = io.BytesIO(json.dumps({"properties": properties}).encode())
        with arm(f"backend {backend_id}"):
            self._client.backend.create_or_update(
                *self._where, backend_id, body, if_match=observed.etag, content_type="application/json"
            )
        return True

    def put_backend(self, desired: DesiredBackend, *, base: ObservedBackend | None) -> None:
        body = io.BytesIO(json.dumps(body_for(desired, base)).encode())
        # A create must never overwrite a backend someone made between our read and this write.
        precondition = {"if_match": base.etag} if base else {"headers": {"If-None-Match": "*"}}
        with arm(f"backend {desired.id}"):
            self._client.backend.create_or_update(*self._where, desired.id, body, content_type="application/json", **precondition)

    def delete_backend(self, backend_id: BackendId, *, etag: str | None) -> None:
        with suppress(errors.NotFound), arm(f"backend {backend_id}"):
            self._client.backend.delete(*self._where, backend_id, if_match=etag or "*")
