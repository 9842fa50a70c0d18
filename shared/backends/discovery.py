"""Turn one Service (and the Ingress rules routing to it) into the backend it wants, or say why not.

Pure. Every problem is returned as data naming the object, the annotation and the reason, never raised,
so one broken Service cannot stop the others.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from shared.core import naming, ownership
from shared.core.annotations import INTERNAL_LB, AnnotationContext, Keys, is_exposed, oversized
from shared.core.model import (
    BackendId,
    BackendSpec,
    DesiredBackend,
    HeaderValues,
    IngressRoute,
    Mode,
    OwnerMark,
    PublicAuthMode,
    Reason,
    ReconcilePolicy,
    ServicePort,
    ServiceRef,
    ServiceView,
)
from shared.core.tenancy import ASK_PLATFORM, NamespaceGrant, url_problem

E = TypeVar("E", Mode, ReconcilePolicy)

MAX_TITLE_LENGTH = 300
_URL_PATH = re.compile(r"^[A-Za-z0-9._~/%-]{1,400}$")


@dataclass(frozen=True)
class Pending:
    source: ServiceRef
    reason: Reason
    message: str


@dataclass(frozen=True)
class Invalid:
    source: ServiceRef
    field: str
    message: str
    reason: Reason = Reason.INVALID_ANNOTATION


@dataclass(frozen=True)
class Skipped:
    source: ServiceRef
    reason: Reason = Reason.RECONCILE_SKIPPED


ServiceOutcome = DesiredBackend | Pending | Invalid | Skipped


class _Problem(Exception):
    def __init__(self, field: str, message: str, reason: Reason = Reason.INVALID_ANNOTATION) -> None:
        self.field, self.message, self.reason = field, message, reason


def _not_granted(field: str, what: str, namespace: str) -> _Problem:
    return _Problem(field, f"{what} is not granted to namespace {namespace}; {ASK_PLATFORM}", Reason.NOT_GRANTED)


def managed_mode(service: ServiceView, ctx: AnnotationContext) -> Mode | None:
    """The mode of a Service this deployment manages; None when it is not exposed, skipped or its mode is invalid."""
    key = Keys(ctx.prefix)
    if not is_exposed(service.annotations, ctx.prefix):
        return None
    try:
        if _enum(service.annotations, key.policy, ReconcilePolicy, ReconcilePolicy.MANAGE) is ReconcilePolicy.SKIP:
            return None
        mode = _enum(service.annotations, key.mode, Mode, ctx.default_mode)
    except _Problem:
        return None
    return mode if mode in ctx.policy.grant(service.namespace).modes else None


@functools.lru_cache(maxsize=8)
def _token_header(name: str, named_value: str) -> HeaderValues:
    """The header APIM sends with the named value's token: one value shared by every public backend of a run."""
    return ((name, (f"{{{{{named_value}}}}}",)),)


