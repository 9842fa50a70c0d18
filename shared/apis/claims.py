"""APIs from Services: read the api-* annotations, group Services into APIs, and plan what APIM must hold.

Pure. One Service without `operations` is the API's default backend (one Service = one API); Services that
name operations are aggregated into one API, each operation routed to its own backend. Services form an
API within one namespace. Conflicts are reported and the conflicting part is left as it is:

    conflict                                              held
    ----------------------------------------------------  -----------------------------------------
    two Services claim one operation of an API            that operation
    two default backends (Services without operations)    the whole API
    different api-path / subscription-required values     the whole API
    one api-id claimed from two namespaces                the whole API
    api-path (or id) used by an API this deployment       the whole API (refused, never overwritten)
      does not own
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from shared.core.annotations import Keys
from shared.core.model import BackendId, OwnerId, Reason, ServiceRef, ServiceView

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
WILDCARD_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BLOCK_BEGIN = "<!-- aks-apim-sync:begin -->"
BLOCK_END = "<!-- aks-apim-sync:end -->"
_API_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_PATH = re.compile(r"^[A-Za-z0-9._~/-]{0,400}$")
_OPERATION = re.compile(r"^\s*([A-Za-z]+)\s+(/\S*)\s*$")
MAX_DISPLAY_NAME = 300
_URL_TEMPLATE = re.compile(r"^/(?:[A-Za-z0-9._~%/-]|\{[A-Za-z0-9_.-]+\})*\*?$")
"""One character or one {parameter} at a time: no nested repetition, so no input can make it backtrack."""
_TEMPLATE_PARAMETER = re.compile(r"\{([A-Za-z0-9_.-]+)\}")
EMPTY_POLICY = (
    "<policies><inbound><base /></inbound><backend><base /></backend>"
    "<outbound><base /></outbound><on-error><base /></on-error></policies>"
)
_MARK = re.compile(r"managed-by=aks-apim-sync; owner=(?P<owner>[^;]+); namespace=(?P<namespace>[^;\s]+)")


@dataclass(frozen=True, slots=True)
class ApiClaim:
    """What one Service's annotations ask of one API."""

    source: ServiceRef
    api_id: str
    path: str
    display_name: str
    subscription_required: bool
    products: tuple[str, ...]
    backend_id: BackendId
    operations: tuple[tuple[str, str], ...] | None
    """(method, URL template) pairs; None: the whole API (default backend)."""
    audience: str | None = None
    """Option 1 with APIM's managed identity: the audience of the Entra token APIM sends to this backend."""


@dataclass(frozen=True, slots=True)
class ApiProblem:
    object: str
    field: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class DesiredOperation:
    id: str
    method: str
    url_template: str
    backend_id: BackendId | None
    """None: routed by the API-level policy (the default backend's wildcard operations)."""
    source: ServiceRef
    audience: str | None = None

    @property
    def display_name(self) -> str:
        return f"{self.method} {self.url_template}"


@dataclass(frozen=True, slots=True)
class DesiredApi:
    id: str
    namespace: str
    path: str
    display_name: str
    subscription_required: bool
    products: tuple[str, ...]
    default_backend: BackendId | None
    operations: tuple[DesiredOperation, ...]
    held_operations: frozenset[str] = frozenset()
    """Operation ids in conflict: left as they are."""
    default_audience: str | None = None


@dataclass(frozen=True, slots=True)
class DesiredApis:
    apis: Mapping[str, DesiredApi]
    held: frozenset[str]
    """API ids whose claims conflict: nothing about them changes this run."""
    problems: tuple[ApiProblem, ...]


@dataclass(frozen=True, slots=True)
class ObservedOperation:
    id: str
    method: str
    url_template: str
    description: str
    policy: str | None
    policy_etag: str | None = None


@dataclass(frozen=True, slots=True)
class ObservedApi:
    id: str
    path: str
    display_name: str
    subscription_required: bool
    description: str
    tagged: bool
    policy: str | None
    operations: Mapping[str, ObservedOperation] = field(default_factory=dict)
    products: frozenset[str] = frozenset()
    raw_properties: Mapping[str, Any] = field(default_factory=dict, compare=False)
    etag: str | None = None
    policy_etag: str | None = None


# -- annotations ---------------------------------------------------------------------------------------


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:59] + "…"


