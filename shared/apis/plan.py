"""Plan the APIM changes for APIs: the API, its tag, operations, policies and product links.

Pure. Only APIs that carry this deployment's tag and owner mark are changed or deleted; inside them only
operations with our mark. Policies change only inside the managed block, so an operator's own lines stay.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.apis import claims as apis
from shared.core.model import OwnerId, Reason
from shared.core.tenancy import segments


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    ADD = "add"


class Kind(StrEnum):
    """The APIM object a change writes."""

    API = "api"
    TAG = "tag"
    OPERATION = "operation"
    POLICY = "policy"
    OPERATION_POLICY = "operation-policy"
    PRODUCT = "product"


@dataclass(frozen=True, slots=True)
class ApiChange:
    action: Action
    kind: Kind
    api_id: str
    target: str = ""
    diff: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None
    etag: str | None = None
    """If-Match: the ETag of the API or policy this update was planned on."""
    wanted: Mapping[str, Any] = field(default_factory=dict)
    """An API update: the properties this deployment manages, laid again over a fresh read after a conflict."""
    routing: apis.Routing = field(default_factory=apis.Routing)
    """A policy update: what the managed block routes where (empty: the block is removed)."""

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"action": self.action, "kind": self.kind, "api": self.api_id}
        if self.target:
            shown["target"] = self.target
        if self.diff:
            shown["diff"] = dict(self.diff)
        return shown


@dataclass(frozen=True, slots=True)
class ApiPlan:
    changes: tuple[ApiChange, ...] = ()
    refusals: tuple[apis.ApiProblem, ...] = ()
    unchanged: int = 0


_ORDER = {
    (Action.CREATE, Kind.API): 0,
    (Action.UPDATE, Kind.API): 0,
    (Action.ADD, Kind.TAG): 1,
    (Action.CREATE, Kind.OPERATION): 2,
    (Action.UPDATE, Kind.POLICY): 3,
    (Action.UPDATE, Kind.OPERATION_POLICY): 4,
    (Action.UPDATE, Kind.OPERATION): 4,
    (Action.CREATE, Kind.PRODUCT): 5,
    (Action.ADD, Kind.PRODUCT): 6,
    (Action.DELETE, Kind.OPERATION): 7,
    (Action.DELETE, Kind.PRODUCT): 7,
    (Action.DELETE, Kind.API): 8,
}


def api_properties(desired: apis.DesiredApi, owner: OwnerId) -> dict[str, Any]:
    return {
        "path": desired.path,
        "displayName": desired.display_name,
        "subscriptionRequired": desired.subscription_required,
        "protocols": ["https"],
        "description": apis.api_mark(owner, desired.namespace, desired.products),
    }


def operation_properties(operation: apis.DesiredOperation) -> dict[str, Any]:
    return {
        "displayName": operation.display_name,
        "method": operation.method,
        "urlTemplate": operation.url_template,
        "templateParameters": apis.template_parameters(operation.url_template),
        "description": apis.operation_mark(operation.source),
    }


def owned(observed: apis.ObservedApi, owner: OwnerId) -> bool:
    mark = apis.parse_api_mark(observed.description)
    return observed.tagged and mark is not None and mark[0] == owner


def owner_namespaces(listing: Mapping[str, tuple[str, str]], owner: OwnerId) -> dict[str, str]:
    """api id -> namespace, for every API whose description carries this deployment's owner mark."""
    found: dict[str, str] = {}
    for api_id, (_, description) in listing.items():
        mark = apis.parse_api_mark(description)
        if mark is not None and mark[0] == owner:
            found[api_id] = mark[1]
    return found


def scoped_filter(claims: Sequence[apis.ApiClaim], namespace: str, api_hints: Collection[str]) -> str:
    """The OData $filter for a namespace's run: its own APIs (by owner mark), and every API whose id its claims
    use or whose path equals, lies under or above one of theirs. Ids, paths and the namespace are validated
    (no quote can occur), so the clause cannot be escaped."""
    terms = {f"endswith(description,'namespace={namespace}')", f"contains(description,'namespace={namespace};')"}
    for claim in claims:
        terms |= {f"name eq '{claim.api_id}'", f"path eq '{claim.path}'"}
        parts = segments(claim.path)
        if parts:
            terms.add(f"startswith(path,'{claim.path}/')")
        terms |= {f"path eq '{'/'.join(parts[:i])}'" for i in range(1, len(parts))}
    terms |= {f"name eq '{hint}'" for hint in api_hints}
    return " or ".join(sorted(terms))