def backend_for(
    service: ServiceView, routes: Sequence[IngressRoute], ctx: AnnotationContext, *, route_notes: Sequence[str] = ()
) -> ServiceOutcome | None:
    """The outcome for one Service; None when the Service does not ask to be exposed. `route_notes`: why routes
    that name the Service do not count (Gateway API), said when no route gives it a URL."""
    ref = ServiceRef(ctx.cluster, service.namespace, service.name)
    key = Keys(ctx.prefix)
    expose = service.annotations.get(key.expose, "").strip().lower()
    if expose in ("", "false"):
        return None
    try:
        too_long = oversized(service.annotations, key)
        if too_long is not None:
            raise _Problem(too_long[0], f"longer than {too_long[1]} characters")
        if expose != "true":
            raise _Problem(key.expose, f"'{_shown(expose)}' is not 'true' or 'false'")
        policy = _enum(service.annotations, key.policy, ReconcilePolicy, ReconcilePolicy.MANAGE)
        mode = _enum(service.annotations, key.mode, Mode, ctx.default_mode)
        grant = ctx.policy.grant(service.namespace)
        if mode not in grant.modes:
            raise _not_granted(key.mode, f"mode {mode.value}", service.namespace)
        backend_id = _backend_id(service.annotations.get(key.backend_id), ref, key)
        title = service.annotations.get(key.title, "").strip()
        if len(title) > MAX_TITLE_LENGTH:
            raise _Problem(key.title, f"longer than {MAX_TITLE_LENGTH} characters")
        if policy is ReconcilePolicy.SKIP:
            return Skipped(ref)
        explicit = service.annotations.get(key.url)
        url = (
            _explicit_url(explicit, service, key, grant)
            if explicit is not None
            else _url(service, routes, mode, key, ref, route_notes)
        )
    except _Problem as problem:
        return Invalid(ref, field=problem.field, message=problem.message, reason=problem.reason)
    if isinstance(url, Pending):
        return url
    # Credentials (the Option 1 token, the mTLS client certificate) go only where the app derived the address
    # from the namespace's own objects, or to a url host the policy grants for credentials.
    derived = explicit is None
    credentials_allowed = derived or grant.allows_credentials_to(urlsplit(url).hostname or "")
    warnings: list[tuple[str, str]] = []
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    token_audience: str | None = None
    if mode is Mode.PUBLIC and ctx.public_auth is not PublicAuthMode.NONE:
        withheld = _option_1_withheld(url, credentials_allowed, grant, key)
        audience = grant.token_audience or ctx.token_audience
        if withheld is not None:
            warnings.append(withheld)
        elif ctx.public_auth is PublicAuthMode.HEADER:
            headers = _token_header(ctx.public_auth_header or "", ctx.public_auth_named_value or "")
        elif audience is None:
            warnings.append(
                (
                    key.mode,
                    f"no token audience for namespace {service.namespace}: set PUBLIC_AUTH_AUDIENCE, or "
                    "tokenAudience in the tenancy policy",
                )
            )
        else:
            token_audience = audience
    if mode is Mode.INGRESS and not credentials_allowed:
        warnings.append((key.url, f"APIM's mTLS client certificate is not presented to this url host; {ASK_PLATFORM}"))
    mark = OwnerMark(owner=ctx.owner, source=ref, policy=policy)
    spec = BackendSpec(url=url, description=ownership.render_mark(mark), title=title, headers=headers)
    return DesiredBackend(
        id=backend_id,
        source=ref,
        spec=spec,
        policy=policy,
        client_certificate=mode is Mode.INGRESS and credentials_allowed,
        warnings=tuple(warnings),
        token_audience=token_audience,
    )


def _option_1_withheld(url: str, credentials_allowed: bool, grant: NamespaceGrant, key: Keys) -> tuple[str, str] | None:
    """Why the Option 1 credential (the shared token, or APIM's managed-identity token) is not sent, if it is not."""
    if not credentials_allowed:
        return key.url, f"the Option 1 token is not sent to this url host; {ASK_PLATFORM} (credentialHosts)"
    if url.startswith("http://") and not grant.plain_http_credentials:
        return (
            key.protocol,
            "the Option 1 token is not sent over plain http, where it would cross the network in clear; serve "
            f"https (port 443 or {key.protocol}: https), or {ASK_PLATFORM} (plainHttpCredentials)",
        )
    return None


def _explicit_url(text: str, service: ServiceView, key: Keys, grant: NamespaceGrant) -> str:
    url = text.strip()
    unsafe = url_problem(url)
    if unsafe is not None:
        raise _Problem(key.url, f"the URL {unsafe}; never allowed", Reason.UNSAFE_URL)
    host = (urlsplit(url).hostname or "").rstrip(".")
    if not grant.allows_url_host(host):
        raise _not_granted(key.url, f"url host '{_shown(host)}'", service.namespace)
    return url


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"


def _enum(annotations: Mapping[str, str], key: str, kind: type[E], default: E) -> E:
    text = annotations.get(key, "").strip()
    if not text:
        return default
    try:
        return kind(text.lower())
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise _Problem(key, f"'{_shown(text)}' is not one of {allowed}") from None


def _backend_id(explicit: str | None, ref: ServiceRef, key: Keys) -> BackendId:
    if explicit is None:
        return naming.backend_id_for(ref)
    problem = naming.id_problem(explicit.strip())
    if problem:
        raise _Problem(key.backend_id, f"'{_shown(explicit)}' {problem}")
    return BackendId(explicit.strip())


def _protocol(annotations: Mapping[str, str], key: Keys, default: str) -> str:
    text = annotations.get(key.protocol, "").strip().lower()
    if not text:
        return default
    if text not in ("http", "https"):
        raise _Problem(key.protocol, f"'{_shown(text)}' is not http or https")
    return text


