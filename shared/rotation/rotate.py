"""One rotation run: take the lock, then read -> decide one step -> do it, until there is nothing to do.

Everything it knows is read again before each step (APIM's certificate entities and backend references,
the CA and trust bundle Secrets), so a run that dies halfway is finished by the next. Private keys and
PFX passwords are never logged, reported or put in an error message.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from shared.backends.exposure import Exposure, of_view
from shared.core import errors
from shared.core.annotations import NGINX_AUTH_TLS_SECRET, NGINX_AUTH_TLS_VERIFY_CLIENT, SECRET_OWNER, TRUSTED_SINCE_PREFIX
from shared.core.model import BackendId, OwnerId
from shared.core.reporting import RunError
from shared.core.scope import Scope
from shared.core.settings import CertificateSource, MtlsSettings
from shared.rotation import decision as rotation
from shared.rotation.report import RotationReport
from shared.runtime import telemetry
from shared.runtime.cluster import read_cluster, with_retries
from shared.runtime.ports import CaStore, Dependencies, Lease

MAX_STEPS = 12
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)

log = logging.getLogger(__name__)


def policy_of(mtls: MtlsSettings) -> rotation.RotationPolicy:
    return rotation.RotationPolicy(
        certificate_days=mtls.certificate_days,
        ca_days=mtls.ca_days,
        renew_fraction=mtls.renew_fraction,
        propagation=timedelta(seconds=mtls.propagation_seconds),
        grace=timedelta(seconds=mtls.grace_seconds),
    )


@dataclass
class World:
    """What one read found: the decision's input, and what executing a step needs besides."""

    state: rotation.RotationState
    ca_pems: Mapping[str, tuple[bytes, bytes]]
    ca_store: CaStore
    """The store the CAs were read from; it writes them back (with the version it read)."""
    bundle_secret: dict[str, Any] | None
    exposure: Exposure
    """What the run read of the cluster and worked out from it, once: rotation steps change neither."""


