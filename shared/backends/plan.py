"""Compute backend changes from desired and observed state, then filter them through policies.

Pure: no I/O, no clock, no logging, no input mutation. Same inputs, same plan.

How one backend id is decided (first matching row wins):

    desired            observed                         -> outcome
    ----------------   ------------------------------   ------------------------------------------
    -                  not ours (no mark / other owner)  ignored
    -                  ours, source outside the scope    ignored
    -                  ours, source held (pending,       left alone (HeldWhileSourceBroken /
                       invalid or skip)                   ReconcileSkipped)
    -                  ours, policy detach-on-delete     refused (DetachedOnDelete), never deleted
    -                  ours                              delete (SourceGone)
    yes                absent                            create
    yes                not ours                          refused (OwnedByOther), never overwritten
    yes                ours, source another Service      refused (ClaimedByOtherService): only a run that
                       outside the scope                  also sees that Service may move the backend
    yes                ours, same projection             unchanged
    yes                ours, projection differs          update, listing every differing field

Then policies, each a Plan -> Plan filter whose removals become refusals: the sync policy
(upsert-only drops deletes, create-only keeps creates only) and the delete cap.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from shared.backends.discovery import Invalid, Pending, ServiceOutcome, Skipped
from shared.core import naming
from shared.core.model import (
    BackendId,
    BackendSpec,
    DesiredBackend,
    ObservedBackend,
    OwnerId,
    Reason,
    ReconcilePolicy,
    ServiceRef,
    SyncPolicy,
)
from shared.core.ownership import is_owned
from shared.core.scope import Scope


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    before: object
    after: object


@dataclass(frozen=True, slots=True)
class CreateBackend:
    desired: DesiredBackend

    @property
    def id(self) -> BackendId:
        return self.desired.id


@dataclass(frozen=True, slots=True)
class UpdateBackend:
    desired: DesiredBackend
    observed: ObservedBackend
    diff: tuple[FieldChange, ...]

    @property
    def id(self) -> BackendId:
        return self.desired.id


@dataclass(frozen=True, slots=True)
class DeleteBackend:
    observed: ObservedBackend
    source: ServiceRef

    @property
    def id(self) -> BackendId:
        return self.observed.id


BackendChange = CreateBackend | UpdateBackend | DeleteBackend


@dataclass(frozen=True, slots=True)
class Refusal:
    id: BackendId
    reason: Reason
    message: str
    source: ServiceRef | None = None
    change: BackendChange | None = None


@dataclass(frozen=True, slots=True)
class DesiredSet:
    """Desired backends by id, plus the Services whose existing backends must be left alone."""

    backends: Mapping[BackendId, DesiredBackend]
    held: Mapping[ServiceRef, Reason]
    problems: tuple[Invalid | Pending | Skipped, ...]

    present: frozenset[ServiceRef] = frozenset()
    """Every Service the run saw asking to be exposed, healthy or not (built once: plans look it up per backend)."""


@dataclass(frozen=True, slots=True)
class BackendPlan:
    changes: tuple[BackendChange, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    unchanged: tuple[BackendId, ...] = ()
    owned_in_scope: int = 0
    notes: tuple[str, ...] = field(default=())


def collect_desired(outcomes: Iterable[ServiceOutcome], owners: Mapping[BackendId, ServiceRef] | None = None) -> DesiredSet:
    """Index outcomes by backend id. When several Services want one id, the Service the existing backend's mark
    names keeps it, else the Service whose own default id it is; the others are invalid. With neither, all are
    invalid and none wins. So no Service can freeze or take another's backend by naming its id."""
    owners = owners or {}
    by_id: dict[BackendId, list[DesiredBackend]] = {}
    problems: list[Invalid | Pending | Skipped] = []
    held: dict[ServiceRef, Reason] = {}
    for outcome in outcomes:
        if isinstance(outcome, DesiredBackend):
            by_id.setdefault(outcome.id, []).append(outcome)
        else:
            problems.append(outcome)
            held[outcome.source] = outcome.reason
    backends: dict[BackendId, DesiredBackend] = {}
    for backend_id, claimants in by_id.items():
        if len(claimants) == 1:
            backends[backend_id] = claimants[0]
            continue
        names = ", ".join(sorted(str(c.source) for c in claimants))
        rightful = next((c for c in claimants if c.source == owners.get(backend_id)), None) or next(
            (c for c in claimants if naming.backend_id_for(c.source) == backend_id), None
        )
        if rightful is not None:
            backends[backend_id] = rightful
        for claimant in claimants:
            if claimant is rightful:
                continue
            message = f"backend id '{backend_id}' is wanted by several Services: {names}"
            if rightful is not None:
                message = f"backend id '{backend_id}' belongs to Service {rightful.source}; choose another backend-id"
            problems.append(Invalid(claimant.source, field="backend-id", message=message, reason=Reason.DUPLICATE_BACKEND_ID))
            held[claimant.source] = Reason.DUPLICATE_BACKEND_ID
    present = frozenset({*(d.source for d in backends.values()), *held})
    return DesiredSet(backends=backends, held=held, problems=tuple(problems), present=present)