def _base_path(annotations: Mapping[str, str], key: Keys) -> str | None:
    text = annotations.get(key.path)
    if text is None:
        return None
    text = text.strip()
    if not text.startswith("/") or not _URL_PATH.match(text):
        raise _Problem(key.path, f"'{_shown(text)}' must start with '/' and hold only letters, digits and -._~/%")
    return text.rstrip("/")


def _url(
    service: ServiceView, routes: Sequence[IngressRoute], mode: Mode, key: Keys, ref: ServiceRef, notes: Sequence[str] = ()
) -> str | Pending:
    path = _base_path(service.annotations, key)
    if mode is Mode.INGRESS:
        return _ingress_url(service, routes, key, path, ref, notes)
    internal = service.annotations.get(INTERNAL_LB, "").strip().lower() == "true"
    if service.type != "LoadBalancer":
        raise _Problem(key.mode, f"{mode.value} mode needs a Service of type LoadBalancer, not {service.type}")
    if mode is Mode.INTERNAL and not internal:
        raise _Problem(key.mode, f'internal mode needs the annotation {INTERNAL_LB}: "true"')
    if mode is Mode.PUBLIC and internal:
        raise _Problem(key.mode, "public mode on an internal load balancer; use mode internal")
    port = _port(service, key)
    if not service.load_balancer_addresses:
        return Pending(ref, Reason.ADDRESS_PENDING, "the load balancer has no address yet")
    default_protocol = "https" if port.port == 443 or port.name == "https" else "http"
    protocol = _protocol(service.annotations, key, default_protocol)
    host = sorted(service.load_balancer_addresses)[0]
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[protocol]
    authority = host if port.port == default_port else f"{host}:{port.port}"
    return f"{protocol}://{authority}{path or ''}"


def _port(service: ServiceView, key: Keys) -> ServicePort:
    wanted = service.annotations.get(key.port, "").strip()
    if not wanted:
        if len(service.ports) == 1:
            return service.ports[0]
        raise _Problem(key.port, f"the Service has {len(service.ports)} ports; name one")
    for port in service.ports:
        if wanted in (port.name, str(port.port)):
            return port
    if _port_number_problem(wanted):
        raise _Problem(key.port, f"'{_shown(wanted)}' is not a port number")
    raise _Problem(key.port, f"'{_shown(wanted)}' is not a port of the Service")


def _ingress_url(
    service: ServiceView, routes: Sequence[IngressRoute], key: Keys, path: str | None, ref: ServiceRef, notes: Sequence[str] = ()
) -> str | Pending:
    """An Ingress rule routing to the Service wins while one exists (the path teams migrate from); otherwise the
    one HTTPRoute that does. Several HTTPRoutes are reported, not guessed."""
    wanted = service.annotations.get(key.port, "").strip()
    if _port_number_problem(wanted):
        raise _Problem(key.port, f"'{_shown(wanted)}' is not a port number")
    candidates = sorted(
        (r for r in routes if _routes_to(r, service) and r.host and (not wanted or r.service_port == wanted)),
        key=lambda r: (r.kind != "Ingress", r.ingress_name, r.host, r.path),
    )
    if not candidates:
        why = "no Ingress rule or HTTPRoute with a host routes to this Service yet"
        return Pending(ref, Reason.ADDRESS_PENDING, "; ".join([why, *notes]))
    route = candidates[0]
    if route.kind == "HTTPRoute":
        names = sorted({r.ingress_name for r in candidates})
        if len(names) > 1:
            raise _Problem(key.url, f"several HTTPRoutes route to this Service ({', '.join(names)}); keep one, or set url")
    protocol = _protocol(service.annotations, key, "https" if route.tls else "http")
    base = path if path is not None else route.path.rstrip("/")
    authority = route.host if route.port is None else f"{route.host}:{route.port}"
    return f"{protocol}://{authority}{base}"


def _port_number_problem(wanted: str) -> bool:
    """A number that is not a port. Only ASCII digits count: '²' is a digit to str.isdigit but not to int()."""
    if not (wanted.isascii() and wanted.isdigit()):
        return False
    return len(wanted) > 5 or not 0 < int(wanted) < 65536


def _routes_to(route: IngressRoute, service: ServiceView) -> bool:
    """An Ingress routes only to Services of its own namespace (networking.k8s.io/v1 has no cross-namespace
    backend); an HTTPRoute's namespace is the Service's already (a cross-namespace one only with a ReferenceGrant)."""
    return route.namespace == service.namespace and route.service_name == service.name
