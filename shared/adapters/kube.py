"""Read Services and Ingresses through the official kubernetes client; the only module that imports it.

Lists are paged (limit/continue) and decoded from raw JSON rather than the client's models, which cost
several times more CPU per object at thousands of Services. ApiException and urllib3 errors become our
error tree here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from shared.adapters.credentials import RefreshingToken
from shared.backends.gateway_routes import uses_selector
from shared.core import errors
from shared.core.annotations import GATEWAY_NAME_LABEL
from shared.core.model import GatewayApiObjects, IngressRoute, IngressView, ServicePort, ServiceView
from shared.core.scope import Scope
from shared.core.settings import KubeSettings
from shared.runtime.counters import RequestCounter

T = TypeVar("T")
RELISTS_ON_EXPIRY = 3
"""Gateway API's label on the resources an implementation generates for a Gateway (Istio, Envoy Gateway)."""
PAGE_SIZE = 500
CUSTOM_KINDS = {
    "Gateway": ("gateway.networking.k8s.io", "v1", "gateways"),
    "AuthorizationPolicy": ("security.istio.io", "v1", "authorizationpolicies"),
}
"""Custom resources read or written by name: kind -> (group, version, plural)."""
REQUEST_TIMEOUT = (5, 30)


def translate(exc: Exception, what: str) -> errors.SyncError:
    if isinstance(exc, ApiException):
        status = exc.status or 0
        try:
            message = errors.truncate_remote_text(json.loads(exc.body or "{}").get("message", ""))
        except ValueError:
            message = ""
        detail = f"{what}: Kubernetes {status} {exc.reason or ''}: {message}".rstrip(": ")
        retry_after = (exc.headers or {}).get("Retry-After")
        wait = float(retry_after) if retry_after and retry_after.isascii() and retry_after.isdigit() else None
        if status == 429:
            return errors.Throttled(detail, retry_after_seconds=wait)
        if status >= 500 or status == 0:
            return errors.ServiceUnavailable(detail, retry_after_seconds=wait)
        if status == 409:
            return errors.ConcurrentEdit(detail)
        if status in (401, 403):
            return errors.AccessDenied(detail)
        if status == 404:
            return errors.NotFound(detail)
        return errors.RemoteRejected(detail)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return errors.ServiceUnavailable(f"{what}: cannot reach the Kubernetes API ({type(exc).__name__})")
    return errors.RemoteRejected(f"{what}: {type(exc).__name__}")


def _translated(what: str) -> AbstractContextManager[None]:
    return errors.translating(translate, what)


NO_SDK_RETRIES = urllib3.util.Retry(total=0, redirect=0, respect_retry_after_header=False, raise_on_status=False)
"""urllib3 would otherwise retry a 429 or 503 with Retry-After itself, sleeping in real time where no counter,
no pacing and no test sees it; shared.runtime.retry is the one retry loop."""


def api_client_for(settings: KubeSettings, token: RefreshingToken | None) -> client.ApiClient:
    """A kubeconfig for local runs and the sandbox; otherwise the AKS server URL, CA and an Entra token."""
    if settings.kubeconfig:
        from_file = client.Configuration()
        config.load_kube_config(config_file=settings.kubeconfig, client_configuration=from_file)  # type: ignore[no-untyped-call]
        from_file.retries = NO_SDK_RETRIES
        return client.ApiClient(from_file)
    assert settings.api_server and settings.ca_cert and token is not None
    configuration = client.Configuration(host=settings.api_server)
    configuration.retries = NO_SDK_RETRIES
    if settings.ca_cert.lstrip().startswith("-----BEGIN"):
        configuration.ssl_ca_cert = None
        configuration.ca_cert_data = settings.ca_cert
    else:
        configuration.ssl_ca_cert = settings.ca_cert
    # auth_settings() emits the header only if the key exists already: seed it, then refresh per request.
    configuration.api_key = {"authorization": ""}
    configuration.api_key_prefix = {"authorization": "Bearer"}

    def refresh(c: client.Configuration) -> None:
        c.api_key["authorization"] = token.value()

    configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
    return client.ApiClient(configuration)


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
"""A copy of the whole object that `kubectl apply` keeps; never read, and often the largest annotation."""
SHORT_TEXT = 64


def _shared(text: str) -> str:
    """One copy of a short text that recurs across thousands of objects (a namespace, an annotation key),
    so a large cluster's views hold each once. Interned strings are freed when no longer used."""
    return sys.intern(text) if len(text) <= SHORT_TEXT else text


