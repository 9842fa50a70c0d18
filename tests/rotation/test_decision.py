"""The next rotation step, decided from what APIM and Kubernetes hold, for every state. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.core.model import BackendId, OwnerId
from shared.rotation.decision import (
    ApimCertificate,
    Ca,
    CreateCa,
    DeleteCertificate,
    IssueCertificate,
    PointBackends,
    RetireCa,
    RotationPolicy,
    RotationState,
    TrustCas,
    Waiting,
    certificate_id,
    next_step,
    parse_certificate_id,
    plan_steps,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = RotationPolicy(certificate_days=90, ca_days=730, propagation=timedelta(minutes=2), grace=DAY)
OLD_CA = Ca("aaaaaaaa", NOW - 100 * DAY, NOW + 630 * DAY)
B1, B2 = BackendId("b1"), BackendId("b2")


def cert(name: str, ca: Ca = OLD_CA, issued_days_ago: float = 10, days: float = 90) -> ApimCertificate:
    issued = NOW - issued_days_ago * DAY
    return ApimCertificate(name, ca.id, issued, issued + days * DAY)


def state(**changes: object) -> RotationState:
    base: dict[str, object] = {
        "cas": (OLD_CA,),
        "bundle": {OLD_CA.id: NOW - 100 * DAY},
        "certificates": (cert("c1"),),
        "backend_references": {B1: ("c1",), B2: ("c1",)},
        "ingress_backends": frozenset({B1, B2}),
    }
    base.update(changes)
    return RotationState(**base)  # type: ignore[arg-type]


def test_nothing_yet_starts_with_a_ca() -> None:
    assert next_step(state(cas=(), bundle=None, certificates=()), NOW, POLICY) == CreateCa("there is no CA yet")


def test_a_ca_not_in_the_bundle_is_trusted_first() -> None:
    step = next_step(state(bundle=None), NOW, POLICY)
    assert step == TrustCas(("aaaaaaaa",), "the trust bundle must hold exactly the CAs in use")


def test_no_certificate_from_the_signing_ca_issues_one() -> None:
    assert isinstance(next_step(state(certificates=()), NOW, POLICY), IssueCertificate)


def test_certificate_with_a_third_of_its_life_left_is_renewed() -> None:
    assert isinstance(next_step(state(certificates=(cert("c1", issued_days_ago=61),)), NOW, POLICY), IssueCertificate)
    assert isinstance(next_step(state(certificates=(cert("c1", issued_days_ago=59),)), NOW, POLICY), Waiting)


def test_forced_rotation_issues_now() -> None:
    assert isinstance(next_step(state(), NOW, POLICY, force="certificate"), IssueCertificate)


def test_backends_move_to_the_newest_certificate_once_uploaded() -> None:
    step = next_step(state(certificates=(cert("c1"), cert("c2", issued_days_ago=0))), NOW, POLICY)
    assert isinstance(step, PointBackends) and step.certificate.id == "c2" and step.backends == (B1, B2)


def test_crash_after_pointing_half_the_backends_points_the_rest() -> None:
    current = state(certificates=(cert("c1"), cert("c2", issued_days_ago=0)), backend_references={B1: ("c2",), B2: ("c1",)})
    step = next_step(current, NOW, POLICY)
    assert isinstance(step, PointBackends) and step.backends == (B2,)


def test_old_certificate_is_kept_through_the_grace_period() -> None:
    switched = state(certificates=(cert("c1"), cert("c2", issued_days_ago=0.5)), backend_references={B1: ("c2",), B2: ("c2",)})
    step = next_step(switched, NOW, POLICY)
    assert isinstance(step, Waiting) and step.until == NOW + 0.5 * DAY


def test_old_certificate_is_deleted_after_the_grace_period() -> None:
    switched = state(certificates=(cert("c1"), cert("c2", issued_days_ago=2)), backend_references={B1: ("c2",), B2: ("c2",)})
    assert isinstance(next_step(switched, NOW, POLICY), DeleteCertificate)


def test_old_certificate_still_referenced_by_any_backend_is_kept() -> None:
    foreign = BackendId("hand-made")
    references = {B1: ("c2",), B2: ("c2",), foreign: ("c1",)}
    switched = state(certificates=(cert("c1"), cert("c2", issued_days_ago=2)), backend_references=references)
    assert isinstance(next_step(switched, NOW, POLICY), Waiting)


def test_ca_due_for_renewal_starts_a_ca_rotation() -> None:
    old = Ca("aaaaaaaa", NOW - 500 * DAY, NOW + 230 * DAY)
    assert isinstance(next_step(state(cas=(old,), bundle={old.id: NOW - 500 * DAY}), NOW, POLICY), CreateCa)


def test_new_ca_is_trusted_alongside_the_old_before_it_signs_anything() -> None:
    new = Ca("bbbbbbbb", NOW, NOW + 730 * DAY)
    step = next_step(state(cas=(OLD_CA, new)), NOW, POLICY)
    assert step == TrustCas(("aaaaaaaa", "bbbbbbbb"), "the trust bundle must hold exactly the CAs in use")


def test_certificate_from_a_new_ca_waits_for_the_ingress_to_reload_the_bundle() -> None:
    new = Ca("bbbbbbbb", NOW, NOW + 730 * DAY)
    fresh = cert("c2", ca=new, issued_days_ago=0)
    current = state(cas=(OLD_CA, new), bundle={OLD_CA.id: NOW - 100 * DAY, new.id: NOW}, certificates=(cert("c1"), fresh))
    step = next_step(current, NOW, POLICY)
    assert isinstance(step, Waiting) and step.until == NOW + timedelta(minutes=2)
    later = next_step(current, NOW + timedelta(minutes=3), POLICY)
    assert isinstance(later, PointBackends) and later.certificate.id == "c2"


def test_old_ca_is_retired_once_no_certificate_from_it_is_left() -> None:
    new = Ca("bbbbbbbb", NOW - 3 * DAY, NOW + 727 * DAY)
    current = state(
        cas=(OLD_CA, new),
        bundle={OLD_CA.id: NOW - 100 * DAY, new.id: NOW - 3 * DAY},
        certificates=(cert("c2", ca=new, issued_days_ago=2),),
        backend_references={B1: ("c2",), B2: ("c2",)},
    )
    assert next_step(current, NOW, POLICY) == RetireCa(
        "aaaaaaaa", "no certificate from CA aaaaaaaa is left; CA bbbbbbbb signs now"
    )


def test_retired_ca_leaves_the_bundle() -> None:
    new = Ca("bbbbbbbb", NOW - 3 * DAY, NOW + 727 * DAY)
    current = state(
        cas=(new,),
        bundle={OLD_CA.id: NOW - 100 * DAY, new.id: NOW - 3 * DAY},
        certificates=(cert("c2", ca=new, issued_days_ago=2),),
        backend_references={B1: ("c2",), B2: ("c2",)},
    )
    assert next_step(current, NOW, POLICY) == TrustCas(("bbbbbbbb",), "the trust bundle must hold exactly the CAs in use")


def test_steady_state_waits_until_the_next_renewal() -> None:
    step = next_step(state(), NOW, POLICY)
    assert isinstance(step, Waiting) and step.until == NOW - 10 * DAY + 60 * DAY


def test_dry_run_plan_from_nothing_lists_every_step_in_order() -> None:
    steps, waiting = plan_steps(state(cas=(), bundle=None, certificates=(), backend_references={}), NOW, POLICY)
    assert [type(s).__name__ for s in steps] == ["CreateCa", "TrustCas", "IssueCertificate"]
    assert "not trusted long enough" in waiting.why


@pytest.mark.parametrize("entity_id", ["tempcert", "apim-sync-00000000-20261128120000-aaaaaaaa", "apim-sync-xx"])
def test_foreign_certificate_ids_are_not_ours(entity_id: str) -> None:
    assert parse_certificate_id(OwnerId("owner-a"), entity_id) is None


def test_certificate_ids_name_issue_time_and_ca_and_sort_by_age() -> None:
    first = certificate_id(OwnerId("o"), NOW, "aaaaaaaa")
    second = certificate_id(OwnerId("o"), NOW + DAY, "aaaaaaaa")
    assert first < second and len(first) <= 80
    assert parse_certificate_id(OwnerId("o"), first) == (NOW, "aaaaaaaa")


def test_of_two_certificates_issued_in_one_second_the_newer_cas_is_presented() -> None:
    from datetime import UTC, datetime, timedelta

    from shared.rotation.decision import ApimCertificate, Ca, RotationPolicy, RotationState, active_certificate

    second = datetime(2026, 12, 2, 8, 0, 0, tzinfo=UTC)
    old_ca = Ca("oldca", second - timedelta(days=30), second + timedelta(days=300))
    new_ca = Ca("newca", second, second + timedelta(days=365))
    certificates = (
        ApimCertificate("c-new", "newca", second, second + timedelta(days=90)),
        ApimCertificate("c-old", "oldca", second, second + timedelta(days=90)),
    )
    for listed in (certificates, certificates[::-1]):
        state = RotationState(
            cas=(old_ca, new_ca),
            bundle={"oldca": second - timedelta(days=30), "newca": second - timedelta(minutes=5)},
            certificates=listed,
        )
        chosen = active_certificate(state, second + timedelta(minutes=1), RotationPolicy(propagation=timedelta(minutes=2)))
        assert chosen is not None and chosen.ca_id == "newca"


def test_two_certificates_issued_in_one_second_have_two_ids_and_older_ids_still_parse() -> None:
    from datetime import UTC, datetime

    from shared.core.model import OwnerId
    from shared.rotation.decision import certificate_id, parse_certificate_id

    owner = OwnerId("team")
    first, second = datetime(2026, 12, 2, 8, 0, 0, 100_000, UTC), datetime(2026, 12, 2, 8, 0, 0, 900_000, UTC)
    assert certificate_id(owner, first, "abcd0123") != certificate_id(owner, second, "abcd0123")
    assert parse_certificate_id(owner, certificate_id(owner, second, "abcd0123")) == (second, "abcd0123")
    older = certificate_id(owner, first, "abcd0123").replace("100-abcd0123", "-abcd0123")
    assert parse_certificate_id(owner, older) == (first.replace(microsecond=0), "abcd0123")