def rotate(
    deps: Dependencies,
    *,
    dry_run: bool = False,
    force: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> RotationReport:
    """One rotation run, as one trace; its outcome and the certificates' days left become metrics."""
    clock = clock or deps.wall_clock
    with deps.telemetry.span("aks_apim_sync.rotation", {"dry_run": str(dry_run).lower(), "force": force or "none"}):
        report = _locked(deps, dry_run=dry_run, force=force, clock=clock)
        steps = [str(step.get("step")) for step in report.steps]
        log.info("rotation finished", extra={"steps": steps, "failed": report.failed, "skipped": report.skipped is not None})
    if not dry_run and report.skipped is None:
        deps.telemetry.emit(telemetry.rotation_points(report.to_json(), failed=report.failed, now=clock()))
    return report


def _locked(deps: Dependencies, *, dry_run: bool, force: str | None, clock: Callable[[], datetime]) -> RotationReport:
    mtls = deps.settings.mtls
    if mtls.source is CertificateSource.NONE:
        return RotationReport(dry_run=dry_run, skipped="CLIENT_CERTIFICATE_SOURCE is none")
    if dry_run:
        return _run(deps, dry_run=True, force=force, clock=clock, lease=None)
    if not mtls.storage_connection and not mtls.storage_blob_uri:
        error = RunError(
            "InvalidSettings",
            "AzureWebJobsStorage (or AzureWebJobsStorage__blobServiceUri) is missing: rotation needs its lock",
            retryable=False,
        )
        return RotationReport(dry_run=False, error=error)
    try:
        with deps.lease("rotation") as lease:
            return _run(deps, dry_run=False, force=force, clock=clock, lease=lease)
    except errors.LeaseHeld:
        return RotationReport(dry_run=False, skipped="another rotation holds the lock; it does the work")
    except errors.SyncError as error:
        return RotationReport(dry_run=False, error=RunError.of(error))


def _run(
    deps: Dependencies, *, dry_run: bool, force: str | None, clock: Callable[[], datetime], lease: Lease | None
) -> RotationReport:
    policy = policy_of(deps.settings.mtls)
    done: list[dict[str, Any]] = []
    try:
        if deps.settings.mtls.source is CertificateSource.KEYVAULT:
            return _keyvault_run(deps, dry_run=dry_run, clock=clock)
        world = read_world(deps, _exposure(deps))
        if dry_run:
            steps, waiting = rotation.plan_steps(world.state, clock(), policy, force=force)
            planned = [{"step": type(s).__name__, "why": s.why, "outcome": "planned"} for s in steps]
            return _report(world, planned, waiting, dry_run=True)
        for _ in range(MAX_STEPS):
            decided = rotation.next_step(world.state, clock(), policy, force=force)
            if isinstance(decided, rotation.Waiting):
                done.extend(_annotate_ingresses(deps, world))
                done.extend(_trust_on_gateways(deps, world))
                return _report(world, done, decided, dry_run=False)
            edited = isinstance(decided, rotation.TrustCas) and hand_edited(world.bundle_secret)
            _execute(decided, world, deps, clock())
            done.append(_step_entry(decided.why, type(decided).__name__, "applied", restored=edited))
            force = rotation.remaining_force(force, decided)
            if lease is not None:
                lease.renew()
            world = read_world(deps, world.exposure)
        return _report(world, done, rotation.Waiting("stopped after too many steps; the next run goes on"), dry_run=False)
    except errors.SyncError as error:
        return RotationReport(dry_run=dry_run, steps=tuple(done), error=RunError.of(error))


def _step_entry(why: str, step: str, outcome: str, *, restored: bool = False) -> dict[str, Any]:
    """A step of the report; `restored`: it put back a trust bundle someone had edited by hand."""
    entry = {"step": step, "why": why, "outcome": outcome}
    if restored:
        entry.update(reason="Restored", why=f"the trust bundle was edited by hand and is put back; {why}")
    return entry


def hand_edited(bundle_secret: Mapping[str, Any] | None) -> bool:
    """Our writes keep `ca.crt` and the trusted-since annotations in step: a CA in one and not in the other
    means someone else changed the bundle."""
    from shared.rotation import pki

    if bundle_secret is None:
        return False
    annotations = (bundle_secret.get("metadata") or {}).get("annotations") or {}
    noted = {k.removeprefix(TRUSTED_SINCE_PREFIX) for k in annotations if k.startswith(TRUSTED_SINCE_PREFIX)}
    try:
        held = {pki.cert_info(pem).short_id for pem in pki.split_pem_bundle(_decoded(bundle_secret).get("ca.crt", b""))}
    except ValueError:
        return True
    return noted != held


# -- reading -------------------------------------------------------------------------------------------


def _decoded(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    data = (secret or {}).get("data") or {}
    return {key: base64.b64decode(value) for key, value in data.items()}


def _ours(secret: Mapping[str, Any] | None, owner: OwnerId, what: str) -> None:
    if secret is None:
        return
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    if annotations.get(SECRET_OWNER) != owner:
        raise errors.OwnershipConflict(f"{what} exists but is not owned by '{owner}'; not touched")


class SecretCaStore:
    """ca-<id>.crt / ca-<id>.key in the Secret CERT_NAMESPACE/CA_SECRET_NAME; writes carry its resourceVersion."""

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps
        self.secret: dict[str, Any] | None = None

    def read(self) -> dict[str, tuple[bytes, bytes]]:
        mtls = self._deps.settings.mtls
        self.secret = self._deps.secrets.get_secret(mtls.namespace, mtls.ca_store)
        _ours(self.secret, self._deps.settings.sync.owner_id, f"Secret {mtls.namespace}/{mtls.ca_store}")
        files = _decoded(self.secret)
        return {
            name[3:-4]: (pem, files.get(f"{name[:-4]}.key", b""))
            for name, pem in files.items()
            if name.startswith("ca-") and name.endswith(".crt")
        }

    def write(self, current: Mapping[str, tuple[bytes, bytes]], changes: Mapping[str, tuple[bytes, bytes] | None]) -> None:
        data: dict[str, bytes | None] = {}
        for ca_id, material in changes.items():
            data[f"ca-{ca_id}.crt"], data[f"ca-{ca_id}.key"] = material if material is not None else (None, None)
        _write_secret(self._deps, self.secret, self._deps.settings.mtls.ca_store, data, {})


def ca_store(deps: Dependencies) -> CaStore:
    if deps.ca_store is not None:
        return deps.ca_store
    return SecretCaStore(deps)


def _read_trust(
    deps: Dependencies,
) -> tuple[list[rotation.Ca], dict[str, tuple[bytes, bytes]], dict[str, datetime] | None, CaStore, Any]:
    """The CAs (CA store), the bundle (bundle Secret), the store and the raw bundle Secret: two reads."""
    from shared.rotation import pki

    mtls, owner = deps.settings.mtls, deps.settings.sync.owner_id
    store = ca_store(deps)
    ca_pems = with_retries(deps, store.read)
    cas: list[rotation.Ca] = []
    for ca_id, (cert_pem, _key) in sorted(ca_pems.items()):
        info = pki.cert_info(cert_pem)
        cas.append(rotation.Ca(ca_id, info.not_before, info.not_after))

    bundle_secret = with_retries(deps, lambda: deps.secrets.get_secret(mtls.namespace, mtls.trust_bundle))
    _ours(bundle_secret, owner, f"Secret {mtls.namespace}/{mtls.trust_bundle}")
    bundle: dict[str, datetime] | None = None
    if bundle_secret is not None:
        annotations = (bundle_secret.get("metadata") or {}).get("annotations") or {}
        bundle = {}
        for pem in pki.split_pem_bundle(_decoded(bundle_secret).get("ca.crt", b"")):
            ca_id = pki.cert_info(pem).short_id
            since = annotations.get(TRUSTED_SINCE_PREFIX + ca_id)
            bundle[ca_id] = datetime.fromisoformat(since) if since else LONG_AGO
    return cas, ca_pems, bundle, store, bundle_secret


def _read_certificates(deps: Dependencies) -> list[rotation.ApimCertificate]:
    owner = deps.settings.sync.owner_id
    certificates: list[rotation.ApimCertificate] = []
    for entity in with_retries(deps, deps.certificates.list_certificates):
        parsed = rotation.parse_certificate_id(owner, str(entity.get("name") or ""))
        if parsed is None:
            continue
        expires = datetime.fromisoformat(str((entity.get("properties") or {}).get("expirationDate")).replace("Z", "+00:00"))
        certificates.append(
            rotation.ApimCertificate(str(entity["name"]), parsed[1], parsed[0], expires, str(entity.get("id") or ""))
        )
    return certificates


def read_world(deps: Dependencies, exposure: Exposure) -> World:
    owner = deps.settings.sync.owner_id
    cas, ca_pems, bundle, store, bundle_secret = _read_trust(deps)
    certificates = _read_certificates(deps)
    observed = with_retries(deps, deps.backends.list_backends)
    references = {backend_id: backend.certificate_ids for backend_id, backend in observed.items()}
    owned = {b for b, o in observed.items() if o.mark is not None and o.mark.owner == owner}
    state = rotation.RotationState(
        cas=tuple(cas),
        bundle=bundle,
        certificates=tuple(certificates),
        backend_references=references,
        ingress_backends=frozenset(owned & {BackendId(b) for b in exposure.client_certificate_backends()}),
    )
    return World(state, ca_pems, store, bundle_secret, exposure)


def ingress_backends_among(exposure: Exposure, backend_ids: Sequence[str]) -> list[BackendId]:
    wanted = exposure.client_certificate_backends()
    return [BackendId(b) for b in backend_ids if b in wanted]


def present_active_certificate(deps: Dependencies, backend_ids: Sequence[BackendId]) -> int:
    """Give ingress backends that a sync just created or changed the certificate in use, without waiting for
    the next rotation run. Reads the two Secrets and the certificate list, then one GET and PUT per backend.
    Returns how many backends were pointed.
    """
    mtls, owner = deps.settings.mtls, deps.settings.sync.owner_id
    if mtls.source is CertificateSource.NONE or not backend_ids:
        return 0
    if mtls.source is CertificateSource.KEYVAULT:
        entity_id = f"{rotation.certificate_prefix(owner)}keyvault"
        reference = f"{deps.settings.apim.service_id}/certificates/{entity_id}"
        if not any(e.get("name") == entity_id for e in with_retries(deps, deps.certificates.list_certificates)):
            return 0
    else:
        cas, _, bundle, _, _ = _read_trust(deps)
        state = rotation.RotationState(cas=tuple(cas), bundle=bundle, certificates=tuple(_read_certificates(deps)))
        active = rotation.active_certificate(state, deps.wall_clock(), policy_of(mtls))
        if active is None:
            return 0
        reference = active.resource_id or f"{deps.settings.apim.service_id}/certificates/{active.id}"
    pointed = 0
    for backend_id in backend_ids:
        if with_retries(deps, lambda b=backend_id: deps.backends.set_backend_certificates(b, [reference], owner=owner)):  # type: ignore[misc]
            pointed += 1
    return pointed


def _exposure(deps: Dependencies) -> Exposure:
    return of_view(read_cluster(Scope(deps.settings.kube.cluster_name), deps), deps.settings)


# -- doing ---------------------------------------------------------------------------------------------


def _secret_body(
    name: str, namespace: str, owner: str, data: Mapping[str, bytes], annotations: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "aks-apim-sync"},
            "annotations": {SECRET_OWNER: owner, **annotations},
        },
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def _write_secret(
    deps: Dependencies,
    existing: dict[str, Any] | None,
    name: str,
    data: Mapping[str, bytes | None],
    annotations: Mapping[str, str | None],
) -> None:
    mtls, owner = deps.settings.mtls, deps.settings.sync.owner_id
    if existing is None:
        present = {k: v for k, v in data.items() if v is not None}
        notes = {k: v for k, v in annotations.items() if v is not None}
        deps.secrets.create_secret(mtls.namespace, _secret_body(name, mtls.namespace, owner, present, notes))
        return
    patch = {
        "metadata": {"resourceVersion": existing["metadata"]["resourceVersion"], "annotations": dict(annotations)},
        "data": {key: base64.b64encode(value).decode() if value is not None else None for key, value in data.items()},
    }
    deps.cluster_writer.patch("Secret", mtls.namespace, name, patch)


def _execute(step: rotation.Step, world: World, deps: Dependencies, now: datetime) -> None:
    from shared.rotation import pki

    mtls, owner = deps.settings.mtls, deps.settings.sync.owner_id
    if isinstance(step, rotation.CreateCa):
        material = pki.new_ca(f"aks-apim-sync client CA ({owner})", now=now, days=mtls.ca_days, kind=mtls.key_kind)
        ca_id = material.info.short_id
        with_retries(deps, lambda: world.ca_store.write(world.ca_pems, {ca_id: (material.cert_pem, material.key_pem)}))
    elif isinstance(step, rotation.TrustCas):
        pem = b"".join(world.ca_pems[ca_id][0] for ca_id in step.ca_ids)
        old = world.state.bundle or {}
        notes: dict[str, str | None] = {
            TRUSTED_SINCE_PREFIX + c: (old.get(c) or now).isoformat() for c in step.ca_ids if c not in old
        }
        notes.update({TRUSTED_SINCE_PREFIX + c: None for c in old if c not in step.ca_ids})
        _write_secret(deps, world.bundle_secret, mtls.trust_bundle, {"ca.crt": pem}, notes)
    elif isinstance(step, rotation.IssueCertificate):
        cert_pem, key_pem = world.ca_pems[step.ca_id]
        client = pki.issue_client(
            pki.Material(cert_pem, key_pem),
            deps.settings.apim.service_name,
            now=now,
            days=mtls.certificate_days,
            kind=mtls.key_kind,
        )
        taken = {c.id for c in world.state.certificates}
        issued_at = now.replace(microsecond=0)
        while rotation.certificate_id(owner, issued_at, step.ca_id) in taken:
            issued_at += timedelta(seconds=1)
        entity_id = rotation.certificate_id(owner, issued_at, step.ca_id)
        pfx, password = pki.to_pfx(client, entity_id)
        properties = {"data": base64.b64encode(pfx).decode(), "password": password}
        with_retries(deps, lambda: deps.certificates.put_certificate(entity_id, properties))
    elif isinstance(step, rotation.PointBackends):
        reference = step.certificate.resource_id or f"{deps.settings.apim.service_id}/certificates/{step.certificate.id}"
        for backend_id in step.backends:
            with_retries(deps, lambda b=backend_id: deps.backends.set_backend_certificates(b, [reference], owner=owner))  # type: ignore[misc]
    elif isinstance(step, rotation.DeleteCertificate):
        with_retries(deps, lambda: deps.certificates.delete_certificate(step.certificate_id))
    else:
        with_retries(deps, lambda: world.ca_store.write(world.ca_pems, {step.ca_id: None}))


def _annotate_ingresses(deps: Dependencies, world: World) -> list[dict[str, Any]]:
    """Managed Ingresses check client certificates against the bundle: set the two auth-tls annotations."""
    if world.state.bundle is None:
        return []
    mtls = deps.settings.mtls
    wanted = {NGINX_AUTH_TLS_SECRET: f"{mtls.namespace}/{mtls.trust_bundle}", NGINX_AUTH_TLS_VERIFY_CLIENT: "on"}
    done = []
    for ingress in world.exposure.managed_ingresses():
        if all(ingress.annotations.get(k) == v for k, v in wanted.items()):
            continue
        patch = {"metadata": {"resourceVersion": ingress.resource_version, "annotations": wanted}}
        with_retries(deps, lambda i=ingress, p=patch: deps.cluster_writer.patch("Ingress", i.namespace, i.name, p))  # type: ignore[misc]
        why = f"Ingress {ingress.namespace}/{ingress.name} must check client certificates"
        done.append({"step": "AnnotateIngress", "why": why, "outcome": "applied"})
    return done


def _trust_on_gateways(deps: Dependencies, world: World) -> list[dict[str, Any]]:
    """Managed Gateways (Gateway API) validate client certificates against a copy of the bundle: the ConfigMap
    `<TRUST_BUNDLE_SECRET_NAME>` (key ca.crt) in the Gateway's namespace, kept equal to the bundle Secret, and
    referenced from spec.tls.frontend.default.validation.caCertificateRefs. Nothing else on the Gateway is
    touched; a ConfigMap of that name that is not ours is reported and left alone."""
    if world.state.bundle is None:
        return []
    mtls, owner = deps.settings.mtls, deps.settings.sync.owner_id
    bundle = _bundle_pem(world.bundle_secret).decode()
    ours = {"group": "", "kind": "ConfigMap", "name": mtls.trust_bundle}
    done: list[dict[str, Any]] = []
    for gateway in world.exposure.managed_gateways():
        metadata = gateway.get("metadata") or {}
        namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
        where = f"ConfigMap {namespace}/{mtls.trust_bundle}"
        existing = with_retries(deps, lambda n=namespace: deps.secrets.get_configmap(n, mtls.trust_bundle))  # type: ignore[misc]
        notes = ((existing or {}).get("metadata") or {}).get("annotations") or {}
        if existing is not None and notes.get(SECRET_OWNER) != owner:
            why = f"{where} exists and is not ours: Gateway {namespace}/{name} does not get APIM's CA bundle"
            done.append({"step": "TrustOnGateway", "why": why, "outcome": "refused", "reason": "OwnedByOther"})
            continue
        if existing is None:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": mtls.trust_bundle, "namespace": namespace, "annotations": {SECRET_OWNER: owner}},
                "data": {"ca.crt": bundle},
            }
            with_retries(deps, lambda n=namespace, b=body: deps.secrets.create_configmap(n, b))  # type: ignore[misc]
            done.append(
                {
                    "step": "CopyBundleToGateway",
                    "why": f"{where} holds the CAs Gateway {namespace}/{name} trusts",
                    "outcome": "applied",
                }
            )
        elif (existing.get("data") or {}).get("ca.crt") != bundle:
            patch = {"metadata": {"resourceVersion": existing["metadata"]["resourceVersion"]}, "data": {"ca.crt": bundle}}
            with_retries(deps, lambda n=namespace, p=patch: deps.cluster_writer.patch("ConfigMap", n, mtls.trust_bundle, p))  # type: ignore[misc]
            done.append({"step": "CopyBundleToGateway", "why": f"{where} must equal the bundle", "outcome": "applied"})
        validation = (((gateway.get("spec") or {}).get("tls") or {}).get("frontend") or {}).get("default") or {}
        refs = list((validation.get("validation") or {}).get("caCertificateRefs") or [])
        if any(r.get("kind") == "ConfigMap" and r.get("name") == mtls.trust_bundle and not r.get("namespace") for r in refs):
            continue
        gateway_patch = {
            "metadata": {"resourceVersion": metadata.get("resourceVersion")},
            "spec": {"tls": {"frontend": {"default": {"validation": {"caCertificateRefs": [*refs, ours]}}}}},
        }
        with_retries(deps, lambda n=namespace, g=name, p=gateway_patch: deps.cluster_writer.patch("Gateway", n, g, p))  # type: ignore[misc]
        why = f"Gateway {namespace}/{name} must validate client certificates against {where}"
        done.append({"step": "ReferenceBundleOnGateway", "why": why, "outcome": "applied"})
    return done


