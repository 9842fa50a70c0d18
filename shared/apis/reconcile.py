"""The API step of a run: claims from the namespace's Services -> plan against APIM -> apply -> report.

APIs are reconciled per namespace (Services form an API within one namespace), so a one-Service run reads
that namespace's Services once. Claims whose backend is not there yet (pending, invalid) hold their API.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from shared.apis import claims as apis
from shared.apis import plan as api_plan
from shared.apis.plan import Action, Kind
from shared.apis.report import ApisReport
from shared.backends.exposure import Exposure, of_view
from shared.core.annotations import Keys
from shared.core.errors import SyncError
from shared.core.model import DesiredBackend, Reason, ServiceView
from shared.core.reporting import RunError
from shared.core.scope import Scope
from shared.core.tenancy import ASK_PLATFORM, NamespaceGrant
from shared.runtime.apply import NOTHING_TO_DO, NothingToDo, Refused, Writer, apply_change
from shared.runtime.cluster import read_cluster, with_retries
from shared.runtime.deadline import Deadline
from shared.runtime.ports import ApiStore, Dependencies, KnownOfApi
from shared.runtime.workers import start_each


def tag_for(deps: Dependencies) -> str:
    return f"aks-apim-sync-{deps.settings.sync.owner_id}"


def reconcile_apis(
    scope: Scope,
    deps: Dependencies,
    exposure: Exposure,
    *,
    dry_run: bool = False,
    api_hints: frozenset[str] = frozenset(),
    allow_mass_delete: bool = False,
    deadline: Deadline | None = None,
) -> ApisReport:
    """`api_hints`: APIs the Service claimed before (from its event). A one-Service run that neither claims an
    API now nor did before costs nothing; a Service that dropped its api-id without an event telling so is
    found by the next namespace or cluster run.
    """
    if not deps.settings.apis.enabled:
        return ApisReport(dry_run=dry_run, skipped="APIS_ENABLED is false")
    deadline = deadline or Deadline.never()
    claims_now = any(s.annotations.get(exposure.context.keys.api_id, "").strip() for s in exposure.services)
    if scope.service is not None and not claims_now and not api_hints:
        return ApisReport(dry_run=dry_run)
    store = deps.apis
    tag, owner = tag_for(deps), deps.settings.sync.owner_id
    try:
        if scope.namespace is None:
            tagged = with_retries(deps, lambda: store.tagged_api_ids(tag))
            if not tagged and not claims_now:
                return ApisReport(dry_run=dry_run)  # no API claimed in scope and none of ours in APIM: one request
        widened, namespaces = _widened(scope, deps, exposure)
        claims, problems = _claims(widened, deps)
        # A namespace's run lists only the APIs that can matter to it (its own, and those whose id or path its
        # claims meet): its cost does not grow with the APIs of other namespaces.
        odata = None if scope.namespace is None else api_plan.scoped_filter(claims, scope.namespace, api_hints)
        listed = with_retries(deps, lambda: store.all_api_properties(odata))
        listing = {a: (str(p.get("path") or ""), str(p.get("description") or "")) for a, p in listed.items()}
        all_paths = {api_id: path for api_id, (path, _) in listing.items()}
        owner_namespaces = api_plan.owner_namespaces(listing, owner)
        if scope.namespace is not None:
            ours = sorted(a for a, ns in owner_namespaces.items() if namespaces is None or ns in namespaces or a in api_hints)
            ours += sorted({c.api_id for c in claims} & set(owner_namespaces) - set(ours))
            tagged = {a for a in ours if with_retries(deps, lambda a=a: store.is_tagged(a, tag))}  # type: ignore[misc]
        desired = apis.collect_apis(claims, owner_namespaces=owner_namespaces)
        policy = exposure.context.policy
        desired = apis.within_operation_limits(desired, lambda ns: policy.grant(ns).max_operations_per_api)
        problems += [_problem(p) for p in desired.problems]
        wants_products = any(a.products for a in desired.apis.values())
        existing_products = with_retries(deps, store.product_ids) if wants_products else frozenset()
        # A namespace's run looks only at its own APIs: its cost does not grow with the APIs of other namespaces.
        in_scope = {a for a in tagged if namespaces is None or owner_namespaces.get(a) in namespaces}
        to_observe = [a for a in sorted(set(desired.apis) | in_scope) if a in listed]
        wanted_products = {a: list(desired.apis[a].products) if a in desired.apis else [] for a in to_observe}
        members = _listed_members(store, deps, listed, wanted_products) if scope.namespace is None else {}

        def observe(api_id: str) -> apis.ObservedApi | None:
            found: apis.ObservedApi | None = with_retries(
                deps,
                lambda: store.observe(api_id, KnownOfApi(api_id in tagged, wanted_products[api_id], listed[api_id], members)),
            )
            return found

        # The APIs no Service claims (the ones a run may delete) are observed and planned first, together: the
        # delete guard weighs them at once, and a path they free is free before another API takes it.
        leaving = [a for a in to_observe if a not in desired.apis]
        observed = {a: found for a in leaving if (found := observe(a)) is not None}
    except SyncError as error:
        return ApisReport(dry_run=dry_run, error=RunError.of(error))
    sync_settings = deps.settings.sync

    paths = api_plan.ApiPaths.of(all_paths, desired)

    def plan_of(observed: Mapping[str, apis.ObservedApi], only: frozenset[str]) -> api_plan.ApiPlan:
        return api_plan.plan_apis(
            desired,
            observed,
            only=only,
            paths=paths,
            all_paths=all_paths,
            owner_namespaces=owner_namespaces,
            owner=sync_settings.owner_id,
            namespaces=_in_reach(namespaces, deps.settings.kube.namespaces),
            watched=frozenset(deps.settings.kube.namespaces),
            keep_apis=deps.settings.apis.keep_apis,
            existing_products=frozenset(existing_products),
            create_products=deps.settings.apis.create_products,
        )

    first = api_plan.cap_api_deletes(
        plan_of(observed, frozenset(leaving)),
        owned=sum(1 for a in to_observe if a in tagged and a in owner_namespaces),
        max_deletes=sync_settings.max_deletes_per_run,
        max_fraction=sync_settings.max_delete_fraction,
        allow_mass_delete=allow_mass_delete or sync_settings.allow_mass_delete,
    )
    problems += [_problem(p) for p in first.refusals]
    writer = _writer(store, tag_for(deps), owner)
    by_api: dict[str, list[api_plan.ApiChange]] = {}
    for change in first.changes:
        by_api.setdefault(change.api_id, []).append(change)
    entries = [e for changes in by_api.values() for e in _apply_api(changes, writer, deps, deadline, dry_run)]

    def claimed(api_id: str) -> _ApiResult:
        """Observe, plan and apply one claimed API: each API's reads and writes follow each other, while other
        APIs' go on beside them, so ARM's read and write buckets are spent at once, not one after the other."""
        if deadline.passed():
            return _ApiResult(problems=[_deferred(api_id)], not_reached=True)
        try:
            have = observe(api_id) if api_id in listed else None
        except SyncError as error:
            return _ApiResult(error=error)
        plan = plan_of({api_id: have} if have is not None else {}, frozenset({api_id}))
        return _ApiResult(
            entries=_apply_api(list(plan.changes), writer, deps, deadline, dry_run),
            problems=[_problem(p) for p in plan.refusals],
            unchanged=plan.unchanged,
        )

    # New APIs (writes only) and existing ones (reads first, often nothing to write) go on side by side, each in
    # pools of their own, so a run spends ARM's write and read buckets together and new APIs never wait behind
    # the reading of existing ones. When a run's read budget covers only part of the existing ones, the next run
    # of the scope starts with the first it did not reach (shared.runtime.resume); a run with nothing to resume
    # starts at a point that moves with the clock, so instances do not all read the same ones first.
    new = [a for a in sorted(desired.apis) if a not in listed]
    resume_key = "apis " + json.dumps(scope.to_json(), sort_keys=True)
    existing = _rotated(
        [a for a in sorted(desired.apis) if a in listed],
        resume_at=deps.resume.get(resume_key),
        turn=int(deps.wall_clock().timestamp() // 60),
    )
    workers = sync_settings.apply_concurrency
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apis-new") as new_pool,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apis") as existing_pool,
    ):
        made = start_each(new_pool, claimed, new, workers=workers)
        checked = start_each(existing_pool, claimed, existing, workers=workers)
        checked_in_order = checked()
        by_id = {**dict(zip(new, made(), strict=True)), **dict(zip(existing, checked_in_order, strict=True))}
    if not dry_run:
        not_reached = (a for a, result in zip(existing, checked_in_order, strict=True) if result.not_reached)
        deps.resume.put(resume_key, next(not_reached, None))
    results = [by_id[a] for a in sorted(desired.apis)]  # the report in API order, however they ran
    failures = [r.error for r in results if r.error is not None]
    return ApisReport(
        dry_run=dry_run,
        changes=(*entries, *(e for r in results for e in r.entries)),
        problems=(*problems, *(p for r in results for p in r.problems)),
        unchanged=first.unchanged + sum(r.unchanged for r in results),
        error=RunError.of(failures[0]) if failures else None,
    )


def _rotated(ids: list[str], *, resume_at: str | None, turn: int) -> list[str]:
    """The sorted list, wrapping round, from `resume_at` (or the first id after it, if it is gone); without one,
    from a point that the golden ratio's stride moves from turn to turn, so the starts of successive turns
    spread evenly over the list, whatever its length."""
    if not ids:
        return ids
    if resume_at is not None:
        start = bisect.bisect_left(ids, resume_at) % len(ids)
    else:
        start = int((turn * 0.6180339887498949) % 1.0 * len(ids))
    return ids[start:] + ids[:start]


@dataclass
class _ApiResult:
    entries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)
    unchanged: int = 0
    error: SyncError | None = None
    not_reached: bool = False
    """The run's time was spent before this API was looked at."""