def diff_specs(desired: BackendSpec, observed: BackendSpec) -> tuple[FieldChange, ...]:
    after, before = desired.normalised().as_fields(), observed.normalised().as_fields()
    return tuple(FieldChange(name, before[name], after[name]) for name in after if after[name] != before[name])


def decide(
    backend_id: BackendId,
    desired: DesiredBackend | None,
    observed: ObservedBackend | None,
    *,
    owner: OwnerId,
    scope: Scope,
    held: Mapping[ServiceRef, Reason],
    present: Collection[ServiceRef] = frozenset(),
    watched: Collection[str] = frozenset(),
) -> BackendChange | Refusal | BackendId | None:
    """One row of the table above: a change, a refusal, the id itself when unchanged, or None when ignored.

    `present`: every Service the run saw asking to be exposed; `watched`: NAMESPACES (empty: all).
    """
    if desired is None:
        if observed is None or not is_owned(observed.mark, owner):
            return None
        assert observed.mark is not None
        source = observed.mark.source
        if not scope.covers(source) or (watched and source.namespace not in watched):
            return None
        if source in held:
            return backend_id
        if observed.mark.policy is ReconcilePolicy.DETACH_ON_DELETE:
            return Refusal(backend_id, Reason.DETACHED, "its Service is gone; detach-on-delete keeps the backend", source)
        return DeleteBackend(observed=observed, source=source)
    if observed is None:
        return CreateBackend(desired)
    if not is_owned(observed.mark, owner):
        who = f"owner '{observed.mark.owner}'" if observed.mark else "no owner mark"
        return Refusal(
            backend_id, Reason.OWNED_BY_OTHER, f"a backend with this id exists with {who}; not overwritten", desired.source
        )
    claimant = observed.mark.source if observed.mark else None
    if claimant is not None and claimant != desired.source:
        if claimant.namespace != desired.source.namespace or claimant.cluster != desired.source.cluster:
            return Refusal(
                backend_id,
                Reason.CLAIMED_BY_OTHER_NAMESPACE,
                f"the backend belongs to Service {claimant} of another namespace; never taken over",
                desired.source,
            )
        if not scope.covers(claimant) or claimant in present:
            return Refusal(
                backend_id,
                Reason.CLAIMED_BY_OTHER_SERVICE,
                f"the backend belongs to Service {claimant}; it moves only once that Service is gone (a namespace or "
                "cluster resync sees that)",
                desired.source,
            )
    diff = diff_specs(desired.spec, observed.spec)
    return UpdateBackend(desired, observed, diff) if diff else backend_id