def parse_operations(text: str) -> list[tuple[str, str]]:
    """'GET /orders/{id}, POST /orders' -> [('GET', '/orders/{id}'), ('POST', '/orders')]; ValueError names the bad part."""
    found: list[tuple[str, str]] = []
    for part in (p for p in text.split(",") if p.strip()):
        matched = _OPERATION.match(part)
        if matched is None or matched[1].upper() not in METHODS:
            raise ValueError(f"'{_shown(part.strip())}' is not '<METHOD> /path' (methods: {', '.join(METHODS)})")
        template = matched[2]
        if not _URL_TEMPLATE.match(template):
            raise ValueError(f"'{_shown(template)}' is not a URL template: /segments, {{parameters}} and a final /*")
        found.append((matched[1].upper(), template))
    if not found:
        raise ValueError("lists no operation")
    return found


def claim_for(service: ServiceView, backend_id: BackendId, cluster: str, prefix: str) -> ApiClaim | ApiProblem | None:
    annotations, key = service.annotations, Keys(prefix)
    api_id = annotations.get(key.api_id, "").strip()
    if not api_id:
        return None
    ref = ServiceRef(cluster, service.namespace, service.name)

    def problem(annotation: str, message: str) -> ApiProblem:
        return ApiProblem(str(ref), annotation, Reason.INVALID_ANNOTATION, message)

    if not _API_ID.match(api_id):
        return problem(key.api_id, f"'{_shown(api_id)}' must be 1-80 letters, digits, '.', '_' or '-'")
    path = annotations.get(key.api_path, api_id).strip().strip("/")
    if not _PATH.match(path):
        return problem(key.api_path, f"'{_shown(path)}' is not a URL path")
    required_text = annotations.get(key.subscription_required, "true").strip().lower()
    if required_text not in ("true", "false"):
        return problem(key.subscription_required, f"'{_shown(required_text)}' is not true or false")
    products = tuple(sorted({p.strip() for p in annotations.get(key.products, "").split(",") if p.strip()}))
    bad_product = next((p for p in products if not _API_ID.match(p)), None)
    if bad_product:
        return problem(key.products, f"'{_shown(bad_product)}' is not a product id")
    display_name = annotations.get(key.api_display_name, "").strip()
    if len(display_name) > MAX_DISPLAY_NAME:
        return problem(key.api_display_name, f"longer than {MAX_DISPLAY_NAME} characters (APIM's limit)")
    operations: tuple[tuple[str, str], ...] | None = None
    text = annotations.get(key.operations)
    if text is not None:
        try:
            operations = tuple(parse_operations(text))
        except ValueError as error:
            return problem(key.operations, str(error))
    return ApiClaim(
        source=ref,
        api_id=api_id,
        path=path,
        display_name=display_name or api_id,
        subscription_required=required_text == "true",
        products=products,
        backend_id=backend_id,
        operations=operations,
    )


