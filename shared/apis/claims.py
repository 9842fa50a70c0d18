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

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ApiProblem:
    object: str
    field: str
    reason: str
    message: str


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class DesiredApis:
    apis: Mapping[str, DesiredApi]
    held: frozenset[str]
    """API ids whose claims conflict: nothing about them changes this run."""
    problems: tuple[ApiProblem, ...]


@dataclass(frozen=True)
class ObservedOperation:
    id: str
    method: str
    url_template: str
    description: str
    policy: str | None
    policy_etag: str | None = None


@dataclass(frozen=True)
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
        (method.upper(), str(path))
        for path, item in paths.items()
        if isinstance(item, Mapping)
        for method in item
        if method.upper() in METHODS
    ]
    if not found:
        raise ValueError("the document's 'paths' hold no operation")
    return sorted(found)


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


def operation_mark(source: ServiceRef) -> str:
    return f"managed-by=aks-apim-sync; source={source.namespace}/{source.name}"


def is_managed_operation(observed: ObservedOperation) -> bool:
    return observed.description.startswith("managed-by=aks-apim-sync; source=")


def _managed_block(policy: str | None) -> re.Match[str] | None:
    """The managed block in a policy as APIM returns it (re-serialised: its own line breaks and indentation,
    perhaps its own spacing inside comments), or None."""
    return _BLOCK.search(policy) if policy else None


def policy_backend(policy: str | None) -> str | None:
    """The backend id in the managed block of a policy, or None when there is no block."""
    block = _managed_block(policy)
    matched = re.search(r'backend-id="([^"]+)"', block[1]) if block else None
    return matched[1] if matched else None


def policy_audience(policy: str | None) -> str | None:
    """The audience of the managed-identity token in the managed block, or None when there is none."""
    block = _managed_block(policy)
    matched = re.search(r'<authentication-managed-identity\s+resource="([^"]+)"', block[1]) if block else None
    return matched[1] if matched else None


def with_managed_block(policy: str | None, backend_id: str | None, audience: str | None = None) -> str:
    """The policy with the managed block set: route to `backend_id` (the block is removed when None) and, for
    Option 1 without a shared secret, authenticate with APIM's managed identity for `audience`.

    Text, not XML: every byte outside the block stays as the operator (and APIM) wrote it, including policy
    expressions such as @(context.Variables.GetValueOrDefault<string>("x")), which are not well-formed XML.
    `backend_id` and `audience` are validated ids, so what is spliced in is always well-formed.
    """
    authentication = f'<authentication-managed-identity resource="{audience}" />' if audience else ""
    routing = f'<set-backend-service backend-id="{backend_id}" />{authentication}'
    block = f"{BLOCK_BEGIN}{routing}{BLOCK_END}" if backend_id else ""
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