def plan_backends(
    desired: DesiredSet,
    observed: Mapping[BackendId, ObservedBackend],
    *,
    owner: OwnerId,
    scope: Scope,
    watched: Collection[str] = frozenset(),
) -> BackendPlan:
    """`watched`: NAMESPACES (empty: all). Owned backends made from a namespace outside it are left alone: out
    of scope is not gone."""
    creates: list[BackendChange] = []
    updates: list[BackendChange] = []
    deletes: list[BackendChange] = []
    refusals: list[Refusal] = []
    unchanged: list[BackendId] = []
    for backend_id in sorted(set(desired.backends) | set(observed)):
        verdict = decide(
            backend_id,
            desired.backends.get(backend_id),
            observed.get(backend_id),
            owner=owner,
            scope=scope,
            held=desired.held,
            present=desired.present,
            watched=watched,
        )
        if isinstance(verdict, CreateBackend):
            creates.append(verdict)
        elif isinstance(verdict, UpdateBackend):
            updates.append(verdict)
        elif isinstance(verdict, DeleteBackend):
            deletes.append(verdict)
        elif isinstance(verdict, Refusal):
            refusals.append(verdict)
        elif verdict is not None:
            unchanged.append(verdict)
    marked = [o.mark for o in observed.values() if o.mark is not None and is_owned(o.mark, owner) and scope.covers(o.mark.source)]
    outside = sum(1 for m in marked if watched and m.source.namespace not in watched)
    notes = (
        (f"{outside} owned backend(s) of namespaces outside NAMESPACES left alone ({Reason.OUT_OF_SCOPE.value})",)
        if outside
        else ()
    )
    return BackendPlan(
        changes=(*creates, *updates, *deletes),
        refusals=tuple(refusals),
        unchanged=tuple(unchanged),
        owned_in_scope=len(marked) - outside,
        notes=notes,
    )


def _refuse(change: BackendChange, reason: Reason, message: str) -> Refusal:
    source = change.source if isinstance(change, DeleteBackend) else change.desired.source
    return Refusal(change.id, reason, message, source=source, change=change)


def apply_sync_policy(plan: BackendPlan, policy: SyncPolicy) -> BackendPlan:
    if policy is SyncPolicy.SYNC:
        return plan
    dropped: list[BackendChange]
    if policy is SyncPolicy.UPSERT_ONLY:
        dropped = [c for c in plan.changes if isinstance(c, DeleteBackend)]
        reason, why = Reason.POLICY_UPSERT_ONLY, "SYNC_POLICY upsert-only never deletes"
    else:
        dropped = [c for c in plan.changes if not isinstance(c, CreateBackend)]
        reason, why = Reason.POLICY_CREATE_ONLY, "SYNC_POLICY create-only never updates or deletes"
    kept = tuple(c for c in plan.changes if c not in dropped)
    return replace(plan, changes=kept, refusals=(*plan.refusals, *(_refuse(c, reason, why) for c in dropped)))


def cap_deletes(plan: BackendPlan, *, max_deletes: int, max_fraction: float, allow_mass_delete: bool) -> BackendPlan:
    """Refuse every delete when a run would delete more than max_deletes AND more than max_fraction of owned backends."""
    deletes = [c for c in plan.changes if isinstance(c, DeleteBackend)]
    owned = max(plan.owned_in_scope, 1)
    if allow_mass_delete or len(deletes) <= max_deletes or len(deletes) / owned <= max_fraction:
        return plan
    why = (
        f"would delete {len(deletes)} of {plan.owned_in_scope} owned backends (limit: more than {max_deletes} "
        f"and more than {max_fraction:.0%}); nothing deleted. Set ALLOW_MASS_DELETE=true or pass --allow-mass-delete"
    )
    kept = tuple(c for c in plan.changes if not isinstance(c, DeleteBackend))
    refusals = (*plan.refusals, *(_refuse(c, Reason.DELETE_CAP_REACHED, why) for c in deletes))
    return replace(plan, changes=kept, refusals=refusals, notes=(*plan.notes, why))