def _deferred(api_id: str) -> dict[str, str]:
    message = "not reconciled: the run's time budget (RUN_TIME_BUDGET_SECONDS) was spent; the next run does it"
    return {"object": f"API {api_id}", "field": "", "reason": Reason.TIME_BUDGET_SPENT, "message": message}


def _listed_members(
    store: ApiStore, deps: Dependencies, listed: Mapping[str, Mapping[str, Any]], wanted_products: Mapping[str, list[str]]
) -> dict[str, frozenset[str]]:
    """product id -> its APIs, for the products whose listing (pages of 100 of at most every listed API) costs
    fewer reads than asking about each API in it: a full run with many APIs reads membership per product."""
    asks: dict[str, int] = {}
    for api_id, products in wanted_products.items():
        for product in {*products, *apis.marked_products(str(listed[api_id].get("description") or ""))}:
            asks[product] = asks.get(product, 0) + 1
    pages = -(-len(listed) // 100)
    return {p: with_retries(deps, lambda p=p: store.api_ids_in(p)) for p, n in sorted(asks.items()) if n > pages}  # type: ignore[misc]


def _in_reach(scoped: frozenset[str] | None, watched: tuple[str, ...]) -> frozenset[str] | None:
    """The namespaces whose APIs this run may delete: the run's scope within NAMESPACES. Out of reach is not
    gone: an API made from a namespace that NAMESPACES no longer lists is left alone."""
    if not watched:
        return scoped
    return frozenset(watched) if scoped is None else scoped & frozenset(watched)


def _problem(problem: apis.ApiProblem) -> dict[str, str]:
    return {"object": problem.object, "field": problem.field, "reason": problem.reason, "message": problem.message}


def _widened(scope: Scope, deps: Dependencies, exposure: Exposure) -> tuple[Exposure, frozenset[str] | None]:
    """Cluster and namespace runs use what the run worked out; a one-Service run widens to its namespace,
    where an API's Services live (under the policy the run already read)."""
    if scope.namespace is not None and scope.service is not None:
        view = read_cluster(Scope(scope.cluster, namespace=scope.namespace), deps, policy=exposure.context.policy)
        exposure = of_view(view, deps.settings)
    return exposure, None if scope.namespace is None else frozenset({scope.namespace})


def _claims(exposure: Exposure, deps: Dependencies) -> tuple[list[apis.ApiClaim], list[dict[str, str]]]:
    context = exposure.context
    policy = context.policy
    prefix, key = context.prefix, context.keys
    claims: list[apis.ApiClaim] = []
    problems: list[dict[str, str]] = []
    for service in exposure.services:
        if not service.annotations.get(key.api_id, "").strip():
            continue
        where = f"{service.namespace}/{service.name}"
        outcome = exposure.outcome(service)
        if not isinstance(outcome, DesiredBackend):
            why = "the Service is not exposed" if outcome is None else "its backend is not ready (pending or invalid)"
            problems.append({"object": where, "field": key.api_id, "reason": Reason.API_HELD, "message": f"{why}; its API waits"})
            continue
        claim = apis.claim_for(service, outcome.id, context.cluster, prefix)
        if isinstance(claim, apis.ApiClaim):
            claim = replace(claim, audience=outcome.token_audience)
        if isinstance(claim, apis.ApiProblem):
            problems.append(_problem(claim))
            continue
        if claim is None:
            continue
        grant = policy.grant(service.namespace)
        reference = service.annotations.get(key.openapi, "").strip()
        if reference:
            operations = _openapi_operations(service, reference, deps, prefix, problems, grant.max_openapi_bytes)
            if operations is None:
                continue
            claim = replace(claim, operations=tuple(operations))
        granted = _within_grant(claim, grant, key, problems)
        if granted is not None:
            claims.append(granted)
    return claims, problems


def _within_grant(claim: apis.ApiClaim, grant: NamespaceGrant, key: Keys, problems: list[dict[str, str]]) -> apis.ApiClaim | None:
    """The claim as far as the tenancy policy grants it: refused whole when it would publish an anonymous API,
    at a path not granted, or with too many operations; products not granted are left out."""
    where, namespace = str(claim.source), claim.source.namespace

    def refuse(annotation: str, what: str) -> None:
        message = f"{what} is not granted to namespace {namespace}; {ASK_PLATFORM}"
        problems.append({"object": where, "field": annotation, "reason": Reason.NOT_GRANTED, "message": message})

    if not claim.subscription_required and not grant.anonymous_apis:
        refuse(key.subscription_required, "an API without subscription keys (anonymousApis)")
        return None
    if not grant.allows_api_path(claim.path):
        refuse(key.api_path, f"the api-path '/{claim.path}' (apiPathPrefixes, rootPath)")
        return None
    if claim.operations is not None and len(claim.operations) > grant.max_operations_per_api:
        refuse(key.operations, f"{len(claim.operations)} operations (maxOperationsPerApi is {grant.max_operations_per_api})")
        return None
    not_granted = sorted(set(claim.products) - grant.products)
    if not_granted:
        refuse(key.products, f"joining product(s) {', '.join(not_granted)}")
        claim = replace(claim, products=tuple(p for p in claim.products if p in grant.products))
    return claim


def _openapi_operations(
    service: ServiceView, reference: str, deps: Dependencies, prefix: str, problems: list[dict[str, str]], max_bytes: int
) -> list[tuple[str, str]] | None:
    where, field = f"{service.namespace}/{service.name}", Keys(prefix).openapi
    if reference.count("/") != 1:
        problems.append(
            {"object": where, "field": field, "reason": Reason.INVALID_ANNOTATION, "message": "expected <configmap>/<key>"}
        )
        return None
    name, key = reference.split("/")
    text = with_retries(deps, lambda: deps.cluster.get_configmap_value(service.namespace, name, key))
    if text is None:
        problems.append(
            {"object": where, "field": field, "reason": Reason.OPEN_API_MISSING, "message": f"ConfigMap {name} has no key {key}"}
        )
        return None
    if len(text.encode()) > max_bytes:
        message = f"ConfigMap {name}/{key} is larger than {max_bytes} bytes (maxOpenApiBytes)"
        problems.append({"object": where, "field": field, "reason": Reason.NOT_GRANTED, "message": message})
        return None
    try:
        return apis.operations_from_text(text)
    except ValueError as error:
        message = f"ConfigMap {name}/{key} is not an OpenAPI document: {str(error)[:120]}"
        problems.append({"object": where, "field": field, "reason": Reason.INVALID_OPEN_API, "message": message})
        return None


def _apply_api(
    changes: list[api_plan.ApiChange],
    writer: Writer[api_plan.ApiChange],
    deps: Dependencies,
    deadline: Deadline,
    dry_run: bool,
) -> list[dict[str, Any]]:
    """One API's changes in plan order, under the apply contract (shared.runtime.apply); a failed or refused
    change stops this API's later changes, never another API's. Once the deadline has passed the API does not
    start: its changes are deferred to the next run. A dry run shows them planned. An API's writes are one
    piece of the deadline's measured margin."""
    if dry_run:
        return [{**c.to_json(), "outcome": "planned"} for c in changes]
    if deadline.passed():
        return [{**c.to_json(), "outcome": "deferred", "reason": Reason.TIME_BUDGET_SPENT} for c in changes]
    with deadline.piece():
        return _apply_in_order(changes, writer, deps)


def _apply_in_order(
    changes: list[api_plan.ApiChange], writer: Writer[api_plan.ApiChange], deps: Dependencies
) -> list[dict[str, Any]]:
    sync_settings = deps.settings.sync
    entries: list[dict[str, Any]] = []
    broken = False
    for change in changes:
        entry = {**change.to_json(), "outcome": "applied"}
        if broken:
            entries.append({**entry, "outcome": "skipped", "message": "an earlier change of this API failed"})
            continue
        outcome, _ = apply_change(
            change,
            writer,
            attempts=sync_settings.max_attempts,
            max_wait_seconds=sync_settings.max_retry_wait_seconds,
            sleep=deps.sleep,
        )
        if outcome.status == "noop":
            continue
        if outcome.status in ("failed", "refused"):
            broken = True
            entry.update(outcome=outcome.status, message=outcome.message, retryable=outcome.retryable)
            if outcome.status == "refused":
                entry["reason"] = outcome.reason
        if outcome.attempts > 1:
            entry["attempts"] = outcome.attempts
        entries.append(entry)
    return entries


def _writer(store: ApiStore, tag: str, owner: str) -> Writer[api_plan.ApiChange]:
    def decide_again(change: api_plan.ApiChange) -> api_plan.ApiChange | Refused | NothingToDo:
        """A fresh read of the one object the change writes, and the change decided again on it."""
        if change.kind is Kind.API and change.action is Action.UPDATE:
            fresh = store.api(change.api_id)
            if fresh is None:
                return NOTHING_TO_DO  # gone meanwhile: the next run decides
            raw, etag = fresh
            mark = apis.parse_api_mark(str(raw.get("description") or ""))
            wanted_mark = apis.parse_api_mark(str(change.wanted.get("description") or ""))
            if mark is None or mark != wanted_mark or mark[0] != owner:
                return Refused(Reason.OWNED_BY_OTHER, "the API's owner mark changed meanwhile; not overwritten")
            if all(raw.get(key) == value for key, value in change.wanted.items()):
                return NOTHING_TO_DO
            return replace(change, body={**raw, **change.wanted}, etag=etag)
        if change.kind in (Kind.POLICY, Kind.OPERATION_POLICY):
            held = store.policy(change.api_id, change.target if change.kind is Kind.OPERATION_POLICY else None)
            text, etag = held if held is not None else ("", "")
            if text and apis.policy_routing(text) == change.routing:
                return NOTHING_TO_DO
            body = apis.with_routing(text or None, change.routing)
            return replace(change, body=body, etag=etag or None)
        return change  # idempotent writes keyed by id: writing again is deciding again

    def read_first(change: api_plan.ApiChange) -> bool:
        """An API observed from the listing has no ETag: its update reads it first, and writes on what it read."""
        return change.kind is Kind.API and change.action is Action.UPDATE and change.etag is None

    return Writer(write=lambda change: _execute(change, store, tag), decide_again=decide_again, read_first=read_first)


def _execute(change: api_plan.ApiChange, store: ApiStore, tag: str) -> None:
    kind, action = change.kind, change.action
    if kind is Kind.API:
        if action is Action.DELETE:
            store.delete_api(change.api_id)
        else:
            store.put_api(change.api_id, change.body, if_match=change.etag)
    elif kind is Kind.TAG:
        store.tag_api(change.api_id, tag)
    elif kind is Kind.OPERATION:
        if action is Action.DELETE:
            store.delete_operation(change.api_id, change.target)
        else:
            store.put_operation(change.api_id, change.target, change.body)
    elif kind is Kind.POLICY:
        store.put_api_policy(change.api_id, change.body, if_match=change.etag)
    elif kind is Kind.OPERATION_POLICY:
        store.put_operation_policy(change.api_id, change.target, change.body, if_match=change.etag)
    elif action is Action.CREATE:
        store.create_product(change.target)
    elif action is Action.DELETE:
        store.remove_from_product(change.target, change.api_id)
    else:
        store.add_to_product(change.target, change.api_id)
