"""Emulator of the ARM API Management REST API (2024-05-01) for what aks-apim-sync calls.

Held to Microsoft's spec and examples (tests/fixtures/apim): resource shapes, ETag header, If-Match
(412), ARM error bodies, 404s, $top/$skip paging with nextLink, bearer token required (401). Where
recorded traffic from real APIM says more than the examples (issue 14), the recording wins: backend bodies
read back as sent with `title: null` and no invented defaults, deleting a missing backend is 204, a
named-value PUT answers 201 with only its provisioning state and the polling headers.
APIM's own rules are enforced: backend PUT needs protocol and url; ids are 1-80 characters.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from sandbox.apim_apis import ApiStore
from sandbox.apim_tiers import service_body
from sandbox.httpbase import JsonServer, Request, Response
from sandbox.throttling import REMAINING_HEADER, TokenBuckets, arm_operation_class
from sandbox.tls import TlsFiles

API_VERSION = "2024-05-01"
PAGE_SIZE = 100
_SERVICE = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ApiManagement/service/(?P<svc>[^/]+)"
_ENTITY_ID = re.compile(r"^[^*#&+:<>?/%\\]{1,80}$")


_SERVICE_PATH = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ApiManagement/service/[^/]+(?P<rest>(?:/.*)?)$"
)
_OPERATION_STATUS = re.compile(r"^/subscriptions/[^/]+/providers/Microsoft\.ApiManagement/locations/[^/]+/operationsStatuses/")


def arm_action(method: str, path: str) -> str | None:
    """The ARM action Azure RBAC checks for a request, built as ARM builds it: the provider, the resource types
    along the path (ids left out), and read/write/delete by method (POST: <name>/action)."""
    if _OPERATION_STATUS.match(path):
        return "Microsoft.ApiManagement/locations/operationsStatuses/read"
    match = _SERVICE_PATH.match(path)
    if match is None:
        return None
    segments = [s for s in match["rest"].split("/") if s]
    if segments[:2] == ["tenant", "operationResults"]:
        types = ["tenant", "operationResults"]
    elif segments[:2] == ["providers", "Microsoft.Authorization"]:
        return None  # the caller's own permissions: every principal may read them
    else:
        types = segments[0::2]
    if method == "POST":
        return "/".join(["Microsoft.ApiManagement/service", *types[:-1], segments[-1], "action"])
    verb = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}[method]
    return "/".join(["Microsoft.ApiManagement/service", *types, verb])


def _allowed(granted: list[str], denied: list[str], action: str) -> bool:
    def matches(patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)

    return matches(granted) and not matches(denied)


def arm_error(status: int, code: str, message: str, **headers: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message, "details": []}}, dict(headers))


class ApimEmulator(JsonServer):
    def __init__(self, *, tls: TlsFiles, token: str, subscription_id: str, resource_group: str, service_name: str) -> None:
        super().__init__(tls=tls, token=token, name="apim")
        self.subscription_id, self.resource_group, self.service_name = subscription_id, resource_group, service_name
        self.service_id = (
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{service_name}"
        )
        self._etags = itertools.count(1)
        self.backends: dict[str, dict[str, Any]] = {}
        self.named_values: dict[str, dict[str, Any]] = {}
        self.certificates: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.key_vault: Any = None
        """A sandbox.keyvault.KeyVaultEmulator: certificate entities that reference it present what it holds."""
        self.buckets = TokenBuckets()
        """ARM's request buckets: counting only (the remaining-quota headers) until throttle() enforces them."""
        self.granted_actions: list[str] = ["*"]
        self.not_actions: list[str] = []
        """The caller's effective Azure RBAC permissions on the service (actions, notActions): enforced on every
        request (403 AuthorizationFailed) and answered by Microsoft.Authorization/permissions."""
        self.principal_id = "00000000-0000-0000-0000-00000000a11c"
        self.default_tier = "Developer"
        """The tier reset() goes back to; the sandbox's --tier sets it."""
        self.tier = self.default_tier
        self.service = self._initial_service()
        self.route("GET", _SERVICE, self._get_service)
        self.route("GET", _SERVICE + r"/backends", self._list_backends)
        for method in ("GET", "HEAD", "PUT", "PATCH", "DELETE"):
            self.route(method, _SERVICE + r"/backends/(?P<id>[^/]+)", self._backend)
        self.api_side = ApiStore(self, arm_error)
        self.api_side.install(_SERVICE)
        self.route("GET", _SERVICE + r"/certificates", self._list_certificates)
        for method in ("GET", "HEAD", "PUT", "DELETE"):
            self.route(method, _SERVICE + r"/certificates/(?P<id>[^/]+)", self._certificate)
        self.route("GET", _SERVICE + r"/namedValues", self._list_named_values)
        for method in ("GET", "PUT", "DELETE"):
            self.route(method, _SERVICE + r"/namedValues/(?P<id>[^/]+)", self._named_value)
        self.route(
            "GET",
            r"/subscriptions/[^/]+/providers/Microsoft\.ApiManagement/locations/[^/]+/operationsStatuses/(?P<op>[^/]+)",
            self._operation,
        )
        self.route("GET", r"/operationResults/(?P<op>[^/]+)", self._operation_result)
        self.route("GET", _SERVICE + r"/tenant/operationResults/(?P<op>[^/]+)", self._operation)
        self.route("GET", _SERVICE + r"/providers/Microsoft\.Authorization/permissions", self._permissions)

    # -- throttling (sandbox.throttling) --------------------------------------------------------------------

    def admit(self, request: Request) -> Response | None:
        if arm_action(request.method, request.path) is None and "/operationResults/" not in request.path:
            return None
        wait = self.buckets.take(arm_operation_class(request.method))
        if wait is None:
            return None
        kind = {"reads": "Read", "writes": "Write", "deletes": "Delete"}[arm_operation_class(request.method)]
        message = (
            f"The request is being throttled as the limit has been reached for operation type - {kind}. "
            "For more information, see - https://aka.ms/srpthrottlinglimits"
        )
        return arm_error(429, "TooManyRequests", message, **{"Retry-After": self.buckets.retry_after_header(wait)})

    def decorate(self, request: Request, response: Response) -> Response:
        kind = arm_operation_class(request.method)
        response.headers[REMAINING_HEADER.format(kind=kind)] = str(self.buckets.remaining(kind))
        return response

    def throttle(self, *, time_scale: float = 1.0, enforce: bool = True) -> None:
        """ARM's buckets from now on (reset() puts back counting-only buckets at full)."""
        self.buckets = TokenBuckets(time_scale=time_scale, enforce=enforce)

    # -- Azure RBAC ----------------------------------------------------------------------------------------

    def forbidden(self, request: Request) -> Response | None:
        action = arm_action(request.method, request.path)
        if action is None or _allowed(self.granted_actions, self.not_actions, action):
            return None
        message = (
            f"The client '{self.principal_id}' with object id '{self.principal_id}' does not have authorization to "
            f"perform action '{action}' over scope '{self.service_id}' or the scope is invalid. If access was "
            "recently granted, please refresh your credentials."
        )
        return arm_error(403, "AuthorizationFailed", message)

    def _permissions(self, request: Request, match: re.Match[str]) -> Response:
        """GET <scope>/providers/Microsoft.Authorization/permissions (2022-04-01): the caller's effective
        permissions at the scope, one entry per role assignment; here one."""
        entry = {
            "actions": list(self.granted_actions),
            "notActions": list(self.not_actions),
            "dataActions": [],
            "notDataActions": [],
        }
        return Response(200, {"value": [entry]})

    # -- state the tests and the sandbox change directly -------------------------------------------------

    def _initial_service(self) -> dict[str, Any]:
        return service_body(self.tier, self.service_id, self.service_name, self._new_etag())

    def set_tier(self, tier: str) -> None:
        """Serve the service resource of another tier (sandbox.apim_tiers.TIERS), as ARM returns it."""
        with self.lock:
            self.tier = tier
            self.service = self._initial_service()

    def reset(self) -> None:
        with self.lock:
            self.backends.clear()
            self.certificates.clear()
            self.api_side.reset()
            self.named_values.clear()
            self.operations.clear()
            self.faults.clear()
            self.after_write.clear()
            self.log.clear()
            self.latency_seconds = 0.0
            self.tier = self.default_tier
            self.service = self._initial_service()
            self.granted_actions, self.not_actions = ["*"], []
            self.buckets = TokenBuckets()

    def put_named_value_directly(self, value_id: str, *, secret: bool = True) -> None:
        """Seed a named value as the platform team makes it (portal, Bicep): the Option 1 token, say."""
        with self.lock:
            self.named_values[value_id] = {
                "id": f"{self.service_id}/namedValues/{value_id}",
                "type": "Microsoft.ApiManagement/service/namedValues",
                "name": value_id,
                "properties": {"displayName": value_id, "tags": [], "secret": secret, "value": "sandbox-only"},
                "_etag": self._new_etag(),
            }

    def put_backend_directly(self, backend_id: str, properties: dict[str, Any]) -> None:
        """Seed a backend as if someone else had created it (portal, another tool)."""
        with self.lock:
            self.backends[backend_id] = self._stored_backend(backend_id, properties)

    def new_etag(self) -> str:
        return self._new_etag()

    def checked(self, request: Request, match: re.Match[str]) -> Response | None:
        return self._check(request, match)

    def paged(self, request: Request, items: list[dict[str, Any]], shown: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
        return self._paged(request, items, shown)

    def _new_etag(self) -> str:
        return f'"AAAAAAA{next(self._etags):05d}="'

    # -- resources -----------------------------------------------------------------------------------------

    def _check(self, request: Request, match: re.Match[str]) -> Response | None:
        version = request.query.get("api-version")
        if not version:
            return arm_error(
                400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests."
            )
        if version != API_VERSION:
            return arm_error(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions are '{API_VERSION}'.",
            )
        if (match["sub"], match["rg"].lower(), match["svc"].lower()) != (
            self.subscription_id,
            self.resource_group.lower(),
            self.service_name.lower(),
        ):
            return arm_error(
                404, "ResourceNotFound", f"The Resource 'Microsoft.ApiManagement/service/{match['svc']}' was not found."
            )
        return None

    def not_found(self, request: Request) -> Response:
        return arm_error(404, "NotFound", f"No route for {request.method} {request.path}")

    def unauthorized(self) -> Response:
        return arm_error(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or invalid.",
            **{"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common"'},
        )

    def _get_service(self, request: Request, match: re.Match[str]) -> Response:
        return self._check(request, match) or Response(200, copy.deepcopy(self.service), {"ETag": self.service["etag"]})

    def _paged(
        self, request: Request, items: list[dict[str, Any]], shown: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Response:
        skip = int(request.query.get("$skip") or 0)
        top = min(int(request.query.get("$top") or PAGE_SIZE), PAGE_SIZE)
        page = [shown(item) for item in items[skip : skip + top]]
        body: dict[str, Any] = {"value": page, "count": len(items)}
        if skip + top < len(items):
            kept = f"&$filter={quote(request.query['$filter'])}" if request.query.get("$filter") else ""
            body["nextLink"] = f"{self.url}{request.path}?api-version={API_VERSION}&$top={top}&$skip={skip + top}{kept}"
        return Response(200, body)

    # -- backends ------------------------------------------------------------------------------------------

    def _stored_backend(self, backend_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        # As real GET bodies are: what was sent, and `title: null` when none was; no server-invented `type` or
        # `tls` block (the app PUTs back what it read, so idempotence is tested against this body).
        stored = {"title": None, **copy.deepcopy(properties)}
        return {
            "id": f"{self.service_id}/backends/{backend_id}",
            "type": "Microsoft.ApiManagement/service/backends",
            "name": backend_id,
            "properties": stored,
            "_etag": self._new_etag(),
        }

    @staticmethod
    def _public(entity: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in entity.items() if not k.startswith("_")}

    def _list_backends(self, request: Request, match: re.Match[str]) -> Response:
        return self._check(request, match) or self._paged(request, [b for _, b in sorted(self.backends.items())], self._public)

    def _backend(self, request: Request, match: re.Match[str]) -> Response:
        problem = self._check(request, match)
        if problem:
            return problem
        backend_id = match["id"]
        existing = self.backends.get(backend_id)
        if_match = request.headers.get("if-match")
        if request.method in ("GET", "HEAD"):
            if existing is None:
                return arm_error(404, "ResourceNotFound", "Backend not found.")
            return Response(200, self._public(existing) if request.method == "GET" else None, {"ETag": existing["_etag"]})
        if request.method in ("PATCH", "DELETE") and not if_match:
            return arm_error(400, "InvalidRequest", "If-Match header is required.")
        if request.headers.get("if-none-match") == "*" and existing is not None and request.method == "PUT":
            # RFC 9110 13.1.2; that APIM honours it on backends is assumed (tests/emulators says so), and the
            # app re-reads and decides again on the 412 either way.
            return arm_error(412, "PreconditionFailed", "The entity already exists.")
        if request.method == "DELETE" and existing is None:
            return Response(204)  # real APIM: deleting a backend that is not there is 204 No Content
        if if_match and if_match != "*" and (existing is None or existing["_etag"] != if_match):
            return arm_error(412, "PreconditionFailed", "The entity has been modified since it was last retrieved.")
        if request.method == "DELETE":
            del self.backends[backend_id]
            return Response(200)
        if not _ENTITY_ID.match(backend_id):
            return arm_error(400, "ValidationError", "Backend identifier is not valid.")
        body = request.json() or {}
        properties = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(properties, dict):
            return arm_error(400, "ValidationError", "'properties' is required.")
        if request.method == "PATCH":
            if existing is None:
                return arm_error(404, "ResourceNotFound", "Backend not found.")
            properties = {**existing["properties"], **properties}
        missing = [name for name in ("url", "protocol") if not properties.get(name)]
        if missing:
            return arm_error(400, "ValidationError", f"One or more fields contain incorrect values: '{missing[0]}' is required.")
        if properties["protocol"] not in ("http", "soap"):
            return arm_error(400, "ValidationError", "Backend protocol must be 'http' or 'soap'.")
        for reference in (properties.get("credentials") or {}).get("certificateIds") or []:
            if str(reference).rsplit("/", 1)[-1] not in self.certificates:
                return arm_error(400, "ValidationError", f"Certificate '{reference}' not found.")
        stored = self._stored_backend(backend_id, properties)
        self.backends[backend_id] = stored
        return Response(200 if existing else 201, self._public(stored), {"ETag": stored["_etag"]})

    # -- certificates (PKCS#12 upload or a Key Vault reference; the PFX is kept as APIM keeps it) ----------

    def put_certificate_directly(self, certificate_id: str, properties: dict[str, Any]) -> None:
        """Seed a certificate entity as if someone else had uploaded it."""
        with self.lock:
            stored = self._stored_certificate(certificate_id, properties)
            assert not isinstance(stored, Response), stored.body
            self.certificates[certificate_id] = stored

    def certificate_pfx(self, certificate_id: str) -> tuple[bytes, str]:
        """What APIM holds for an uploaded certificate: the PFX and its password (it presents the key inside)."""
        with self.lock:
            stored = self.certificates[certificate_id]
            return stored["_pfx"], stored["_password"]

    def _list_certificates(self, request: Request, match: re.Match[str]) -> Response:
        found = [c for _, c in sorted(self.certificates.items())]
        return self._check(request, match) or self._paged(request, found, self._public)

    def _in_use_by(self, certificate_id: str) -> list[str]:
        suffix = f"/certificates/{certificate_id}".lower()
        return [
            backend_id
            for backend_id, backend in self.backends.items()
            if any(
                str(ref).lower().endswith(suffix)
                for ref in ((backend["properties"].get("credentials") or {}).get("certificateIds") or [])
            )
        ]

    def _certificate(self, request: Request, match: re.Match[str]) -> Response:
        problem = self._check(request, match)
        if problem:
            return problem
        certificate_id = match["id"]
        existing = self.certificates.get(certificate_id)
        if request.method in ("GET", "HEAD"):
            if existing is None:
                return arm_error(404, "ResourceNotFound", "Certificate not found.")
            return Response(200, self._public(existing) if request.method == "GET" else None, {"ETag": existing["_etag"]})
        if_match = request.headers.get("if-match")
        if request.method == "DELETE":
            if not if_match:
                return arm_error(400, "InvalidRequest", "If-Match header is required.")
            if existing is None:
                return arm_error(404, "ResourceNotFound", "Certificate not found.")
            if if_match != "*" and if_match != existing["_etag"]:
                return arm_error(412, "PreconditionFailed", "The entity has been modified since it was last retrieved.")
            users = self._in_use_by(certificate_id)
            if users:
                return arm_error(409, "Conflict", f"Certificate is in use by backend(s): {', '.join(users)}.")
            del self.certificates[certificate_id]
            return Response(200)
        if not _ENTITY_ID.match(certificate_id):
            return arm_error(400, "ValidationError", "Certificate identifier is not valid.")
        if if_match and if_match != "*" and (existing is None or existing["_etag"] != if_match):
            return arm_error(412, "PreconditionFailed", "The entity has been modified since it was last retrieved.")
        properties = (request.json() or {}).get("properties") or {}
        stored = self._stored_certificate(certificate_id, properties)
        if isinstance(stored, Response):
            return stored
        self.certificates[certificate_id] = stored
        return Response(200 if existing else 201, self._public(stored), {"ETag": stored["_etag"]})

    def _stored_certificate(self, certificate_id: str, properties: dict[str, Any]) -> dict[str, Any] | Response:
        import base64
        import hashlib

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.serialization import pkcs12

        shown: dict[str, Any]
        private: dict[str, Any] = {}
        key_vault = properties.get("keyVault")
        if key_vault:
            secret = str(key_vault.get("secretIdentifier") or "")
            if not secret.startswith("https://"):
                return arm_error(400, "ValidationError", "keyVault.secretIdentifier must be a Key Vault secret URL.")
            # With the Key Vault emulator the secret is read as APIM reads it (the version named, or the latest),
            # and that certificate is what the entity presents; otherwise the emulator makes one up.
            resolved = self._from_key_vault(secret)
            if isinstance(resolved, Response):
                return resolved
            thumbprint = hashlib.sha1(secret.encode(), usedforsecurity=False).hexdigest().upper()
            shown = {
                "subject": "CN=key-vault-certificate",
                "thumbprint": thumbprint,
                "expirationDate": "2099-01-01T00:00:00Z",
                "keyVault": {
                    "secretIdentifier": secret,
                    "identityClientId": key_vault.get("identityClientId"),
                    "lastStatus": {"code": "Success", "timeStampUtc": "2026-01-01T00:00:00Z"},
                },
            }
            if resolved is not None:
                cert, pfx = resolved
                shown.update(
                    subject=cert.subject.rfc4514_string(),
                    thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - APIM's thumbprint is SHA-1
                    expirationDate=cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                )
                private = {"_pfx": pfx, "_password": ""}
        else:
            data, password = properties.get("data"), properties.get("password")
            if not data:
                return arm_error(400, "ValidationError", "'data' or 'keyVault' is required.")
            try:
                pfx = base64.b64decode(data)
                _key, cert, _chain = pkcs12.load_key_and_certificates(pfx, (password or "").encode() or None)
            except ValueError:
                return arm_error(400, "ValidationError", "The certificate data or password is not valid.")
            if cert is None or _key is None:
                return arm_error(400, "ValidationError", "The PFX must hold a certificate and its private key.")
            shown = {
                "subject": cert.subject.rfc4514_string(),
                "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - APIM's thumbprint is SHA-1
                "expirationDate": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            }
            private = {"_pfx": pfx, "_password": password or ""}
        return {
            "id": f"{self.service_id}/certificates/{certificate_id}",
            "type": "Microsoft.ApiManagement/service/certificates",
            "name": certificate_id,
            "properties": shown,
            "_etag": self._new_etag(),
            **private,
        }

    def _from_key_vault(self, secret_url: str) -> tuple[Any, bytes] | Response | None:
        """The certificate (and a PFX of it, to present) that a Key Vault reference names, read from the Key Vault
        emulator when it serves that URL; a 400 as APIM answers when the secret is not there; None otherwise."""
        import base64

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs12

        found = self.key_vault.secret_value(secret_url) if self.key_vault is not None else None
        if self.key_vault is None or not secret_url.startswith(self.key_vault.url):
            return None
        if found is None:
            return arm_error(400, "ValidationError", f"Failed to access KeyVault Secret {secret_url}: SecretNotFound.")
        value, content_type = found
        if content_type == "application/x-pkcs12":
            key, cert, chain = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
        else:
            key = serialization.load_pem_private_key(value.encode(), None)
            certs = x509.load_pem_x509_certificates(value.encode())
            cert, chain = certs[0], certs[1:]
        assert cert is not None and key is not None
        pfx = pkcs12.serialize_key_and_certificates(b"kv", key, cert, chain or None, serialization.NoEncryption())  # type: ignore[arg-type]
        return cert, pfx

    # -- named values (a long-running PUT, as in the SDK's begin_create_or_update) -------------------------

    def _list_named_values(self, request: Request, match: re.Match[str]) -> Response:
        values = [v for _, v in sorted(self.named_values.items())]
        return self._check(request, match) or self._paged(request, values, self._public_named_value)

    @staticmethod
    def _public_named_value(entity: dict[str, Any]) -> dict[str, Any]:
        shown = ApimEmulator._public(entity)
        if shown["properties"].get("secret"):
            shown["properties"].pop("value", None)  # secret values are never returned by GET
        return shown

    def _named_value(self, request: Request, match: re.Match[str]) -> Response:
        problem = self._check(request, match)
        if problem:
            return problem
        value_id = match["id"]
        existing = self.named_values.get(value_id)
        if request.method == "GET":
            if existing is None:
                return arm_error(404, "ResourceNotFound", "Named value not found.")
            return Response(200, self._public_named_value(existing), {"ETag": existing["_etag"]})
        if request.method == "DELETE":
            if existing is None:
                return arm_error(404, "ResourceNotFound", "Named value not found.")
            del self.named_values[value_id]
            return Response(200)
        properties = (request.json() or {}).get("properties") or {}
        if not properties.get("displayName"):
            return arm_error(400, "ValidationError", "'displayName' is required.")
        entity = {
            "id": f"{self.service_id}/namedValues/{value_id}",
            "type": "Microsoft.ApiManagement/service/namedValues",
            "name": value_id,
            "properties": {"tags": [], "secret": False, **properties},
            "_etag": self._new_etag(),
        }
        operation = str(uuid.uuid4())
        self.operations[operation] = {"polls_left": 1, "result": entity, "target": ("namedValues", value_id)}
        status_url = (
            f"{self.url}/subscriptions/{self.subscription_id}/providers/Microsoft.ApiManagement/locations/westeurope/"
            f"operationsStatuses/{operation}?api-version={API_VERSION}"
        )
        headers = {
            "Azure-AsyncOperation": status_url,
            "Location": f"{self.url}/operationResults/{operation}?api-version={API_VERSION}",
            "Retry-After": "0",
        }
        # As recorded from real APIM: 201 whose body is only the provisioning state, with the polling headers;
        # the entity is there once the operation has succeeded.
        return Response(201, {"properties": {"ProvisioningState": "InProgress"}}, headers)

    def _operation(self, request: Request, match: re.Match[str]) -> Response:
        operation = self.operations.get(match["op"])
        if operation is None:
            return arm_error(404, "NotFound", "Operation not found.")
        if operation["polls_left"] > 0:
            operation["polls_left"] -= 1
            return Response(200, {"id": match["op"], "status": "InProgress"}, {"Retry-After": "0"})
        self._complete(operation)
        return Response(200, {"id": match["op"], "status": "Succeeded"})

    def _complete(self, operation: dict[str, Any]) -> None:
        if "then" in operation:
            operation.pop("then")()
            return
        _kind, entity_id = operation["target"]
        store: dict[str, Any] = operation.get("store", self.named_values)
        store[entity_id] = operation["result"]

    def _operation_result(self, request: Request, match: re.Match[str]) -> Response:
        operation = self.operations.get(match["op"])
        if operation is None:
            return arm_error(404, "NotFound", "Operation not found.")
        if operation["polls_left"] > 0:
            operation["polls_left"] -= 1
            return Response(202, None, {"Retry-After": "0", "Location": f"{self.url}{request.path}?api-version={API_VERSION}"})
        self._complete(operation)
        return Response(200, self._public_named_value(operation["result"]))
