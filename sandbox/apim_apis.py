"""The API side of the APIM emulator: APIs, operations, policies, tags and product links (2024-05-01).

As APIM answers them: API ids and paths are unique (a second API on a used path is a 400 ValidationError),
an API PUT without an import answers at once (as recorded; `async_api_puts` answers as the published example,
long-running), an API DELETE is 202 and polled under tenant/operationResults, operations need every
`{parameter}` of their URL template declared and read back with `templateParameters: []` and
`policies: null`, policies are stored re-serialised (rawxml keeps expressions), tags are assigned by PUT and
listed with /apisByTags, and an API is deleted with its operations.
"""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox.httpbase import Request, Response

if TYPE_CHECKING:
    from sandbox.apim import ApimEmulator

_API_ID = re.compile(r"^[^*#&+:<>?]{1,256}$")
_TEMPLATE_PARAMETER = re.compile(r"\{([^}]+)\}")


class ApiStore:
    def __init__(self, emulator: ApimEmulator, error: Callable[..., Response]) -> None:
        self.emulator = emulator
        self.error = error
        self.apis: dict[str, dict[str, Any]] = {}
        self.operations: dict[tuple[str, str], dict[str, Any]] = {}
        self.api_policies: dict[str, str] = {}
        self.operation_policies: dict[tuple[str, str], str] = {}
        self.tags: dict[str, dict[str, Any]] = {}
        self.api_tags: set[tuple[str, str]] = set()
        self.products: dict[str, dict[str, Any]] = {}
        self.product_apis: set[tuple[str, str]] = set()
        self.async_api_puts = False
        """True: API PUTs answer as Microsoft's published example (long-running); False: as recorded traffic."""

    def reset(self) -> None:
        for store in (self.apis, self.operations, self.api_policies, self.operation_policies, self.tags, self.products):
            store.clear()
        self.api_tags.clear()
        self.product_apis.clear()
        self.async_api_puts = False

    def install(self, service: str) -> None:
        route = self.emulator.route
        route("GET", service + r"/apis", self._list_apis)
        route("GET", service + r"/apisByTags", self._apis_by_tags)
        for method in ("GET", "PUT", "DELETE"):
            route(method, service + r"/apis/(?P<api>[^/]+)", self._api)
            route(method, service + r"/apis/(?P<api>[^/]+)/operations/(?P<op>[^/]+)", self._operation)
            route(method, service + r"/apis/(?P<api>[^/]+)/policies/policy", self._api_policy)
            route(method, service + r"/apis/(?P<api>[^/]+)/operations/(?P<op>[^/]+)/policies/policy", self._operation_policy)
            route(method, service + r"/tags/(?P<tag>[^/]+)", self._tag)
            route(method, service + r"/apis/(?P<api>[^/]+)/tags/(?P<tag>[^/]+)", self._api_tag)
            route(method, service + r"/products/(?P<product>[^/]+)", self._product)
            route(method, service + r"/products/(?P<product>[^/]+)/apis/(?P<api>[^/]+)", self._product_api)
        route("GET", service + r"/apis/(?P<api>[^/]+)/operations", self._list_operations)
        route("GET", service + r"/products", self._list_products)
        route("GET", service + r"/products/(?P<product>[^/]+)/apis", self._list_product_apis)
        route("HEAD", service + r"/products/(?P<product>[^/]+)/apis/(?P<api>[^/]+)", self._product_api)

    # -- helpers -------------------------------------------------------------------------------------------

    def _entity(self, kind: str, path: str, name: str, properties: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"{self.emulator.service_id}/{path}",
            "type": f"Microsoft.ApiManagement/service/{kind}",
            "name": name,
            "properties": properties,
            "_etag": self.emulator.new_etag(),
        }

    def _shown(self, entity: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in entity.items() if not k.startswith("_")}

    def _ok(self, entity: dict[str, Any], created: bool) -> Response:
        return Response(201 if created else 200, self._shown(entity), {"ETag": entity["_etag"]})

    # -- APIs ----------------------------------------------------------------------------------------------

    def _list_apis(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        found = [a for _, a in sorted(self.apis.items())]
        expression = request.query.get("$filter")
        if expression:
            keep = api_filter(expression)
            if keep is None:
                return self.error(400, "ValidationError", f"Invalid filter clause: {expression[:80]}")
            found = [a for a in found if keep(a)]
        return self.emulator.paged(request, found, self._shown)

    def _apis_by_tags(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        wanted = re.search(r"tag/name eq '([^']+)'", request.query.get("$filter", ""))
        rows = [
            {
                "tag": {"id": self.tags[tag_id]["id"], "name": self.tags[tag_id]["properties"]["displayName"]},
                "api": {
                    "id": self.apis[api_id]["id"],
                    "name": self.apis[api_id]["properties"]["displayName"],
                    "path": self.apis[api_id]["properties"]["path"],
                },
            }
            for api_id, tag_id in sorted(self.api_tags)
            if api_id in self.apis and (wanted is None or self.tags[tag_id]["properties"]["displayName"] == wanted[1])
        ]
        return self.emulator.paged(request, rows, lambda row: row)

    def _async_result(self, operation_id: str) -> Response:
        """The Location of an API delete (`?asyncId=...&asyncCode=200`): 202 while it runs, then its final answer."""
        operation = self.emulator.operations.get(operation_id)
        if operation is None:
            return self.error(404, "ResourceNotFound", "Operation not found.")
        if operation["polls_left"] > 0:
            operation["polls_left"] -= 1
            return Response(202, None, {"Retry-After": "0"})
        if "then" in operation:
            operation.pop("then")()
        return Response(200)

    def _remove_api(self, api_id: str) -> None:
        self.apis.pop(api_id, None)
        for key in [k for k in self.operations if k[0] == api_id]:
            del self.operations[key]
            self.operation_policies.pop(key, None)
        self.api_policies.pop(api_id, None)
        self.api_tags = {(a, t) for a, t in self.api_tags if a != api_id}
        self.product_apis = {(p, a) for p, a in self.product_apis if a != api_id}

    def _api(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        api_id = match["api"]
        existing = self.apis.get(api_id)
        if request.method == "GET" and request.query.get("asyncId"):
            return self._async_result(request.query["asyncId"])
        if request.method == "GET":
            return self._ok(existing, False) if existing else self.error(404, "ResourceNotFound", "Api not found.")
        if request.method == "DELETE":
            if existing is None:
                return Response(204)
            # As recorded from real APIM: 202 with an Azure-AsyncOperation under the service's
            # tenant/operationResults and a Location; the API is gone once the operation has succeeded.
            operation = uuid.uuid4().hex[:24]
            self.emulator.operations[operation] = {"polls_left": 1, "then": lambda: self._remove_api(api_id)}
            service = f"{self.emulator.url}{self.emulator.service_id}"
            headers = {
                "Azure-AsyncOperation": f"{service}/tenant/operationResults/{operation}?api-version=2024-05-01",
                "Location": f"{service}/apis/{api_id}?api-version=2024-05-01&asyncId={operation}&asyncCode=200",
                "Retry-After": "0",
            }
            return Response(202, None, headers)
        if not _API_ID.match(api_id):
            return self.error(400, "ValidationError", "API identifier is not valid.")
        if_match = request.headers.get("if-match")
        if existing is not None and if_match and if_match != "*" and if_match != existing["_etag"]:
            return self.error(412, "PreconditionFailed", "The entity has been modified since it was last retrieved.")
        properties = (request.json() or {}).get("properties") or {}
        path = properties.get("path")
        if path is None:
            return self.error(400, "ValidationError", "'path' is required.")
        if not properties.get("displayName"):
            return self.error(400, "ValidationError", "'displayName' is required.")
        wanted_path = str(path).strip("/")
        taken = [a for a, api in self.apis.items() if a != api_id and api["properties"]["path"].strip("/") == wanted_path]
        if taken:
            return self.error(
                400, "ValidationError", f"Cannot create API '{api_id}' with the same path '{path}' as API '{taken[0]}'."
            )
        stored = {
            "apiRevision": "1",
            "isCurrent": True,
            "subscriptionRequired": True,
            "protocols": ["https"],
            "type": "http",
            **(copy.deepcopy(existing["properties"]) if existing else {}),
            **properties,
        }
        entity = self._entity("apis", f"apis/{api_id}", api_id, stored)
        if not self.async_api_puts:
            # As recorded from real APIM: a PUT without an import (no format/value) answers at once and the API
            # is readable immediately; only an import is long-running.
            self.apis[api_id] = entity
            return Response(200 if existing else 201, self._shown(entity), {"ETag": entity["_etag"]})
        operation = str(uuid.uuid4())
        # As Microsoft's published example shows it (ApiManagementCreateApi.json): 201 with the entity and an
        # Azure-AsyncOperation to poll; the API is visible once the operation has succeeded.
        self.emulator.operations[operation] = {"polls_left": 1, "result": entity, "target": ("apis", api_id), "store": self.apis}
        base = self.emulator.url
        status_url = f"{base}{self.emulator.service_id}/tenant/operationResults/{operation}?api-version=2024-05-01"
        headers = {
            "Azure-AsyncOperation": status_url,
            "Location": f"{base}/operationResults/{operation}?api-version=2024-05-01",
            "Retry-After": "0",
            "ETag": entity["_etag"],
        }
        return Response(200 if existing else 201, self._shown(entity), headers)

    # -- operations ----------------------------------------------------------------------------------------

    def _list_operations(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        if match["api"] not in self.apis:
            return self.error(404, "ResourceNotFound", "Api not found.")
        # Filtered, then sorted: an API's operations cost what they are, not what every API's are (a real
        # APIM's answer does not slow down with the size of the service; the emulator should not either).
        found = [o for _, o in sorted((k, o) for k, o in self.operations.items() if k[0] == match["api"])]
        return self.emulator.paged(request, found, self._shown)

    def _operation(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        key = (match["api"], match["op"])
        if match["api"] not in self.apis:
            return self.error(404, "ResourceNotFound", "Api not found.")
        existing = self.operations.get(key)
        if request.method == "GET":
            return self._ok(existing, False) if existing else self.error(404, "ResourceNotFound", "Operation not found.")
        if request.method == "DELETE":
            self.operations.pop(key, None)
            self.operation_policies.pop(key, None)
            return Response(200 if existing else 204)
        properties = (request.json() or {}).get("properties") or {}
        for name in ("displayName", "method", "urlTemplate"):
            if not properties.get(name):
                return self.error(400, "ValidationError", f"'{name}' is required.")
        declared = {p.get("name") for p in properties.get("templateParameters") or []}
        missing = [p for p in _TEMPLATE_PARAMETER.findall(properties["urlTemplate"]) if p not in declared]
        if missing:
            return self.error(400, "ValidationError", f"Template parameter '{missing[0]}' is not defined in templateParameters.")
        stored = {"templateParameters": [], "policies": None, **copy.deepcopy(properties)}  # real bodies' defaults
        entity = self._entity("apis/operations", f"apis/{key[0]}/operations/{key[1]}", key[1], stored)
        self.operations[key] = entity
        return self._ok(entity, existing is None)

    # -- policies ------------------------------------------------------------------------------------------

    def _policy(self, request: Request, match: re.Match[str], store: dict[Any, str], key: Any, path: str) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        if request.method == "GET":
            if key not in store:
                return self.error(404, "ResourceNotFound", "Policy not found.")
            kind = "Microsoft.ApiManagement/service/apis/policies"
            body = {"id": f"{self.emulator.service_id}/{path}", "type": kind, "name": "policy"}
            return Response(
                200, {**body, "properties": {"format": "rawxml", "value": store[key]}}, {"ETag": _etag_of(store[key])}
            )
        if request.method == "DELETE":
            store.pop(key, None)
            return Response(200)
        if_match = request.headers.get("if-match")
        if if_match and if_match != "*" and (key not in store or _etag_of(store[key]) != if_match):
            # Real APIM answers a stale If-Match on a policy PUT with 412 as on any entity.
            return self.error(412, "PreconditionFailed", "The entity has been modified since it was last retrieved.")
        properties = (request.json() or {}).get("properties") or {}
        value = properties.get("value") or ""
        policy_format = properties.get("format") or "xml"
        if policy_format not in ("xml", "rawxml"):
            return self.error(400, "ValidationError", f"Policy format '{policy_format}' is not supported here.")
        # xml: expressions must be escaped; rawxml: APIM takes them as written (`@(a < b)` is not well-formed XML).
        checked = _without_expressions(value) if policy_format == "rawxml" else value
        try:
            ET.fromstring(checked)  # noqa: S314 - our own test input
        except ET.ParseError as exc:
            return self.error(400, "ValidationError", f"The policy is not valid XML: {exc}")
        created = key not in store
        value = _as_apim_stores_it(value)
        store[key] = value
        shown = {
            "id": f"{self.emulator.service_id}/{path}",
            "type": "Microsoft.ApiManagement/service/apis/policies",
            "name": "policy",
            "properties": {"format": "rawxml", "value": value},
        }
        return Response(201 if created else 200, shown, {"ETag": _etag_of(value)})

    def _api_policy(self, request: Request, match: re.Match[str]) -> Response:
        if match["api"] not in self.apis:
            return self.error(404, "ResourceNotFound", "Api not found.")
        return self._policy(request, match, self.api_policies, match["api"], f"apis/{match['api']}/policies/policy")

    def _operation_policy(self, request: Request, match: re.Match[str]) -> Response:
        key = (match["api"], match["op"])
        if key not in self.operations:
            return self.error(404, "ResourceNotFound", "Operation not found.")
        path = f"apis/{key[0]}/operations/{key[1]}/policies/policy"
        return self._policy(request, match, self.operation_policies, key, path)  # type: ignore[arg-type]

    # -- tags and products ---------------------------------------------------------------------------------

    def _tag(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        tag_id = match["tag"]
        existing = self.tags.get(tag_id)
        if request.method == "GET":
            return self._ok(existing, False) if existing else self.error(404, "ResourceNotFound", "Tag not found.")
        if request.method == "DELETE":
            self.tags.pop(tag_id, None)
            return Response(200)
        properties = (request.json() or {}).get("properties") or {}
        if not properties.get("displayName"):
            return self.error(400, "ValidationError", "'displayName' is required.")
        entity = self._entity("tags", f"tags/{tag_id}", tag_id, {"displayName": properties["displayName"]})
        self.tags[tag_id] = entity
        return self._ok(entity, existing is None)

    def _api_tag(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        key = (match["api"], match["tag"])
        if match["api"] not in self.apis or match["tag"] not in self.tags:
            return self.error(404, "ResourceNotFound", "Api or tag not found.")
        if request.method == "GET":
            if key not in self.api_tags:
                return self.error(404, "ResourceNotFound", "Tag not assigned.")
            return self._ok(self.tags[key[1]], False)
        if request.method == "DELETE":
            self.api_tags.discard(key)
            return Response(200)
        created = key not in self.api_tags
        self.api_tags.add(key)
        return self._ok(self.tags[key[1]], created)

    def _product(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        product_id = match["product"]
        existing = self.products.get(product_id)
        if request.method == "GET":
            return self._ok(existing, False) if existing else self.error(404, "ResourceNotFound", "Product not found.")
        if request.method == "DELETE":
            self.products.pop(product_id, None)
            return Response(200)
        properties = (request.json() or {}).get("properties") or {}
        if not properties.get("displayName"):
            return self.error(400, "ValidationError", "'displayName' is required.")
        stored = {"subscriptionRequired": True, "approvalRequired": False, "state": "notPublished", **properties}
        entity = self._entity("products", f"products/{product_id}", product_id, stored)
        self.products[product_id] = entity
        return self._ok(entity, existing is None)

    def _list_products(self, request: Request, match: re.Match[str]) -> Response:
        found = [p for _, p in sorted(self.products.items())]
        return self.emulator.checked(request, match) or self.emulator.paged(request, found, self._shown)

    def _list_product_apis(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        found = [self.apis[a] for p, a in sorted(k for k in self.product_apis if k[0] == match["product"]) if a in self.apis]
        return self.emulator.paged(request, found, self._shown)

    def _product_api(self, request: Request, match: re.Match[str]) -> Response:
        problem = self.emulator.checked(request, match)
        if problem:
            return problem
        key = (match["product"], match["api"])
        if match["product"] not in self.products:
            return self.error(404, "ResourceNotFound", "Product not found.")
        if match["api"] not in self.apis:
            return self.error(404, "ResourceNotFound", "Api not found.")
        if request.method in ("GET", "HEAD"):
            return Response(204) if key in self.product_apis else self.error(404, "ResourceNotFound", "Api not in product.")
        if request.method == "DELETE":
            self.product_apis.discard(key)
            return Response(200)
        created = key not in self.product_apis
        self.product_apis.add(key)
        return self._ok(self.apis[match["api"]], created)


def _etag_of(policy: str) -> str:
    """A policy's ETag changes with its content, as APIM's does."""
    return '"' + hashlib.sha256(policy.encode()).hexdigest()[:16] + '"'


def _without_expressions(policy: str) -> str:
    """The policy with every @(...) and @{...} policy expression (balanced) taken out, for the XML check."""
    out: list[str] = []
    i = 0
    while i < len(policy):
        if policy[i] == "@" and i + 1 < len(policy) and policy[i + 1] in "({":
            opening = policy[i + 1]
            closing = ")" if opening == "(" else "}"
            depth, j = 0, i + 1
            while j < len(policy):
                depth += {opening: 1, closing: -1}.get(policy[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append("x")
            i = j + 1
            continue
        out.append(policy[i])
        i += 1
    return "".join(out)


def _as_apim_stores_it(policy: str) -> str:
    """APIM returns a policy re-serialised: each element on its own line (CRLF), tab-indented by depth. The app
    must never count that as a change; storing it so here makes the tests see what production sees."""
    lines: list[str] = []
    depth = 0
    for piece in re.findall(r"<[^<>]*(?:<[^<>]*>[^<>]*)*>|[^<]+", policy):
        text = piece.strip()
        if not text:
            continue
        closing = text.startswith("</")
        if closing:
            depth = max(depth - 1, 0)
        lines.append("\t" * depth + text)
        if text.startswith("<") and not closing and not text.endswith("/>") and not text.startswith("<!--"):
            depth += 1
    return "\r\n".join(lines)


_FILTER_TERM = re.compile(
    r"^(?:(?P<field>name|path) eq '(?P<equal>[^']*)'|(?P<function>startswith|endswith|contains)"
    r"\((?P<on>path|description|name),\s*'(?P<value>[^']*)'\))$"
)


def api_filter(expression: str) -> Callable[[dict[str, Any]], bool] | None:
    """The OData $filter of APIM's API list, as far as the app uses it: `eq` on name and path, startswith,
    endswith and contains on path, name and description, joined by `or` (APIM documents these fields and
    functions for this list). Anything else: None, which the list answers with 400 as APIM does."""
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for term in expression.split(" or "):
        matched = _FILTER_TERM.match(term.strip())
        if matched is None:
            return None
        if matched["field"]:
            tests.append(_term(matched["field"], "eq", matched["equal"]))
        else:
            tests.append(_term(matched["on"], matched["function"], matched["value"]))
    return lambda api: any(test(api) for test in tests)


def _term(field: str, operator: str, wanted: str) -> Callable[[dict[str, Any]], bool]:
    def test(api: dict[str, Any]) -> bool:
        held = _field(api, field)
        return {
            "eq": held == wanted,
            "startswith": held.startswith(wanted),
            "endswith": held.endswith(wanted),
            "contains": wanted in held,
        }[operator]

    return test


def _field(api: dict[str, Any], name: str) -> str:
    return str(api["name"] if name == "name" else api["properties"].get(name) or "")
