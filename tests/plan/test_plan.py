"""The backend plan as a specification: rounds, ownership, policies and the delete cap. Pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.backends.discovery import Invalid, Pending
from shared.backends.plan import (
    CreateBackend,
    DeleteBackend,
    FieldChange,
    Refusal,
    UpdateBackend,
    apply_sync_policy,
    cap_deletes,
    collect_desired,
    plan_backends,
)
from shared.core import ownership
from shared.core.model import (
    BackendId,
    BackendSpec,
    DesiredBackend,
    ObservedBackend,
    OwnerId,
    OwnerMark,
    Reason,
    ReconcilePolicy,
    ServiceRef,
    SyncPolicy,
)
from shared.core.scope import Scope

OWNER = OwnerId("team-a")
CLUSTER = "aks-prod"
EVERYTHING = Scope(CLUSTER)


def ref(name: str, namespace: str = "shop") -> ServiceRef:
    return ServiceRef(CLUSTER, namespace, name)


def desired(name: str, url: str = "http://10.0.0.1", policy: ReconcilePolicy = ReconcilePolicy.MANAGE) -> DesiredBackend:
    mark = OwnerMark(OWNER, ref(name), policy)
    return DesiredBackend(BackendId(name), ref(name), BackendSpec(url=url, description=ownership.render_mark(mark)), policy)


def observed(
    name: str,
    url: str = "http://10.0.0.1",
    owner: str | None = "team-a",
    policy: ReconcilePolicy = ReconcilePolicy.MANAGE,
    source: ServiceRef | None = None,
) -> ObservedBackend:
    mark = OwnerMark(OwnerId(owner), source or ref(name), policy) if owner else None
    description = ownership.render_mark(mark) if mark else "made by hand in the portal"
    return ObservedBackend(BackendId(name), BackendSpec(url=url, description=description), mark)


def plan_of(wanted: list[DesiredBackend], seen: list[ObservedBackend], scope: Scope = EVERYTHING, problems: tuple = ()):  # type: ignore[no-untyped-def,type-arg]
    return plan_backends(collect_desired([*wanted, *problems]), {o.id: o for o in seen}, owner=OWNER, scope=scope)


def test_first_round_creates_a_backend_for_each_exposed_service() -> None:
    plan = plan_of([desired("b"), desired("a")], [])
    assert plan.changes == (CreateBackend(desired("a")), CreateBackend(desired("b")))
    assert plan.refusals == () and plan.unchanged == ()


def test_second_round_with_nothing_changed_plans_nothing() -> None:
    plan = plan_of([desired("a")], [observed("a")])
    assert plan.changes == () and plan.unchanged == (BackendId("a"),)


def test_url_change_plans_one_update_listing_the_field() -> None:
    plan = plan_of([desired("a", url="http://10.0.0.9")], [observed("a")])
    assert plan.changes == (
        UpdateBackend(
            desired("a", url="http://10.0.0.9"), observed("a"), (FieldChange("url", "http://10.0.0.1", "http://10.0.0.9"),)
        ),
    )


def test_case_default_port_and_trailing_slash_do_not_cause_an_update() -> None:
    plan = plan_of([desired("a", url="HTTP://Orders.Example:80/")], [observed("a", url="http://orders.example")])
    assert plan.changes == ()


def test_header_name_case_and_value_order_do_not_cause_an_update() -> None:
    want = desired("a")
    want = DesiredBackend(
        want.id, want.source, BackendSpec(want.spec.url, want.spec.description, headers=(("X-Token", ("b", "a")),))
    )
    seen = observed("a")
    seen = ObservedBackend(
        seen.id, BackendSpec(seen.spec.url, seen.spec.description, headers=(("x-token", ("a", "b")),)), seen.mark
    )
    assert plan_of([want], [seen]).changes == ()


def test_changes_are_ordered_creates_then_updates_then_deletes() -> None:
    plan = plan_of([desired("c"), desired("b", url="http://10.9.9.9")], [observed("b"), observed("a")])
    assert [type(c) for c in plan.changes] == [CreateBackend, UpdateBackend, DeleteBackend]


def test_backend_owned_by_other_is_refused_not_overwritten() -> None:
    plan = plan_of([desired("a")], [observed("a", owner="team-b")])
    assert plan.changes == ()
    assert [(r.id, r.reason) for r in plan.refusals] == [("a", Reason.OWNED_BY_OTHER)]


def test_unmarked_backend_with_the_wanted_id_is_refused() -> None:
    plan = plan_of([desired("a")], [observed("a", owner=None)])
    assert plan.refusals[0].reason is Reason.OWNED_BY_OTHER and "no owner mark" in plan.refusals[0].message


def test_backends_of_others_are_never_deleted() -> None:
    assert plan_of([], [observed("x", owner="team-b"), observed("y", owner=None)]).changes == ()


def test_owned_backend_whose_service_is_gone_is_deleted() -> None:
    assert plan_of([], [observed("a")]).changes == (DeleteBackend(observed("a"), ref("a")),)


def test_detach_on_delete_backend_is_kept_when_its_service_is_gone() -> None:
    plan = plan_of([], [observed("a", policy=ReconcilePolicy.DETACH_ON_DELETE)])
    assert plan.changes == () and plan.refusals[0].reason is Reason.DETACHED


def test_backend_of_a_pending_or_invalid_service_is_left_alone() -> None:
    problems = (Pending(ref("a"), Reason.ADDRESS_PENDING, "no address"), Invalid(ref("b"), "apim-sync.io/port", "bad"))
    plan = plan_of([], [observed("a"), observed("b")], problems=problems)
    assert plan.changes == () and set(plan.unchanged) == {"a", "b"}


def test_scoped_plan_ignores_owned_backends_outside_the_scope() -> None:
    other_namespace = observed("z", source=ref("z", namespace="billing"))
    plan = plan_of([], [other_namespace], scope=Scope(CLUSTER, namespace="shop"))
    assert plan.changes == ()


def test_two_services_wanting_one_id_are_both_invalid_and_neither_is_created() -> None:
    one = DesiredBackend(BackendId("shared"), ref("a"), desired("a").spec)
    two = DesiredBackend(BackendId("shared"), ref("b"), desired("b").spec)
    result = collect_desired([one, two])
    assert result.backends == {}
    assert {(p.source.name, p.reason) for p in result.problems} == {
        ("a", Reason.DUPLICATE_BACKEND_ID),
        ("b", Reason.DUPLICATE_BACKEND_ID),
    }


def test_upsert_only_turns_deletes_into_refusals() -> None:
    plan = apply_sync_policy(plan_of([desired("b")], [observed("a")]), SyncPolicy.UPSERT_ONLY)
    assert [type(c) for c in plan.changes] == [CreateBackend]
    assert [r.reason for r in plan.refusals] == [Reason.POLICY_UPSERT_ONLY]


def test_create_only_keeps_only_creates() -> None:
    plan = apply_sync_policy(
        plan_of([desired("b"), desired("c", url="http://1.1.1.1")], [observed("a"), observed("c")]), SyncPolicy.CREATE_ONLY
    )
    assert [type(c) for c in plan.changes] == [CreateBackend]
    assert {r.reason for r in plan.refusals} == {Reason.POLICY_CREATE_ONLY}


def test_delete_cap_refuses_every_delete_above_count_and_share() -> None:
    seen = [observed(f"s{i:02}") for i in range(20)]
    plan = cap_deletes(plan_of([], seen), max_deletes=10, max_fraction=0.5, allow_mass_delete=False)
    assert plan.changes == ()
    assert len(plan.refusals) == 20 and {r.reason for r in plan.refusals} == {Reason.DELETE_CAP_REACHED}
    assert "would delete 20 of 20" in plan.notes[0]


def test_delete_cap_allows_many_deletes_when_they_are_a_small_share() -> None:
    wanted = [desired(f"k{i:02}") for i in range(30)]
    seen = [observed(f"k{i:02}") for i in range(30)] + [observed(f"s{i:02}") for i in range(11)]
    plan = cap_deletes(plan_of(wanted, seen), max_deletes=10, max_fraction=0.5, allow_mass_delete=False)
    assert len([c for c in plan.changes if isinstance(c, DeleteBackend)]) == 11


def test_delete_cap_can_be_overridden() -> None:
    seen = [observed(f"s{i:02}") for i in range(20)]
    plan = cap_deletes(plan_of([], seen), max_deletes=10, max_fraction=0.5, allow_mass_delete=True)
    assert len(plan.changes) == 20


def test_plan_does_not_mutate_its_inputs() -> None:
    wanted, seen = [desired("a", url="http://9.9.9.9")], {BackendId("a"): observed("a")}
    before = (list(wanted), dict(seen))
    plan_backends(collect_desired(wanted), seen, owner=OWNER, scope=EVERYTHING)
    assert (wanted, seen) == before


names = st.sampled_from(["a", "b", "c", "d"])
urls = st.sampled_from(["http://10.0.0.1", "http://10.0.0.2", "https://x.example"])


@given(
    wanted=st.dictionaries(names, urls),
    seen=st.dictionaries(names, st.tuples(urls, st.sampled_from(["team-a", "team-b", None]))),
)
def test_applying_a_plan_then_planning_again_yields_nothing(
    wanted: dict[str, str], seen: dict[str, tuple[str, str | None]]
) -> None:
    observed_now = {BackendId(n): observed(n, url=u, owner=o) for n, (u, o) in seen.items()}
    desired_list = [desired(n, url=u) for n, u in wanted.items()]
    plan = plan_backends(collect_desired(desired_list), observed_now, owner=OWNER, scope=EVERYTHING)
    after = dict(observed_now)
    for change in plan.changes:
        if isinstance(change, DeleteBackend):
            del after[change.id]
        else:
            want = change.desired
            after[want.id] = ObservedBackend(want.id, want.spec, ownership.parse_mark(want.spec.description))
    again = plan_backends(collect_desired(desired_list), after, owner=OWNER, scope=EVERYTHING)
    assert again.changes == ()
    assert all(isinstance(r, Refusal) and r.reason is Reason.OWNED_BY_OTHER for r in again.refusals)