def _report(world: World, steps: list[dict[str, Any]], waiting: rotation.Waiting, *, dry_run: bool) -> RotationReport:
    expiries = [{"object": f"CA {ca.id}", "expires": ca.not_after.isoformat()} for ca in world.state.cas]
    expiries += [{"object": f"certificate {c.id}", "expires": c.expires.isoformat()} for c in world.state.certificates]
    return RotationReport(
        dry_run=dry_run,
        steps=tuple(steps),
        next_step={"why": waiting.why, "at": waiting.until.isoformat() if waiting.until else None},
        expiries=tuple(expiries),
    )


# -- Key Vault ------------------------------------------------------------------------------------------


def _keyvault_run(deps: Dependencies, *, dry_run: bool, clock: Callable[[], datetime]) -> RotationReport:
    """Key Vault holds (and renews) the certificate; the app moves APIM to each new version itself, in order.

    APIM's certificate entity references a *versioned* secret, so APIM never picks up a renewal on its own:
    the new version's issuer is trusted first (next to the old one), then, after TRUST_PROPAGATION_SECONDS,
    the entity moves to the new version, then the old issuer is retired (shared.rotation.decision,
    keyvault_next_step). Every owned ingress backend references the entity by id, never by thumbprint.
    """
    from shared.rotation import pki

    mtls, owner = deps.settings.mtls, deps.settings.sync.owner_id
    source = deps.keyvault_certificate
    if source is None:
        error = RunError(
            "InvalidSettings", "KEYVAULT_CERT_SECRET_ID is missing: keyvault mode reads the certificate there", False
        )
        return RotationReport(dry_run=dry_run, error=error)
    entity_id = f"{rotation.certificate_prefix(owner)}keyvault"
    configured = _configured_issuer(mtls)
    issuers: dict[str, bytes] = {}
    steps: list[dict[str, Any]] = []

    def read_version(version: str | None) -> rotation.KeyVaultVersion:
        secret = with_retries(deps, lambda: source.version(version))
        try:
            pems = pki.certificates_in_secret(secret.value, secret.content_type)
        except ValueError as error:
            raise errors.RemoteRejected(f"Key Vault version {secret.version} holds no usable certificate: {error}") from None
        issuer = pki.issuer_in(pems[0], pems[1:] + ([configured] if configured else []))
        issuer_id = pki.cert_info(issuer).short_id if issuer else None
        if issuer is not None and issuer_id is not None:
            issuers[issuer_id] = issuer
        return rotation.KeyVaultVersion(secret.version, issuer_id, pki.cert_info(pems[0]).not_after)

    try:
        world = read_world(deps, _exposure(deps))
        for pem in pki.split_pem_bundle(_bundle_pem(world.bundle_secret)):
            issuers.setdefault(pki.cert_info(pem).short_id, pem)
        entity = _keyvault_entity(deps, entity_id)
        presented_version = _referenced_version(entity, source.secret_id)
        latest = read_version(None)
        presented = (
            None
            if presented_version is None
            else latest
            if presented_version == latest.version
            else read_version(presented_version)
        )
        bundle = dict(world.state.bundle or {}) if world.state.bundle is not None else None
        waiting: rotation.Waiting | None = None
        for _ in range(MAX_STEPS):
            now = clock()
            step = rotation.keyvault_next_step(rotation.KeyVaultState(latest, presented, bundle), now, policy_of(mtls))
            if isinstance(step, rotation.Waiting):
                waiting = step
                break
            edited = isinstance(step, rotation.TrustCas) and hand_edited(world.bundle_secret)
            if isinstance(step, rotation.TrustCas | rotation.RetireCa):
                kept = list(step.ca_ids) if isinstance(step, rotation.TrustCas) else sorted(set(bundle or {}) - {step.ca_id})
                held = bundle or {}
                notes: dict[str, str | None] = {
                    TRUSTED_SINCE_PREFIX + c: (held.get(c) or now).isoformat() for c in kept if c not in held
                }
                notes.update({TRUSTED_SINCE_PREFIX + c: None for c in held if c not in kept})
                pem = b"".join(issuers[c] for c in kept)
                if not dry_run:
                    write = partial(_write_secret, deps, world.bundle_secret, mtls.trust_bundle, {"ca.crt": pem}, notes)
                    with_retries(deps, write)
                    world = read_world(deps, world.exposure)
                bundle = {c: held.get(c) or now for c in kept}
            else:
                versioned = f"{source.secret_id}/{step.version}"
                properties = {"keyVault": {"secretIdentifier": versioned, "identityClientId": mtls.keyvault_identity_client_id}}
                if not dry_run:
                    with_retries(deps, lambda p=properties: deps.certificates.put_certificate(entity_id, p))  # type: ignore[misc]
                presented = latest
            steps.append(_step_entry(step.why, type(step).__name__, "planned" if dry_run else "applied", restored=edited))
        if latest.expires <= clock():
            raise errors.RemoteRejected(
                f"the Key Vault certificate (version {latest.version}) expired at {latest.expires.isoformat()}"
            )
        reference = f"{deps.settings.apim.service_id}/certificates/{entity_id}"
        if presented is not None:
            behind = sorted(
                b for b in world.state.ingress_backends if world.state.backend_references.get(b, ()) != (entity_id.lower(),)
            )
            for backend_id in behind:
                if not dry_run:
                    with_retries(deps, lambda b=backend_id: deps.backends.set_backend_certificates(b, [reference], owner=owner))  # type: ignore[misc]
                why = f"backend {backend_id} must present {entity_id}"
                steps.append({"step": "PointBackends", "why": why, "outcome": "planned" if dry_run else "applied"})
        if not dry_run:
            final = read_world(deps, world.exposure)
            steps.extend(_annotate_ingresses(deps, final))
            steps.extend(_trust_on_gateways(deps, final))
    except errors.SyncError as error:
        return RotationReport(dry_run=dry_run, steps=tuple(steps), error=RunError.of(error))
    expiries = ({"object": f"Key Vault certificate version {latest.version}", "expires": latest.expires.isoformat()},)
    waiting = waiting or rotation.Waiting("more steps than one run takes; the next run goes on")
    next_step = {"why": waiting.why, "at": waiting.until.isoformat() if waiting.until else None}
    return RotationReport(dry_run=dry_run, steps=tuple(steps), next_step=next_step, expiries=expiries)


