"""The tenancy policy: what each namespace may ask of APIM, owned by the platform team.

Pure. Namespaces are tenants: every annotation is untrusted input, and this policy is the only thing that
widens what a namespace may do. It lives where namespaces cannot write (a ConfigMap in the app's own
namespace, TENANCY_POLICY_CONFIGMAP); a namespace it does not name gets `default`. Format (YAML or JSON):

    default:                      # every field optional; these are the defaults
      modes: [public, ingress, internal]
      urlHosts: []                # hosts an apim-sync.io/url may name: "api.example.com" or "*.example.com"
      credentialHosts: []         # url hosts that may receive the Option 1 token / the mTLS client certificate
      plainHttpCredentials: false # the Option 1 token over http (it would cross the network in clear)
      apiPathPrefixes: []         # [] = any path no other namespace owns; else paths under one of these
      rootPath: false             # may publish an API at the root path ""
      anonymousApis: false        # may set subscription-required: "false"
      products: []                # products its APIs may join
      maxOperationsPerApi: 200
      maxOpenApiBytes: 262144
      tokenAudience: null         # managed-identity Option 1: the audience of APIM's token to its backends
    namespaces:
      shop: {urlHosts: ["*.contoso.example"], products: [starter]}

Whatever the policy says, a backend URL never names a link-local, metadata, loopback or unspecified
address, never carries userinfo, control characters or a scheme other than http/https, and never a host
that is a number rather than a name or an IP literal (2130706433 is 127.0.0.1 to many resolvers).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from shared.core.errors import PermanentError
from shared.core.model import Mode

DEFAULT_LOCATION = "aks-apim-sync/aks-apim-sync-tenancy"
POLICY_KEY = "policy.yaml"
MAX_POLICY_BYTES = 256 * 1024
_HOST_PATTERN = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PATH = re.compile(r"^[A-Za-z0-9._~/-]{0,400}$")
_PRODUCT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_DNS_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$")
ASK_PLATFORM = "ask the platform team to grant it in the tenancy policy"


class InvalidTenancyPolicy(PermanentError):
    """The policy cannot be read as written: nothing is written until it is fixed (fail closed)."""

    reason = "InvalidTenancyPolicy"

    def __init__(self, where: str, field: str, why: str) -> None:
        self.where, self.field, self.why = where, field, why
        super().__init__(f"tenancy policy {where}: {field}: {why}; nothing is written until it is fixed")


@dataclass(frozen=True)
class NamespaceGrant:
    """What one namespace may do."""

    modes: frozenset[Mode] = frozenset(Mode)
    url_hosts: tuple[str, ...] = ()
    credential_hosts: tuple[str, ...] = ()
    plain_http_credentials: bool = False
    api_path_prefixes: tuple[str, ...] = ()
    root_path: bool = False
    anonymous_apis: bool = False
    products: frozenset[str] = frozenset()
    max_operations_per_api: int = 200
    max_openapi_bytes: int = 256 * 1024
    token_audience: str | None = None
    """Option 1 with APIM's managed identity: the audience of the token sent to this namespace's backends."""

    def allows_url_host(self, host: str) -> bool:
        return any(host_matches(host, pattern) for pattern in self.url_hosts)

    def allows_credentials_to(self, host: str) -> bool:
        return any(host_matches(host, pattern) for pattern in self.credential_hosts)

    def allows_api_path(self, path: str) -> bool:
        if path == "":
            return self.root_path
        if not self.api_path_prefixes:
            return True
        return any(path_within(path, prefix) for prefix in self.api_path_prefixes)


@dataclass(frozen=True)
class TenancyPolicy:
    default: NamespaceGrant = field(default_factory=NamespaceGrant)
    namespaces: Mapping[str, NamespaceGrant] = field(default_factory=dict)
    source: str = "built-in default (no policy ConfigMap)"

    def grant(self, namespace: str) -> NamespaceGrant:
        return self.namespaces.get(namespace, self.default)


def host_matches(host: str, pattern: str) -> bool:
    """'api.example.com' matches itself; '*.example.com' matches any name below example.com, not itself."""
    host, pattern = host.lower().rstrip("."), pattern.lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def segments(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.strip("/").split("/") if s)


def path_within(path: str, prefix: str) -> bool:
    """By segments: 'shop/orders' is within 'shop', 'shopping' is not."""
    inner, outer = segments(path), segments(prefix)
    return inner[: len(outer)] == outer


def paths_overlap(one: str, other: str) -> bool:
    """One path equals, or lies under, the other (by segments). The root path overlaps only itself: APIM
    routes to the longest matching path, so a root API receives only what no other API matches."""
    a, b = segments(one), segments(other)
    if not a or not b:
        return a == b
    return a[: len(b)] == b or b[: len(a)] == a


def url_problem(url: str) -> str | None:
    """Why no backend may ever point at this URL, whatever the policy says; None when it is acceptable."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url) or any(c in url for c in ' <>"\\{}|^`'):
        return "holds control characters, spaces or characters not allowed in a URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a well-formed URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry credentials (user:password@)"
    if port == 0:
        return "has port 0"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "has no host"
    if parts.fragment:
        return "must not have a fragment"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _DNS_NAME.match(host) or host.replace(".", "").isdigit() or not re.search(r"[a-z]", host.rsplit(".", 1)[-1]):
            return "has a host that is neither a DNS name nor an IP address"
        if host == "localhost" or host.endswith(".localhost"):
            return "names the loopback host"
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_link_local or address.is_unspecified or address.is_multicast:
        return "names a loopback, link-local (metadata), unspecified or multicast address"
    return None


# -- parsing -------------------------------------------------------------------------------------------


_FIELDS = {
    "modes",
    "urlHosts",
    "credentialHosts",
    "plainHttpCredentials",
    "apiPathPrefixes",
    "rootPath",
    "anonymousApis",
    "products",
    "maxOperationsPerApi",
    "maxOpenApiBytes",
    "tokenAudience",
}
AUDIENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:/._~-]{0,255}$")
"""An app id URI (api://…), an https URI or a client id: no quote, angle bracket or space can reach the policy XML."""


def parse_policy(document: Any, where: str) -> TenancyPolicy:
    """The policy from its decoded document; raises InvalidTenancyPolicy naming the first bad field."""
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise InvalidTenancyPolicy(where, POLICY_KEY, "must be a mapping with 'default' and 'namespaces'")
    unknown = sorted(str(k) for k in document if k not in ("default", "namespaces"))
    if unknown:
        raise InvalidTenancyPolicy(where, unknown[0], "unknown field; known: default, namespaces")
    default = _grant(document.get("default") or {}, NamespaceGrant(), where, "default")
    listed = document.get("namespaces") or {}
    if not isinstance(listed, Mapping):
        raise InvalidTenancyPolicy(where, "namespaces", "must map namespace names to grants")
    grants: dict[str, NamespaceGrant] = {}
    for name, body in listed.items():
        if not isinstance(name, str) or not _NAMESPACE.match(name):
            raise InvalidTenancyPolicy(where, f"namespaces.{str(name)[:63]}", "is not a namespace name")
        grants[name] = _grant(body or {}, default, where, f"namespaces.{name}")
    return TenancyPolicy(default=default, namespaces=grants, source=where)


def _grant(body: Any, base: NamespaceGrant, where: str, at: str) -> NamespaceGrant:
    if not isinstance(body, Mapping):
        raise InvalidTenancyPolicy(where, at, "must be a mapping")
    unknown = sorted(str(k) for k in body if k not in _FIELDS)
    if unknown:
        raise InvalidTenancyPolicy(where, f"{at}.{unknown[0]}", f"unknown field; known: {', '.join(sorted(_FIELDS))}")

    def strings(name: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...] | None:
        if name not in body:
            return None
        value = body[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidTenancyPolicy(where, f"{at}.{name}", "must be a list of strings")
        for item in value:
            if not pattern.match(item.strip().lower() if pattern is _HOST_PATTERN else item.strip()):
                raise InvalidTenancyPolicy(where, f"{at}.{name}", f"'{item[:60]}' is not {what}")
        return tuple(item.strip().lower() if pattern is _HOST_PATTERN else item.strip().strip("/") for item in value)

    def flag(name: str, current: bool) -> bool:
        value = body.get(name, current)
        if not isinstance(value, bool):
            raise InvalidTenancyPolicy(where, f"{at}.{name}", "must be true or false")
        return value

    def limit(name: str, current: int, most: int) -> int:
        value = body.get(name, current)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
            raise InvalidTenancyPolicy(where, f"{at}.{name}", f"must be a whole number from 1 to {most}")
        return value

    grant = base
    modes = strings("modes", re.compile(r"^(public|ingress|internal)$"), "public, ingress or internal")
    if modes is not None:
        grant = replace(grant, modes=frozenset(Mode(m) for m in modes))
    hosts = strings("urlHosts", _HOST_PATTERN, "a host name or *.suffix")
    if hosts is not None:
        grant = replace(grant, url_hosts=hosts)
    credential_hosts = strings("credentialHosts", _HOST_PATTERN, "a host name or *.suffix")
    if credential_hosts is not None:
        grant = replace(grant, credential_hosts=credential_hosts)
    prefixes = strings("apiPathPrefixes", _PATH, "a URL path")
    if prefixes is not None:
        if any(not segments(p) for p in prefixes):
            raise InvalidTenancyPolicy(where, f"{at}.apiPathPrefixes", "the root path is granted with rootPath, not as a prefix")
        grant = replace(grant, api_path_prefixes=prefixes)
    products = strings("products", _PRODUCT, "a product id")
    if products is not None:
        grant = replace(grant, products=frozenset(products))
    audience = body.get("tokenAudience", grant.token_audience)
    if audience is not None and (not isinstance(audience, str) or not AUDIENCE.match(audience)):
        raise InvalidTenancyPolicy(where, f"{at}.tokenAudience", "must be an app id URI, an https URI or a client id")
    return replace(
        grant,
        token_audience=audience,
        plain_http_credentials=flag("plainHttpCredentials", grant.plain_http_credentials),
        root_path=flag("rootPath", grant.root_path),
        anonymous_apis=flag("anonymousApis", grant.anonymous_apis),
        max_operations_per_api=limit("maxOperationsPerApi", grant.max_operations_per_api, 2000),
        max_openapi_bytes=limit("maxOpenApiBytes", grant.max_openapi_bytes, 4 * 1024 * 1024),
    )