def _annotations(metadata: dict[str, Any]) -> dict[str, str]:
    held: dict[str, Any] = metadata.get("annotations") or {}
    return {_shared(k): v for k, v in held.items() if k != LAST_APPLIED}


def service_view(item: dict[str, Any]) -> ServiceView:
    metadata, spec = item.get("metadata") or {}, item.get("spec") or {}
    ingress = ((item.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ServiceView(
        namespace=_shared(metadata.get("namespace", "")),
        name=metadata.get("name", ""),
        annotations=_annotations(metadata),
        type=_shared(spec.get("type") or "ClusterIP"),
        ports=tuple(
            ServicePort(
                port=int(p.get("port", 0)), name=_shared(p.get("name") or ""), protocol=_shared(p.get("protocol") or "TCP")
            )
            for p in spec.get("ports") or []
        ),
        load_balancer_addresses=tuple(a.get("ip") or a.get("hostname") for a in ingress if a.get("ip") or a.get("hostname")),
        resource_version=metadata.get("resourceVersion") or "",
        load_balancer_source_ranges=tuple(spec.get("loadBalancerSourceRanges") or ()),
        external_traffic_policy=spec.get("externalTrafficPolicy") or "",
        gateway_name=str((metadata.get("labels") or {}).get(GATEWAY_NAME_LABEL) or ""),
    )


def ingress_view(item: dict[str, Any]) -> IngressView:
    metadata = item.get("metadata") or {}
    return IngressView(
        namespace=_shared(metadata.get("namespace", "")),
        name=metadata.get("name", ""),
        annotations=_annotations(metadata),
        resource_version=metadata.get("resourceVersion") or "",
        routes=tuple(ingress_routes(item)),
    )


def ingress_routes(item: dict[str, Any]) -> list[IngressRoute]:
    metadata, spec = item.get("metadata") or {}, item.get("spec") or {}
    tls_hosts = {host for tls in spec.get("tls") or [] for host in tls.get("hosts") or []}
    routes = []
    for rule in spec.get("rules") or []:
        host = rule.get("host") or ""
        for path in (rule.get("http") or {}).get("paths") or []:
            backend = (path.get("backend") or {}).get("service") or {}
            port = backend.get("port") or {}
            if not backend.get("name"):
                continue
            routes.append(
                IngressRoute(
                    namespace=metadata.get("namespace", ""),
                    ingress_name=metadata.get("name", ""),
                    host=host,
                    path=path.get("path") or "/",
                    service_name=backend["name"],
                    service_port=str(port.get("name") or port.get("number") or ""),
                    tls=host in tls_hosts,
                )
            )
    return routes


class KubeSource:
    def __init__(self, api_client: client.ApiClient, settings: KubeSettings, *, counter: RequestCounter) -> None:
        self._settings = settings
        self._core = client.CoreV1Api(api_client)  # type: ignore[no-untyped-call]
        self._networking = client.NetworkingV1Api(api_client)  # type: ignore[no-untyped-call]
        rest: Any = api_client.rest_client
        original = rest.request

        def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            counter.add("kubernetes", method)
            try:
                response = original(method, url, *args, **kwargs)
            except ApiException as error:
                if error.status == 429:
                    counter.throttled("kubernetes")
                raise
            if getattr(response, "status", None) == 429:  # this client checks the status above the REST layer
                counter.throttled("kubernetes")
            return response

        rest.request = counted

    def _namespaces(self, scope: Scope) -> list[str | None]:
        if scope.namespace:
            if self._settings.namespaces and scope.namespace not in self._settings.namespaces:
                return []
            return [scope.namespace]
        return list(self._settings.namespaces) or [None]

    def _pages(self, list_in: Callable[..., Any], list_all: Callable[..., Any], namespace: str | None) -> list[dict[str, Any]]:
        return self._pages_as(list_in, list_all, namespace, lambda item: item)

    def _pages_as(
        self,
        list_in: Callable[..., Any],
        list_all: Callable[..., Any],
        namespace: str | None,
        convert: Callable[[dict[str, Any]], T],
    ) -> list[T]:
        """Every item, page by page, each converted as its page arrives (so a large cluster's raw JSON is held a
        page at a time, not whole). A continue token the server has expired (410 after compaction) starts the
        list again from the first page, since the pages so far and the rest would not be one consistent list."""
        for _ in range(RELISTS_ON_EXPIRY):
            items: list[T] = []
            token: str | None = None
            try:
                while True:
                    kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "_preload_content": False, "_request_timeout": REQUEST_TIMEOUT}
                    if token:
                        kwargs["_continue"] = token
                    response = list_in(namespace, **kwargs) if namespace else list_all(**kwargs)
                    body = json.loads(response.data)
                    items += [convert(item) for item in body.get("items") or []]
                    token = (body.get("metadata") or {}).get("continue")
                    if not token:
                        return items
            except ApiException as error:
                if error.status != 410 or token is None:
                    raise
        raise errors.RetryableError(f"the list of {namespace or 'all namespaces'} expired {RELISTS_ON_EXPIRY} times while paging")

    def server_version(self) -> str:
        with _translated("read the API server's version"):
            response: Any = client.VersionApi(self._core.api_client).get_code(
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )  # type: ignore[no-untyped-call]
        return str(json.loads(response.data).get("gitVersion") or "")

    def may(self, verb: str, group: str, resource: str, namespace: str) -> bool:
        """A SelfSubjectAccessReview: may this identity do that (namespace "" = in every namespace)?"""
        review: Any = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace}},
        }
        api = client.AuthorizationV1Api(self._core.api_client)  # type: ignore[no-untyped-call]
        with _translated(f"ask whether {verb} {resource} is allowed"):
            response: Any = api.create_self_subject_access_review(
                review, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        return bool((json.loads(response.data).get("status") or {}).get("allowed"))

    def get_gateway(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read_custom("Gateway", namespace, name)

    def get_authorization_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read_custom("AuthorizationPolicy", namespace, name)

    def list_authorization_policies(self, namespace: str) -> list[dict[str, Any]]:
        custom = client.CustomObjectsApi(self._core.api_client)
        group, version, plural = CUSTOM_KINDS["AuthorizationPolicy"]

        def page(namespace: str, **kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object(group, version, namespace, plural, **kwargs)

        with _translated(f"list AuthorizationPolicies in {namespace}"):
            try:
                return self._pages(page, page, namespace)
            except ApiException as error:
                if error.status == 404:
                    return []  # Istio's CRD is not installed
                raise

    def _read_custom(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        custom = client.CustomObjectsApi(self._core.api_client)
        group, version, plural = CUSTOM_KINDS[kind]

        def read(name: str, namespace: str, **kwargs: Any) -> Any:
            return custom.get_namespaced_custom_object(group, version, namespace, plural, name, **kwargs)

        return self._read(f"{kind} {namespace}/{name}", read, namespace, name)

    def list_gateway_api(self, scope: Scope) -> GatewayApiObjects:
        """Every namespace's HTTPRoutes, Gateways and ReferenceGrants (read-only): a route of another namespace,
        its Gateway and a grant decide a Service's URL too. A cluster without the CRDs has none of them."""
        custom = client.CustomObjectsApi(self._core.api_client)

        def listed(version: str, plural: str) -> tuple[dict[str, Any], ...]:
            def page(**kwargs: Any) -> Any:
                return custom.list_cluster_custom_object("gateway.networking.k8s.io", version, plural, **kwargs)

            with _translated(f"list {plural}"):
                try:
                    return tuple(self._pages(page, page, None))
                except ApiException as error:
                    if error.status == 404:
                        return ()  # the CRD is not installed
                    raise

        routes = listed("v1", "httproutes")
        if not routes:
            return GatewayApiObjects()  # no route, no URL: the Gateways and grants need not be read
        gateways = listed("v1", "gateways")
        labels: dict[str, dict[str, str]] = {}
        if uses_selector(gateways):  # only then do namespaces' labels decide anything
            with _translated("list namespaces"):
                response: Any = self._core.list_namespace(_preload_content=False, _request_timeout=REQUEST_TIMEOUT)
                listed_namespaces = json.loads(response.data)
            for item in listed_namespaces.get("items") or []:
                metadata = item.get("metadata") or {}
                labels[str(metadata.get("name") or "")] = dict(metadata.get("labels") or {})
        return GatewayApiObjects(
            httproutes=routes,
            gateways=gateways,
            reference_grants=listed("v1beta1", "referencegrants"),
            namespace_labels=labels,
        )

    def list_services(self, scope: Scope) -> list[ServiceView]:
        """Services in scope. A failed read raises: it must never look like 'no Services'."""
        if scope.service and scope.namespace:
            return self._get_service(scope.namespace, scope.service)
        views: list[ServiceView] = []
        for namespace in self._namespaces(scope):
            with _translated(f"list Services in {namespace or 'all namespaces'}"):
                views += self._pages_as(
                    self._core.list_namespaced_service, self._core.list_service_for_all_namespaces, namespace, service_view
                )
        return views

    def _read(self, what: str, read: Callable[..., Any], namespace: str, name: str) -> dict[str, Any] | None:
        """One object as raw JSON; None when it does not exist (404), never an error."""
        try:
            with _translated(what):
                response: Any = read(name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        except errors.NotFound:
            return None
        body: dict[str, Any] = json.loads(response.data)
        return body

    def _get_service(self, namespace: str, name: str, *, check_scope: bool = True) -> list[ServiceView]:
        if check_scope and self._settings.namespaces and namespace not in self._settings.namespaces:
            return []
        found = self._read(f"Service {namespace}/{name}", self._core.read_namespaced_service, namespace, name)
        return [service_view(found)] if found is not None else []

    def list_ingresses(self, scope: Scope) -> list[IngressView]:
        views: list[IngressView] = []
        for namespace in self._namespaces(scope):
            with _translated(f"list Ingresses in {namespace or 'all namespaces'}"):
                views += self._pages_as(
                    self._networking.list_namespaced_ingress,
                    self._networking.list_ingress_for_all_namespaces,
                    namespace,
                    ingress_view,
                )
        return views

    def get_service(self, namespace: str, name: str) -> ServiceView | None:
        found = self._get_service(namespace, name, check_scope=False)
        return found[0] if found else None

    def get_ingress(self, namespace: str, name: str) -> IngressView | None:
        found = self._read(f"Ingress {namespace}/{name}", self._networking.read_namespaced_ingress, namespace, name)
        return ingress_view(found) if found is not None else None

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret as the API returns it (data base64-encoded); None when it does not exist."""
        return self._read(f"Secret {namespace}/{name}", self._core.read_namespaced_secret, namespace, name)

    def get_configmap_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a ConfigMap; None when the ConfigMap or the key does not exist."""
        found = self._read(f"ConfigMap {namespace}/{name}", self._core.read_namespaced_config_map, namespace, name)
        value = ((found or {}).get("data") or {}).get(key)
        return str(value) if value is not None else None

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(f"ConfigMap {namespace}/{name}", self._core.read_namespaced_config_map, namespace, name)

    def create_configmap(self, namespace: str, body: dict[str, Any]) -> None:
        self._create("ConfigMap", self._core.create_namespaced_config_map, namespace, body)

    def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        self._create("Secret", self._core.create_namespaced_secret, namespace, body)

    def create(self, kind: str, namespace: str, body: dict[str, Any]) -> None:
        custom = client.CustomObjectsApi(self._core.api_client)
        group, version, plural = CUSTOM_KINDS[kind]

        def create_custom(namespace: str, body: Any, **kwargs: Any) -> Any:
            return custom.create_namespaced_custom_object(group, version, namespace, plural, body, **kwargs)

        self._create(kind, create_custom, namespace, body)

    def _create(self, kind: str, create: Callable[..., Any], namespace: str, body: dict[str, Any]) -> None:
        """Create; an object that appeared meanwhile is a 409 ConcurrentEdit, so the caller re-reads."""
        with _translated(f"{kind} {namespace}/{body['metadata']['name']}"):
            create(namespace, body, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)

    def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        """A JSON merge patch; a metadata.resourceVersion in the body makes a concurrent edit a 409."""
        custom = client.CustomObjectsApi(self._core.api_client)

        def patch_custom(name: str, namespace: str, body: Any, **kwargs: Any) -> Any:
            group, version, plural = CUSTOM_KINDS[kind]
            return custom.patch_namespaced_custom_object(group, version, namespace, plural, name, body, **kwargs)

        patchers: dict[str, Callable[..., Any]] = {
            "Ingress": self._networking.patch_namespaced_ingress,
            "Service": self._core.patch_namespaced_service,
            "Secret": self._core.patch_namespaced_secret,
            "ConfigMap": self._core.patch_namespaced_config_map,
        }
        with _translated(f"{kind} {namespace}/{name}"):
            patch: Callable[..., Any] = patchers.get(kind, patch_custom)
            patch(
                name,
                namespace,
                body,
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