def _configured_issuer(mtls: MtlsSettings) -> bytes | None:
    """KEYVAULT_ISSUER_CA (a PEM, or a path to one): the issuer when the secret carries no chain."""
    issuer = mtls.keyvault_issuer_ca
    if not issuer:
        return None
    return issuer.encode() if issuer.lstrip().startswith("-----BEGIN") else open(issuer, "rb").read()


def _bundle_pem(bundle_secret: Mapping[str, Any] | None) -> bytes:
    encoded = ((bundle_secret or {}).get("data") or {}).get("ca.crt")
    return base64.b64decode(encoded) if encoded else b""


def _keyvault_entity(deps: Dependencies, entity_id: str) -> Mapping[str, Any] | None:
    return next((e for e in with_retries(deps, deps.certificates.list_certificates) if e.get("name") == entity_id), None)


def _referenced_version(entity: Mapping[str, Any] | None, secret_id: str) -> str | None:
    """The secret version the entity references; None for no entity, a versionless reference, or another secret."""
    held = str((((entity or {}).get("properties") or {}).get("keyVault") or {}).get("secretIdentifier") or "").rstrip("/")
    prefix = secret_id.rstrip("/") + "/"
    if not held.startswith(prefix):
        return None
    version = held[len(prefix) :]
    return version if version and "/" not in version else None
