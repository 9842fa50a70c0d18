"""Watch Services, Ingresses, the tenancy policy ConfigMap and the trust Secrets with the official client and
feed the Outbox.

Per kind (and namespace): list once (the state to compare against), then watch from the list's
resourceVersion with bookmarks, resuming from the last version seen. On 410 Gone the history is lost:
relist, and report every difference between what was known and what is there now, deletions included.
Other errors back off and resume from the same version.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from watcher import changes
from watcher.outbox import Outbox
from watcher.settings import WatcherSettings

log = logging.getLogger("watcher")
GONE = 410
NOT_FOUND = 404
_GATEWAY_API = {
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),
    "Gateway": ("gateway.networking.k8s.io", "v1", "gateways"),
    "ReferenceGrant": ("gateway.networking.k8s.io", "v1beta1", "referencegrants"),
    "AuthorizationPolicy": ("security.istio.io", "v1", "authorizationpolicies"),
}
"""Custom resources watched in every namespace: kind -> (group, version, plural). AuthorizationPolicies only
the app's own (by its managed-by label): an edited or deleted one asks for a resync that puts it back."""
OWN_LABEL = "app.kubernetes.io/managed-by=aks-apim-sync"


class ClusterWatcher:
    def __init__(self, api_client: client.ApiClient, settings: WatcherSettings, outbox: Outbox, stop: threading.Event) -> None:
        self._core = client.CoreV1Api(api_client)  # type: ignore[no-untyped-call]
        self._networking = client.NetworkingV1Api(api_client)  # type: ignore[no-untyped-call]
        self._settings, self._outbox, self._stop = settings, outbox, stop
        self._lock = threading.Lock()
        self.services: dict[changes.ObjectKey, changes.ServiceState] = {}
        self.ingresses: dict[changes.ObjectKey, changes.IngressState] = {}
        self.policies: dict[changes.ObjectKey, str] = {}
        self.trust: dict[changes.ObjectKey, str] = {}
        self.routes: dict[changes.ObjectKey, changes.RouteState] = {}
        self.gateway_objects: dict[str, dict[changes.ObjectKey, str]] = {}
        """kind -> its objects' fingerprints; one table per kind, since a relist of one kind must not take
        another kind's objects of the same name for deleted ones."""
        self.relists = 0
        self.ready = threading.Event()
        self._listed = threading.Semaphore(0)

    def threads(self) -> list[threading.Thread]:
        namespaces: list[str | None] = list(self._settings.namespaces) or [None]
        policy_namespace = self._settings.tenancy_policy.split("/", 1)[0]
        return (
            [
                threading.Thread(target=self._run, args=(kind, namespace), name=f"watch-{kind}-{namespace or 'all'}", daemon=True)
                for kind in ("Service", "Ingress")
                for namespace in namespaces
            ]
            + [threading.Thread(target=self._run, args=("Policy", policy_namespace), name="watch-policy", daemon=True)]
            + [
                threading.Thread(
                    target=self._run, args=(f"Trust:{where}", where.split("/")[0]), name=f"watch-{where}", daemon=True
                )
                for where in self._settings.trust_secrets
            ]
            + [
                threading.Thread(target=self._run, args=(kind, None), name=f"watch-{kind}", daemon=True)
                for kind in (("HTTPRoute", "Gateway", "ReferenceGrant") if self._settings.watch_routes else ())
                + (("AuthorizationPolicy",) if self._settings.watch_routes and self._settings.watch_istio_policies else ())
            ]
        )

    def start(self) -> list[threading.Thread]:
        started = self.threads()
        for thread in started:
            thread.start()

        def wait_ready() -> None:
            for _ in started:
                self._listed.acquire()
            self.ready.set()

        threading.Thread(target=wait_ready, name="watch-ready", daemon=True).start()
        return started

    # -- one kind ------------------------------------------------------------------------------------------

    def _list_functions(self, kind: str, namespace: str | None) -> Callable[..., Any]:
        if kind in _GATEWAY_API:
            group, version, plural = _GATEWAY_API[kind]
            custom = client.CustomObjectsApi(self._core.api_client)  # type: ignore[no-untyped-call]

            def gateway_api(*args: Any, **kwargs: Any) -> Any:
                if kind == "AuthorizationPolicy":
                    kwargs["label_selector"] = OWN_LABEL
                return custom.list_cluster_custom_object(group, version, plural, *args, **kwargs)

            return gateway_api
        if kind.startswith("Trust:"):
            secret = kind.split("/", 1)[1]
            list_secrets = self._core.list_namespaced_secret

            def one_secret(*args: Any, **kwargs: Any) -> Any:
                kwargs["field_selector"] = f"metadata.name={secret}"  # the Role names the two Secrets, no others
                return list_secrets(*args, **kwargs)

            return one_secret
        if kind == "Policy":
            name = self._settings.tenancy_policy.split("/", 1)[1]
            list_config_maps = self._core.list_namespaced_config_map

            def policy_only(*args: Any, **kwargs: Any) -> Any:
                kwargs["field_selector"] = f"metadata.name={name}"
                return list_config_maps(*args, **kwargs)

            return policy_only
        if kind == "Service":
            return self._core.list_namespaced_service if namespace else self._core.list_service_for_all_namespaces
        return self._networking.list_namespaced_ingress if namespace else self._networking.list_ingress_for_all_namespaces

    def _run(self, kind: str, namespace: str | None) -> None:
        list_function = self._list_functions(kind, namespace)
        args = (namespace,) if namespace else ()
        version: str | None = None
        first = True
        failures = 0
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist(kind, list_function, args, report=not first)
                    if first:
                        self._listed.release()
                    first = False
                version = self._watch(kind, list_function, args, version)
                failures = 0
            except ApiException as error:
                if error.status == NOT_FOUND and kind in _GATEWAY_API:
                    log.warning("%s is not served (its CRD is not installed?); not watched", kind)
                    if first:
                        self._listed.release()
                    return
                if error.status == GONE:
                    log.info("%s watch expired (410); relisting", kind)
                    version = None
                    continue
                failures += 1
                log.warning("%s watch failed with %s; retrying", kind, error.status)
                self._stop.wait(min(30.0, 0.5 * 2**failures))
            except (urllib3.exceptions.HTTPError, OSError) as error:
                failures += 1
                log.warning("%s watch lost its connection (%s); retrying", kind, type(error).__name__)
                self._stop.wait(min(30.0, 0.5 * 2**failures))

    def _relist(self, kind: str, list_function: Callable[..., Any], args: tuple[Any, ...], *, report: bool) -> str:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": 500, "_preload_content": False, "_request_timeout": (5, 60)}
            if token:
                kwargs["_continue"] = token
            body: dict[str, Any] = json.loads(list_function(*args, **kwargs).data)
            items.extend(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                version = str((body.get("metadata") or {}).get("resourceVersion") or "")
                break
        if report:
            self.relists += 1
        for key, before, after in self._diff(kind, args[0] if args else None, items):
            self._apply(kind, key, before, after, report=report)
        return version

    def _diff(self, kind: str, namespace: str | None, items: list[dict[str, Any]]) -> list[tuple[changes.ObjectKey, Any, Any]]:
        listed = {changes.key_of(item): self._state(kind, item) for item in items}
        with self._lock:
            known = dict(self._table(kind))
        if namespace is not None:
            known = {key: state for key, state in known.items() if key[0] == namespace}
        return changes.relist_diff(known, listed)

    def _watch(self, kind: str, list_function: Callable[..., Any], args: tuple[Any, ...], version: str) -> str:
        timeout = self._settings.watch_timeout_seconds
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            list_function,
            *args,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=(5, timeout + 30),
        )
        for event in stream:
            obj: dict[str, Any] = event["raw_object"]
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if event["type"] == "BOOKMARK":
                continue
            key = changes.key_of(obj)
            with self._lock:
                before = self._table(kind).get(key)
            after = None if event["type"] == "DELETED" else self._state(kind, obj)
            self._apply(kind, key, before, after, report=True)
            if self._stop.is_set():
                break
        return version

    def _state(self, kind: str, obj: dict[str, Any]) -> Any:
        if kind == "HTTPRoute":
            return changes.route_state(obj)
        if kind in _GATEWAY_API:
            return changes.fingerprint({"spec": obj.get("spec"), "labels": (obj.get("metadata") or {}).get("labels")})
        if kind.startswith("Trust:"):
            metadata = obj.get("metadata") or {}
            return changes.fingerprint({"data": obj.get("data") or {}, "annotations": metadata.get("annotations") or {}})
        if kind == "Policy":
            return changes.fingerprint(obj.get("data") or {})
        if kind == "Service":
            return changes.service_state(obj, self._settings.annotation_prefix)
        return changes.ingress_state(obj)

    def _table(self, kind: str) -> dict[changes.ObjectKey, Any]:
        tables: dict[str, dict[changes.ObjectKey, Any]] = {"Service": self.services, "Ingress": self.ingresses}
        if kind == "HTTPRoute":
            return self.routes
        if kind in _GATEWAY_API:
            return self.gateway_objects.setdefault(kind, {})
        return self.trust if kind.startswith("Trust:") else tables.get(kind, self.policies)

    def _apply(self, kind: str, key: changes.ObjectKey, before: Any, after: Any, *, report: bool) -> None:
        with self._lock:
            if after is None:
                self._table(kind).pop(key, None)
            else:
                self._table(kind)[key] = after
        if not report:
            return
        if kind == "HTTPRoute":
            with self._lock:
                exposed = [k for k, state in self.services.items() if state.exposed]
            for item in changes.route_events(before, after, exposed):
                log.info("Service %s/%s changed (HTTPRoute %s/%s)", item.namespace, item.name, *key)
                self._outbox.add(item)
            return
        if kind in _GATEWAY_API:
            if before != after:
                log.info("%s %s/%s changed; asking for a cluster resync", kind, *key)
                self._outbox.request_resync(f"{kind} {key[0]}/{key[1]} changed")
            return
        if kind.startswith("Trust:"):
            if before != after:
                log.info("Secret %s/%s changed; asking for a rotation check", *key)
                self._outbox.request_trust_check(f"Secret {key[0]}/{key[1]} changed")
            return
        if kind == "Policy":
            if before != after:
                log.info("the tenancy policy changed; asking for a cluster resync")
                self._outbox.request_resync("the tenancy policy changed")
            return
        if kind == "Service":
            change = changes.service_event(key, before, after)
            found = [change] if change else []
        else:
            with self._lock:
                exposed = [k for k, state in self.services.items() if state.exposed]
            found = changes.ingress_events(key[0], before, after, exposed)
        for item in found:
            log.info("Service %s/%s changed", item.namespace, item.name)
            self._outbox.add(item)