class PathIndex:
    """API ids by the segments of their paths: the APIs whose path overlaps a given one (equal, under or above it,
    as tenancy.paths_overlap says), found without comparing it with every API. Built once per run."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._at: dict[tuple[str, ...], list[str]] = {}
        self._under: dict[tuple[str, ...], list[str]] = {}
        for api_id, path in paths.items():
            parts = segments(path)
            self._at.setdefault(parts, []).append(api_id)
            for depth in range(1, len(parts)):
                self._under.setdefault(parts[:depth], []).append(api_id)

    def overlapping(self, path: str) -> list[str]:
        parts = segments(path)
        if not parts:
            return sorted(self._at.get((), []))  # the root path overlaps only itself
        found = {*self._at.get(parts, ()), *self._under.get(parts, ())}
        for depth in range(1, len(parts)):
            found.update(self._at.get(parts[:depth], ()))
        return sorted(found)


@dataclass(frozen=True, slots=True)
class ApiPaths:
    """The paths a run weighs claims against: every API's in APIM, and every API's the claims ask for."""

    held: Mapping[str, str]
    held_index: PathIndex
    asked_index: PathIndex

    @classmethod
    def of(cls, all_paths: Mapping[str, str], desired: apis.DesiredApis) -> ApiPaths:
        asked = {api_id: want.path for api_id, want in desired.apis.items()}
        return cls(all_paths, PathIndex(all_paths), PathIndex(asked))


def _path_conflict(
    want: apis.DesiredApi,
    desired: apis.DesiredApis,
    paths: ApiPaths,
    owner_namespaces: Mapping[str, str],
) -> str | None:
    """Why `want` may not take its path: it equals, or lies under or above (by segments), the path of an API
    that another namespace (or nobody of ours) holds, or that another namespace asks for in this run."""
    for other in paths.held_index.overlapping(want.path):
        if other == want.id or owner_namespaces.get(other) == want.namespace:
            continue
        return f"'/{want.path}' overlaps '/{paths.held[other].strip('/')}', the path of API '{other}' of another owner"
    if want.id in paths.held:
        return None  # it holds its path already; a newcomer that overlaps it is the one refused
    for other in paths.asked_index.overlapping(want.path):
        wanted = desired.apis[other]
        if other != want.id and wanted.namespace != want.namespace:
            return f"'/{want.path}' overlaps '/{wanted.path}', which namespace {wanted.namespace} asks for too"
    return None


def plan_apis(
    desired: apis.DesiredApis,
    observed: Mapping[str, apis.ObservedApi],
    *,
    all_paths: Mapping[str, str],
    owner: OwnerId,
    namespaces: frozenset[str] | None,
    keep_apis: bool,
    existing_products: frozenset[str],
    create_products: bool,
    owner_namespaces: Mapping[str, str] | None = None,
    watched: frozenset[str] = frozenset(),
    only: Collection[str] | None = None,
    paths: ApiPaths | None = None,
) -> ApiPlan:
    """`all_paths`: api id -> path of every API in APIM; `owner_namespaces`: api id -> namespace of the APIs
    this deployment owns; `namespaces`: whose APIs this run may delete (None: all); `watched`: NAMESPACES, to
    report the owned APIs it leaves out; `only`: plan these APIs alone (of the desired, and of the observed),
    each decided as in the whole plan: a run plans the APIs no Service claims together, then each claimed API on
    its own, as it is observed."""
    owner_namespaces = owner_namespaces or {}
    paths = paths or ApiPaths.of(all_paths, desired)
    changes: list[ApiChange] = []
    refusals: list[apis.ApiProblem] = []
    unchanged = 0
    planned = sorted(desired.apis) if only is None else sorted(a for a in only if a in desired.apis)
    for api_id in planned:
        want = desired.apis[api_id]
        have = observed.get(api_id)
        conflict = _path_conflict(want, desired, paths, owner_namespaces)
        if conflict is not None:
            refusals.append(apis.ApiProblem(f"API {api_id}", "api-path", Reason.PATH_TAKEN, conflict))
            continue
        marked = apis.parse_api_mark(have.description) if have is not None else None
        if marked is not None and marked[0] == owner and marked[1] != want.namespace:
            refusals.append(
                apis.ApiProblem(
                    f"API {api_id}",
                    "api-id",
                    Reason.CLAIMED_BY_OTHER_NAMESPACE,
                    f"the API belongs to namespace {marked[1]}; namespace {want.namespace} cannot change it",
                )
            )
            continue
        if have is None and api_id in all_paths:
            refusals.append(
                apis.ApiProblem(f"API {api_id}", "api-id", Reason.OWNED_BY_OTHER, "an API with this id exists and is not ours")
            )
            continue
        if have is not None and not owned(have, owner):
            refusals.append(
                apis.ApiProblem(f"API {api_id}", "api-id", Reason.OWNED_BY_OTHER, "an API with this id exists and is not ours")
            )
            continue
        api_changes, same = _plan_one(want, have, owner, existing_products, create_products, refusals)
        changes += api_changes
        unchanged += same
    outside = 0
    for api_id, have in sorted(observed.items()):
        if only is not None and api_id not in only:
            continue
        if api_id in desired.apis or api_id in desired.held or not owned(have, owner):
            continue
        mark = apis.parse_api_mark(have.description)
        if namespaces is not None and (mark is None or mark[1] not in namespaces):
            outside += 1 if watched and mark is not None and mark[1] not in watched else 0
            continue
        if keep_apis:
            refusals.append(
                apis.ApiProblem(f"API {api_id}", "", Reason.KEPT_BY_SETTING, "no Service claims it; KEEP_APIS keeps it")
            )
            continue
        changes.append(ApiChange(Action.DELETE, Kind.API, api_id))
    if outside:
        why = f"{outside} owned API(s) of namespaces outside NAMESPACES left alone: out of scope is not gone"
        refusals.append(apis.ApiProblem("APIs", "NAMESPACES", Reason.OUT_OF_SCOPE, why))
    changes.sort(key=lambda c: (_ORDER[(c.action, c.kind)], c.api_id, c.target))
    return ApiPlan(changes=tuple(changes), refusals=tuple(refusals), unchanged=unchanged)


def _plan_one(
    want: apis.DesiredApi,
    have: apis.ObservedApi | None,
    owner: OwnerId,
    existing_products: frozenset[str],
    create_products: bool,
    refusals: list[apis.ApiProblem],
) -> tuple[list[ApiChange], int]:
    changes: list[ApiChange] = []
    unchanged = 0
    properties = api_properties(want, owner)
    if have is None:
        changes.append(
            ApiChange(Action.CREATE, Kind.API, want.id, diff={k: [None, v] for k, v in properties.items()}, body=properties)
        )
        changes.append(ApiChange(Action.ADD, Kind.TAG, want.id))
    else:
        before = {
            "path": have.path,
            "displayName": have.display_name,
            "subscriptionRequired": have.subscription_required,
            "description": have.description,
        }
        diff = {k: [before[k], properties[k]] for k in before if before[k] != properties[k]}
        if diff:
            updated = {**dict(have.raw_properties), **properties}
            changes.append(
                ApiChange(Action.UPDATE, Kind.API, want.id, diff=diff, body=updated, etag=have.etag, wanted=properties)
            )
        else:
            unchanged += 1
    observed_ops = have.operations if have else {}
    for operation in want.operations:
        current = observed_ops.get(operation.id)
        wanted = operation_properties(operation)
        if current is not None and not apis.is_managed_operation(current):
            refusals.append(
                apis.ApiProblem(f"API {want.id}", operation.id, Reason.OWNED_BY_OTHER, "an operation with this id is not ours")
            )
            continue
        if current is None:
            changes.append(
                ApiChange(
                    Action.CREATE, Kind.OPERATION, want.id, operation.id, {"operation": [None, operation.display_name]}, wanted
                )
            )
        elif (current.method, current.url_template, current.description) != (
            operation.method,
            operation.url_template,
            wanted["description"],
        ):
            diff = {"operation": [f"{current.method} {current.url_template}", operation.display_name]}
            changes.append(ApiChange(Action.UPDATE, Kind.OPERATION, want.id, operation.id, diff, wanted))
    routed_ids = {o.id for o in want.operations}
    desired_ids = routed_ids | set(want.held_operations)
    for op_id, current in sorted(observed_ops.items()):
        if op_id not in desired_ids and apis.is_managed_operation(current):
            changes.append(ApiChange(Action.DELETE, Kind.OPERATION, want.id, op_id))
        elif op_id in routed_ids and not apis.policy_routing(current.policy).empty:
            # Made when each operation carried its own block: the API's policy routes it now.
            diff = {"set-backend-service": [apis.policy_backend(current.policy), None]}
            body = apis.with_routing(current.policy, apis.Routing())
            changes.append(ApiChange(Action.UPDATE, Kind.OPERATION_POLICY, want.id, op_id, diff, body, current.policy_etag))
    held_policy = have.policy if have else None
    held_routing = apis.policy_routing(held_policy)
    routing = desired_routing(want, held_routing)
    diff = route_diff(held_routing, routing)
    if diff:
        changes.append(
            ApiChange(
                Action.UPDATE,
                Kind.POLICY,
                want.id,
                diff=diff,
                body=apis.with_routing(held_policy, routing),
                etag=have.policy_etag if have else None,
                routing=routing,
            )
        )
    if have is not None:
        for product in sorted(apis.marked_products(have.description) - set(want.products)):
            if product in have.products:
                changes.append(ApiChange(Action.DELETE, Kind.PRODUCT, want.id, product))
    for product in want.products:
        if have is not None and product in have.products:
            continue
        if product not in existing_products:
            if not create_products:
                refusals.append(
                    apis.ApiProblem(
                        f"API {want.id}",
                        "products",
                        Reason.PRODUCT_MISSING,
                        f"product '{product}' does not exist (CREATE_PRODUCTS is off)",
                    )
                )
                continue
            changes.append(ApiChange(Action.CREATE, Kind.PRODUCT, want.id, product))
        changes.append(ApiChange(Action.ADD, Kind.PRODUCT, want.id, product))
    return changes, unchanged


def desired_routing(want: apis.DesiredApi, held: apis.Routing) -> apis.Routing:
    """The API's routing: each operation a Service names to that Service's backend, every other to the default
    backend; an operation in conflict keeps the route it has."""
    default = apis.Route(want.default_backend, want.default_audience) if want.default_backend else None
    routes = {o.id: apis.Route(o.backend_id, o.audience) for o in want.operations if o.backend_id is not None}
    kept = dict(held.operations)
    routes |= {op_id: kept[op_id] for op_id in sorted(want.held_operations) if op_id in kept}
    return apis.Routing.of(default, routes)


def route_diff(held: apis.Routing, wanted: apis.Routing) -> dict[str, Any]:
    """What the managed block must change: the default backend, its managed-identity audience, and each
    operation whose route changes (shown as 'backend' or 'backend (audience)')."""

    def shown(route: apis.Route | None) -> str | None:
        if route is None:
            return None
        return f"{route.backend_id} ({route.audience})" if route.audience else route.backend_id

    diff: dict[str, Any] = {}
    held_default, wanted_default = held.default, wanted.default
    if (held_default and held_default.backend_id) != (wanted_default and wanted_default.backend_id):
        diff["set-backend-service"] = [held_default and held_default.backend_id, wanted_default and wanted_default.backend_id]
    if (held_default and held_default.audience) != (wanted_default and wanted_default.audience):
        diff["authentication-managed-identity"] = [
            held_default and held_default.audience,
            wanted_default and wanted_default.audience,
        ]
    held_routes, wanted_routes = dict(held.operations), dict(wanted.operations)
    for operation_id in sorted(set(held_routes) | set(wanted_routes)):
        before, after = held_routes.get(operation_id), wanted_routes.get(operation_id)
        if before != after:
            diff[f"route {operation_id}"] = [shown(before), shown(after)]
    return diff


def cap_api_deletes(plan: ApiPlan, *, owned: int, max_deletes: int, max_fraction: float, allow_mass_delete: bool) -> ApiPlan:
    """The backends' deletion guard, for APIs: too many API deletes at once delete nothing and say why."""
    deletes = [c for c in plan.changes if c.action is Action.DELETE and c.kind is Kind.API]
    if allow_mass_delete or len(deletes) <= max_deletes or len(deletes) / max(owned, 1) <= max_fraction:
        return plan
    why = (
        f"would delete {len(deletes)} of {owned} owned APIs (limit: more than {max_deletes} and more than "
        f"{max_fraction:.0%}); nothing deleted. Set ALLOW_MASS_DELETE=true or pass --allow-mass-delete"
    )
    kept = tuple(c for c in plan.changes if not (c.action is Action.DELETE and c.kind is Kind.API))
    refused = tuple(apis.ApiProblem(f"API {c.api_id}", "", Reason.DELETE_CAP_REACHED, why) for c in deletes)
    return ApiPlan(changes=kept, refusals=(*plan.refusals, *refused), unchanged=plan.unchanged)