def operations_from_openapi(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every operation of an OpenAPI 2/3 document; ValueError when there is none."""
    paths = document.get("paths")
    if not isinstance(paths, Mapping):
        raise ValueError("the document has no 'paths' object")
    found = [
        (str(method).upper(), str(path))
        for path, item in paths.items()
        if isinstance(item, Mapping)
        for method in item
        if str(method).upper() in METHODS
    ]
    for _, template in found:
        if not _URL_TEMPLATE.match(template):
            raise ValueError(f"path '{_shown(template)}' is not a URL template: /segments, {{parameters}} and a final /*")
    if not found:
        raise ValueError("the document's 'paths' hold no operation")
    return sorted(found)


def operations_from_text(text: str) -> list[tuple[str, str]]:
    """The operations of an OpenAPI document in JSON or YAML; ValueError (with a short reason) for anything that
    is not one, however it is broken (nesting too deep for the parser included)."""
    try:
        document = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as error:
        raise ValueError(str(error)[:200] or type(error).__name__) from None
    return operations_from_openapi(document if isinstance(document, dict) else {})


def operation_id(method: str, template: str) -> str:
    readable = re.sub(r"[^a-z0-9]+", "-", f"{method} {template}".lower().replace("*", "all")).strip("-")
    return readable[:80] or method.lower()


# -- grouping ------------------------------------------------------------------------------------------


def collect_apis(claims: Iterable[ApiClaim], *, owner_namespaces: Mapping[str, str] | None = None) -> DesiredApis:
    """`owner_namespaces`: api id -> the namespace in the owner mark of an API this deployment made. An API
    belongs to that namespace: claims from any other are refused and change nothing, in every scope."""
    owner_namespaces = owner_namespaces or {}
    by_api: dict[str, list[ApiClaim]] = {}
    problems: list[ApiProblem] = []
    for claim in claims:
        owner = owner_namespaces.get(claim.api_id)
        if owner is not None and owner != claim.source.namespace:
            problems.append(
                ApiProblem(
                    str(claim.source),
                    "api-id",
                    Reason.CLAIMED_BY_OTHER_NAMESPACE,
                    f"API '{claim.api_id}' belongs to namespace {owner}; a Service in another namespace cannot change it",
                )
            )
            continue
        by_api.setdefault(claim.api_id, []).append(claim)
    apis: dict[str, DesiredApi] = {}
    held: set[str] = set()
    for api_id, group in sorted(by_api.items()):
        group.sort(key=lambda c: c.source)
        names = ", ".join(str(c.source) for c in group)
        conflict = _group_conflict(group)
        if conflict:
            held.add(api_id)
            problems.append(ApiProblem(f"API {api_id}", conflict[0], Reason.API_CONFLICT, f"{conflict[1]} ({names})"))
            continue
        defaults = [c for c in group if c.operations is None]
        claimed: dict[tuple[str, str], list[ApiClaim]] = {}
        for claim in group:
            for method, template in claim.operations or ():
                claimed.setdefault((method, template), []).append(claim)
        operations: list[DesiredOperation] = []
        held_operations: set[str] = set()
        for (method, template), owners in sorted(claimed.items()):
            op_id = operation_id(method, template)
            if len(owners) > 1:
                held_operations.add(op_id)
                who = ", ".join(str(o.source) for o in owners)
                problems.append(
                    ApiProblem(f"API {api_id}", f"{method} {template}", Reason.OPERATION_CONFLICT, f"claimed by {who}")
                )
                continue
            operations.append(
                DesiredOperation(op_id, method, template, owners[0].backend_id, owners[0].source, owners[0].audience)
            )
        default = defaults[0] if defaults else None
        if default is not None:
            explicit = {(o.method, o.url_template) for o in operations}
            operations += [
                DesiredOperation(operation_id(m, "/*"), m, "/*", None, default.source)
                for m in WILDCARD_METHODS
                if (m, "/*") not in explicit
            ]
        first = group[0]
        apis[api_id] = DesiredApi(
            id=api_id,
            namespace=first.source.namespace,
            path=first.path,
            display_name=next((c.display_name for c in group if c.display_name != api_id), api_id),
            subscription_required=first.subscription_required,
            products=tuple(sorted({p for c in group for p in c.products})),
            default_backend=default.backend_id if default else None,
            operations=tuple(sorted(operations, key=lambda o: o.id)),
            held_operations=frozenset(held_operations),
            default_audience=default.audience if default else None,
        )
    return DesiredApis(apis=apis, held=frozenset(held), problems=tuple(problems))


def within_operation_limits(desired: DesiredApis, limit_of: Callable[[str], int]) -> DesiredApis:
    """The APIs whose Services together name more operations than their namespace's limit are held whole and
    reported: each Service may be within its own limit while the API they form is not."""
    kept: dict[str, DesiredApi] = {}
    held, problems = set(desired.held), list(desired.problems)
    for api_id, api in desired.apis.items():
        limit = limit_of(api.namespace)
        named = sum(1 for o in api.operations if o.backend_id is not None) + len(api.held_operations)
        if named > limit:
            held.add(api_id)
            message = f"its Services name {named} operations; namespace {api.namespace} may have {limit} per API"
            problems.append(ApiProblem(f"API {api_id}", "operations", Reason.NOT_GRANTED, message + " (maxOperationsPerApi)"))
        else:
            kept[api_id] = api
    return DesiredApis(apis=kept, held=frozenset(held), problems=tuple(problems))


def _group_conflict(group: Sequence[ApiClaim]) -> tuple[str, str] | None:
    if len({c.source.namespace for c in group}) > 1:
        return "api-id", "claimed from more than one namespace"
    if len({c.path for c in group}) > 1:
        return "api-path", f"different api-paths: {', '.join(sorted({c.path for c in group}))}"
    if len({c.subscription_required for c in group}) > 1:
        return "subscription-required", "different subscription-required values"
    if sum(1 for c in group if c.operations is None) > 1:
        return "operations", "more than one Service serves the whole API (no operations annotation)"
    return None


# -- marks and policies --------------------------------------------------------------------------------


def api_mark(owner: OwnerId, namespace: str, products: Sequence[str] = ()) -> str:
    """The owner mark, and the products this deployment added the API to (links carry no mark of their own)."""
    mark = f"managed-by=aks-apim-sync; owner={owner}; namespace={namespace}"
    return f"{mark}; products={','.join(sorted(products))}" if products else mark


def marked_products(description: str) -> frozenset[str]:
    matched = re.search(r"; products=([A-Za-z0-9._,-]+)", description or "")
    return frozenset(matched[1].split(",")) if matched else frozenset()


def parse_api_mark(description: str) -> tuple[str, str] | None:
    matched = _MARK.search(description or "")
    return (matched["owner"], matched["namespace"]) if matched else None


ROUTED_BY_API_POLICY = "; routed-by=api-policy"
"""In an operation's mark: the API's policy routes it, so its own policy holds no managed block. Operations
without it were made when each carried its own block: their policy is read once, to take the block out."""


def operation_mark(source: ServiceRef) -> str:
    return f"managed-by=aks-apim-sync; source={source.namespace}/{source.name}{ROUTED_BY_API_POLICY}"


def is_managed_operation(observed: ObservedOperation) -> bool:
    return observed.description.startswith("managed-by=aks-apim-sync; source=")


def may_hold_a_block(description: str) -> bool:
    """Whether an operation's own policy may carry a managed block: only one of ours with the older mark."""
    return description.startswith("managed-by=aks-apim-sync; source=") and ROUTED_BY_API_POLICY not in description


@dataclass(frozen=True, slots=True)
class Route:
    backend_id: str
    audience: str | None = None
    """Option 1 with APIM's managed identity: the audience of the token APIM adds for this backend."""


@dataclass(frozen=True, slots=True)
class Routing:
    """What the managed block of an API's policy does: the listed operations to their own backends, every
    other operation of the API to the default (none: APIM's own routing, the API's serviceUrl)."""

    default: Route | None = None
    operations: tuple[tuple[str, Route], ...] = ()
    """(operation id, route), sorted by operation id."""

    @staticmethod
    def of(default: Route | None, operations: Mapping[str, Route]) -> Routing:
        return Routing(default, tuple(sorted(operations.items())))

    def route_for(self, operation_id: str) -> Route | None:
        return dict(self.operations).get(operation_id, self.default)

    def backends(self) -> frozenset[str]:
        routes = [route for _, route in self.operations] + ([self.default] if self.default else [])
        return frozenset(route.backend_id for route in routes)

    @property
    def empty(self) -> bool:
        return self.default is None and not self.operations


def _managed_block(policy: str | None) -> re.Match[str] | None:
    """The managed block in a policy as APIM returns it (re-serialised: its own line breaks and indentation,
    perhaps its own spacing inside comments), or None."""
    return _BLOCK.search(policy) if policy else None


def _route_in(text: str) -> Route | None:
    backend = re.search(r'<set-backend-service\s+backend-id="([^"]+)"', text)
    audience = re.search(r'<authentication-managed-identity\s+resource="([^"]+)"', text)
    return Route(backend[1], audience[1] if audience else None) if backend else None


def policy_routing(policy: str | None) -> Routing:
    """The routing the managed block of a policy holds (empty when there is no block). Tolerant of APIM's
    re-serialisation: whitespace, and quotes inside the condition kept or escaped."""
    block = _managed_block(policy)
    if block is None:
        return Routing()
    text = block[1]
    if "<choose" not in text:
        return Routing(default=_route_in(text))
    routes: dict[str, Route] = {}
    for condition, body in _WHEN.findall(text):
        route = _route_in(body)
        listed = _LISTED.search(condition)
        if route is not None and listed is not None:
            routes.update(dict.fromkeys(listed[1].split("|"), route))
    otherwise = _OTHERWISE.search(text)
    return Routing.of(_route_in(otherwise[1]) if otherwise else None, routes)


def policy_backend(policy: str | None) -> str | None:
    """The default backend of the managed block of a policy, or None when there is no block."""
    default = policy_routing(policy).default
    return default.backend_id if default else None


def policy_audience(policy: str | None) -> str | None:
    """The audience of the managed-identity token for the default backend, or None when there is none."""
    default = policy_routing(policy).default
    return default.audience if default else None


def _route_xml(route: Route) -> str:
    authentication = f'<authentication-managed-identity resource="{route.audience}" />' if route.audience else ""
    return f'<set-backend-service backend-id="{route.backend_id}" />{authentication}'


def _block_xml(routing: Routing) -> str:
    """One policy for the whole API: operations are grouped by route, each group one `when` whose condition
    looks the operation id up in a '|'-delimited string (ids are [a-z0-9-]), so the block grows by an id per
    operation, not by an expression, and is read back in one GET, not one per operation."""
    if routing.empty:
        return ""
    if not routing.operations:
        assert routing.default is not None
        return f"{BLOCK_BEGIN}{_route_xml(routing.default)}{BLOCK_END}"
    groups: dict[Route, list[str]] = {}
    for operation_id, route in routing.operations:
        groups.setdefault(route, []).append(operation_id)
    whens = "".join(
        f'<when condition="@("|{"|".join(ids)}|".Contains("|" + context.Operation.Id + "|"))">{_route_xml(route)}</when>'
        for route, ids in sorted(groups.items(), key=lambda group: (group[0].backend_id, group[0].audience or ""))
    )
    otherwise = f"<otherwise>{_route_xml(routing.default)}</otherwise>" if routing.default else ""
    return f"{BLOCK_BEGIN}<choose>{whens}{otherwise}</choose>{BLOCK_END}"


def with_managed_block(policy: str | None, backend_id: str | None, audience: str | None = None) -> str:
    """The policy with a managed block that routes every operation to `backend_id` (removed when None)."""
    return with_routing(policy, Routing(default=Route(backend_id, audience)) if backend_id else Routing())


def with_routing(policy: str | None, routing: Routing) -> str:
    """The policy with the managed block set to `routing` (the block is removed when the routing is empty).

    Text, not XML: every byte outside the block stays as the operator (and APIM) wrote it, including policy
    expressions such as @(context.Variables.GetValueOrDefault<string>("x")), which are not well-formed XML.
    Backend ids, audiences and operation ids are validated, so what is spliced in is always well-formed.
    """
    block = _block_xml(routing)
    text = policy if policy and policy.strip() else EMPTY_POLICY
    existing = _managed_block(text)
    if existing is not None:
        return text[: existing.start()] + block + text[existing.end() :]
    if not block:
        return text
    for pattern, replacement in _INSERTIONS:
        found = pattern.search(text)
        if found is not None:
            return text[: found.start()] + replacement.format(found[0], block=block) + text[found.end() :]
    return EMPTY_POLICY.replace("<inbound><base />", "<inbound><base />" + block, 1)


_WHEN = re.compile(r"<when\s+condition=(\"[^>]*?\"|'[^>]*?')\s*>(.*?)</when>", re.S)
_LISTED = re.compile(r'(?:"|&quot;)\|([a-z0-9|-]+)\|(?:"|&quot;)')
_OTHERWISE = re.compile(r"<otherwise>(.*?)</otherwise>", re.S)
_BLOCK = re.compile(r"<!--\s*aks-apim-sync:begin\s*-->(.*?)<!--\s*aks-apim-sync:end\s*-->", re.S)
_INSERTIONS = (
    (re.compile(r"<inbound>\s*<base\s*/>"), "{0}{block}"),
    (re.compile(r"<inbound>"), "{0}{block}"),
    (re.compile(r"<inbound\s*/>"), "<inbound><base />{block}</inbound>"),
    (re.compile(r"<policies>"), "{0}<inbound><base />{block}</inbound>"),
)
"""Where a new block goes: after <base /> in inbound (the API's own policy runs after the product's), else at
the start of inbound, else into a new inbound."""


def template_parameters(template: str) -> list[dict[str, Any]]:
    return [{"name": name, "type": "string", "required": True} for name in _TEMPLATE_PARAMETER.findall(template)]
