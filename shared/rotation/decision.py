"""Decide the next step of the mTLS rotation from what APIM and Kubernetes hold now.

Pure: (state, policy, now) -> the next step, or why there is none yet. The executor does that one step,
reads the world again and asks again, so a run that stops halfway is finished by the next one, and no
state is kept anywhere but in APIM (certificate entities, backend references) and Kubernetes (the CA
Secret, the trust bundle Secret and when each CA entered it).

The order is what makes rotation safe (cert-manager / trust-manager's CA overlap):

    1. CreateCa            no CA yet, or the signing CA is due for renewal (or a CA rotation is forced)
    2. TrustCas            the bundle must hold every CA we have (a new one is trusted before it signs
                           anything that is used; a retired one leaves it)
    3. IssueCertificate    no usable certificate from the signing CA, or the newest is due (or forced)
    4. PointBackends       owned ingress backends move to the active certificate: the newest whose CA
                           has been in the bundle for the propagation time
    5. DeleteCertificate   ours, referenced by no backend, older than the active one, grace passed
    6. RetireCa            not the signing CA, and no certificate of ours from it is left in APIM
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from shared.core.model import BackendId, OwnerId

_TIMESTAMP = "%Y%m%d%H%M%S"


@dataclass(frozen=True)
class RotationPolicy:
    certificate_days: int = 90
    ca_days: int = 730
    renew_fraction: float = 1 / 3
    propagation: timedelta = timedelta(minutes=2)
    grace: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class Ca:
    id: str
    not_before: datetime
    not_after: datetime

    def due(self, now: datetime, fraction: float) -> bool:
        return now >= self.not_after - (self.not_after - self.not_before) * fraction


@dataclass(frozen=True)
class ApimCertificate:
    """One of our certificate entities in APIM; issued time and CA come from its id."""

    id: str
    ca_id: str
    issued_at: datetime
    expires: datetime
    resource_id: str = ""

    def due(self, now: datetime, fraction: float) -> bool:
        return now >= self.expires - (self.expires - self.issued_at) * fraction


@dataclass(frozen=True)
class RotationState:
    cas: tuple[Ca, ...]
    bundle: Mapping[str, datetime] | None
    """CA id -> when it entered the trust bundle; None when the bundle Secret does not exist."""
    certificates: tuple[ApimCertificate, ...]
    backend_references: Mapping[BackendId, tuple[str, ...]] = field(default_factory=dict)
    """Every backend in APIM -> the certificate entity ids its credentials reference (lower-case)."""
    ingress_backends: frozenset[BackendId] = frozenset()
    """Owned backends of ingress-mode Services: the ones that present the client certificate."""


@dataclass(frozen=True)
class CreateCa:
    why: str


@dataclass(frozen=True)
class TrustCas:
    ca_ids: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class IssueCertificate:
    ca_id: str
    why: str


@dataclass(frozen=True)
class PointBackends:
    certificate: ApimCertificate
    backends: tuple[BackendId, ...]
    why: str


@dataclass(frozen=True)
class DeleteCertificate:
    certificate_id: str
    why: str


@dataclass(frozen=True)
class RetireCa:
    ca_id: str
    why: str


Step = CreateCa | TrustCas | IssueCertificate | PointBackends | DeleteCertificate | RetireCa


@dataclass(frozen=True)
class Waiting:
    """No step now; `until` is when the next one becomes possible (None: nothing is pending)."""

    why: str
    until: datetime | None = None


def certificate_prefix(owner: OwnerId) -> str:
    """Our certificate entity ids start with this: a hash of the owner keeps deployments apart in 80 characters."""
    return f"apim-sync-{hashlib.sha256(owner.encode()).hexdigest()[:8]}-"


def certificate_id(owner: OwnerId, issued_at: datetime, ca_id: str) -> str:
    """Newest is recognisable: ids sort by issue time, to the millisecond (two rotations in one second are two
    certificates, not one overwritten). The CA that signed it is the suffix."""
    at = issued_at.astimezone(UTC)
    return f"{certificate_prefix(owner)}{at.strftime(_TIMESTAMP)}{at.microsecond // 1000:03d}-{ca_id}"


def parse_certificate_id(owner: OwnerId, entity_id: str) -> tuple[datetime, str] | None:
    """(issued at, CA id) of one of our ids; None for any other entity, which is never touched."""
    prefix = certificate_prefix(owner)
    if not entity_id.startswith(prefix):
        return None
    matched = re.fullmatch(r"(\d{14})(\d{3})?-([0-9a-f]{8})", entity_id[len(prefix) :])  # ms since 2026-12
    if matched is None:
        return None
    issued = datetime.strptime(matched[1], _TIMESTAMP).replace(tzinfo=UTC, microsecond=int(matched[2] or 0) * 1000)
    return issued, matched[3]


def signing_ca(state: RotationState) -> Ca | None:
    return max(state.cas, key=lambda ca: ca.not_before, default=None)


def active_certificate(state: RotationState, now: datetime, policy: RotationPolicy) -> ApimCertificate | None:
    """The newest unexpired certificate whose CA is ours and has been trusted for the propagation time."""
    ours = {ca.id for ca in state.cas}
    usable = [
        c
        for c in state.certificates
        if c.ca_id in ours
        and c.expires > now
        and state.bundle is not None
        and c.ca_id in state.bundle
        and now >= state.bundle[c.ca_id] + policy.propagation
    ]
    return max(usable, key=age_order(state), default=None)


def age_order(state: RotationState) -> Callable[[ApimCertificate], tuple[datetime, datetime, str]]:
    """Older to newer: by issue time; of two issued at once, the newer CA's is the newer (a CA rotation right
    after a certificate rotation), then the id, so no decision ever depends on listing order."""
    ca_since = {ca.id: ca.not_before for ca in state.cas}
    floor = datetime.min.replace(tzinfo=UTC)
    return lambda c: (c.issued_at, ca_since.get(c.ca_id, floor), c.id)


def next_step(state: RotationState, now: datetime, policy: RotationPolicy, *, force: str | None = None) -> Step | Waiting:
    """`force`: "certificate" issues a new client certificate now; "ca" starts a CA rotation now."""
    signing = signing_ca(state)
    if signing is None:
        return CreateCa("there is no CA yet")
    if force == "ca":
        return CreateCa("a CA rotation was asked for")
    if signing.due(now, policy.renew_fraction):
        return CreateCa(f"CA {signing.id} expires {signing.not_after:%Y-%m-%d}; renewing with a third of its lifetime left")

    wanted = tuple(sorted(ca.id for ca in state.cas))
    if state.bundle is None or tuple(sorted(state.bundle)) != wanted:
        return TrustCas(wanted, "the trust bundle must hold exactly the CAs in use")

    from_signing = [c for c in state.certificates if c.ca_id == signing.id and c.expires > now]
    newest = max(from_signing, key=age_order(state), default=None)
    if force == "certificate":
        return IssueCertificate(signing.id, "a rotation was asked for")
    if newest is None:
        return IssueCertificate(signing.id, f"no usable client certificate from CA {signing.id}")
    if newest.due(now, policy.renew_fraction):
        return IssueCertificate(signing.id, f"{newest.id} expires {newest.expires:%Y-%m-%d %H:%M}; renewing")

    active = active_certificate(state, now, policy)
    if active is None:
        trusted_at = state.bundle.get(newest.ca_id)
        until = trusted_at + policy.propagation if trusted_at else None
        return Waiting(f"CA {newest.ca_id} is not trusted long enough for the ingress to have reloaded it", until)
    behind = tuple(sorted(b for b in state.ingress_backends if state.backend_references.get(b, ()) != (active.id.lower(),)))
    if behind:
        return PointBackends(active, behind, f"{len(behind)} ingress backend(s) do not present {active.id}")

    referenced = {ref for refs in state.backend_references.values() for ref in refs}
    older = age_order(state)
    for certificate in sorted(state.certificates, key=older):
        if certificate.id == active.id or older(certificate) >= older(active):
            continue
        if certificate.id.lower() in referenced:
            continue
        if now >= active.issued_at + policy.grace or certificate.expires <= now:
            return DeleteCertificate(certificate.id, f"superseded by {active.id}, referenced by no backend, grace passed")

    for ca in state.cas:
        if ca.id != signing.id and not any(c.ca_id == ca.id for c in state.certificates):
            return RetireCa(ca.id, f"no certificate from CA {ca.id} is left; CA {signing.id} signs now")

    return _waiting(state, now, policy, signing, newest, active)


def _waiting(
    state: RotationState, now: datetime, policy: RotationPolicy, signing: Ca, newest: ApimCertificate, active: ApimCertificate
) -> Waiting:
    if newest.id != active.id:
        trusted_at = state.bundle.get(newest.ca_id) if state.bundle else None
        until = trusted_at + policy.propagation if trusted_at else None
        return Waiting(f"{newest.id} waits until the ingress trusts CA {newest.ca_id}", until)
    pending = [c for c in state.certificates if age_order(state)(c) < age_order(state)(active)]
    if pending:
        return Waiting(f"{len(pending)} old certificate(s) kept for the grace period", active.issued_at + policy.grace)
    renew_at = min(
        newest.expires - (newest.expires - newest.issued_at) * policy.renew_fraction,
        signing.not_after - (signing.not_after - signing.not_before) * policy.renew_fraction,
    )
    return Waiting(f"{active.id} is in use; next renewal due", renew_at)


def simulate(
    state: RotationState, step: Step, now: datetime, policy: RotationPolicy, *, new_ca_id: str = "00000000"
) -> RotationState:
    """The state after `step`, as the executor would leave it; lets a dry run show every step, not just the first."""
    if isinstance(step, CreateCa):
        ca = Ca(new_ca_id, now, now + timedelta(days=policy.ca_days))
        return replace(state, cas=(*state.cas, ca))
    if isinstance(step, TrustCas):
        old = state.bundle or {}
        return replace(state, bundle={ca_id: old.get(ca_id, now) for ca_id in step.ca_ids})
    if isinstance(step, IssueCertificate):
        ca = next(c for c in state.cas if c.id == step.ca_id)
        expires = min(now + timedelta(days=policy.certificate_days), ca.not_after)
        certificate = ApimCertificate(f"(new certificate from CA {step.ca_id})", step.ca_id, now, expires)
        return replace(state, certificates=(*state.certificates, certificate))
    if isinstance(step, PointBackends):
        references = dict(state.backend_references)
        references.update({b: (step.certificate.id.lower(),) for b in step.backends})
        return replace(state, backend_references=references)
    if isinstance(step, DeleteCertificate):
        return replace(state, certificates=tuple(c for c in state.certificates if c.id != step.certificate_id))
    return replace(state, cas=tuple(c for c in state.cas if c.id != step.ca_id))


def remaining_force(force: str | None, done: Step) -> str | None:
    """A forced rotation is used up by the step it asked for."""
    if (force == "ca" and isinstance(done, CreateCa)) or (force == "certificate" and isinstance(done, IssueCertificate)):
        return None
    return force


def plan_steps(
    state: RotationState, now: datetime, policy: RotationPolicy, *, force: str | None = None, limit: int = 12
) -> tuple[list[Step], Waiting]:
    """Every step a run would take from `state` at `now`, and what it would then wait for."""
    steps: list[Step] = []
    for _ in range(limit):
        decided = next_step(state, now, policy, force=force)
        if isinstance(decided, Waiting):
            return steps, decided
        force = remaining_force(force, decided)
        steps.append(decided)
        state = simulate(state, decided, now, policy, new_ca_id=f"(new CA {len(steps)})")
    return steps, Waiting("stopped after too many steps; the next run goes on")


# -- Key Vault as the certificate's source ------------------------------------------------------------------


@dataclass(frozen=True)
class KeyVaultVersion:
    """One version of the Key Vault certificate (its secret): what is needed to order a rotation, no key."""

    version: str
    issuer_id: str | None
    """The short id of the CA that signed it (the chain in the secret, or KEYVAULT_ISSUER_CA); None: unknown."""
    expires: datetime


@dataclass(frozen=True)
class KeyVaultState:
    latest: KeyVaultVersion
    presented: KeyVaultVersion | None
    """The version APIM's certificate entity references (None: no entity yet, or a versionless reference)."""
    bundle: Mapping[str, datetime] | None
    """CA id -> when it entered the trust bundle."""


@dataclass(frozen=True)
class ReferenceVersion:
    version: str
    why: str


KeyVaultStep = TrustCas | ReferenceVersion | RetireCa


def keyvault_next_step(state: KeyVaultState, now: datetime, policy: RotationPolicy) -> KeyVaultStep | Waiting:
    """Trust the new version's issuer next to the one in use, wait until the ingress has it, then move APIM's
    reference to the new version, then stop trusting the old issuer: no moment in which APIM presents a
    certificate whose issuer the ingress does not trust.

        1. TrustCas          the issuers of the presented and the latest version are not all in the bundle
        2. ReferenceVersion  APIM presents an older version, and the latest's issuer is trusted long enough
        3. RetireCa          APIM presents the latest version; another issuer is still trusted
    """
    latest, presented = state.latest, state.presented
    if latest.issuer_id is None:
        return Waiting(f"the issuer of Key Vault version {latest.version} is unknown: add its chain or KEYVAULT_ISSUER_CA")
    bundle = dict(state.bundle or {})
    wanted = {latest.issuer_id} | ({presented.issuer_id} if presented and presented.issuer_id else set())
    missing = sorted(wanted - set(bundle))
    if missing:
        keep = sorted(set(bundle) | wanted)
        return TrustCas(tuple(keep), f"the ingress must trust issuer(s) {', '.join(missing)} before APIM presents them")
    if presented is None or presented.version != latest.version:
        trusted_at = bundle[latest.issuer_id]
        if now < trusted_at + policy.propagation:
            return Waiting(
                f"version {latest.version} waits until the ingress trusts issuer {latest.issuer_id}",
                trusted_at + policy.propagation,
            )
        return ReferenceVersion(latest.version, f"Key Vault holds a newer version ({latest.version}); its issuer is trusted")
    for ca_id in sorted(set(bundle) - {latest.issuer_id}):
        return RetireCa(ca_id, f"no version APIM presents comes from issuer {ca_id} any more")
    if latest.expires <= now:
        return Waiting(f"Key Vault version {latest.version} expired at {latest.expires.isoformat()}: renew it in Key Vault")
    return Waiting(f"version {latest.version} is presented; Key Vault renews it", latest.expires)
