"""Emulator of the Kubernetes API server for the kinds aks-apim-sync reads and writes.

core/v1 Services, Secrets, ConfigMaps and networking.k8s.io/v1 Ingresses: get, list (label and
metadata.name field selectors, limit/continue), create (409 AlreadyExists), update (409 Conflict on a
stale resourceVersion), merge / strategic-merge / JSON patch, delete, the status subresource, and watch
(resourceVersion, bookmarks, 410 Expired once the history is compacted). Bodies and Status objects
follow the Kubernetes API conventions (tests/fixtures/kubernetes).
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.httpbase import JsonServer, Request, Response
from sandbox.tls import TlsFiles


@dataclass(frozen=True)
class Kind:
    group_version: str
    plural: str
    kind: str

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"


KINDS = (
    Kind("v1", "services", "Service"),
    Kind("v1", "secrets", "Secret"),
    Kind("v1", "configmaps", "ConfigMap"),
    Kind("networking.k8s.io/v1", "ingresses", "Ingress"),
)
HISTORY_LIMIT = 10_000
VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SHORT_NAMES = {"services": ["svc"], "configmaps": ["cm"], "ingresses": ["ing"]}
OPENAPI = Path(__file__).parent / "openapi"
"""Kubernetes' OpenAPI v3 documents, trimmed to the schemas of the kinds served here (see SOURCES.md there);
kubectl reads them to validate and to compute client-side apply's strategic merge patches."""
MERGE_KEYS = {"ports": "port", "conditions": "type", "ownerReferences": "uid"}
"""x-kubernetes-patch-strategy merge and its merge key, for the list fields of the kinds served here (from those
documents: ServiceSpec.ports, the status conditions, ObjectMeta.ownerReferences); ObjectMeta.finalizers merges
as a set. Every other list (status.loadBalancer.ingress, Ingress rules and tls) is replaced."""
SET_MERGED = {"finalizers"}


def api_group_list() -> dict[str, Any]:
    """Discovery of the named groups (unaggregated: kubectl falls back to it when the server offers no
    apidiscovery.k8s.io/v2, as API servers before 1.26 did)."""
    groups = sorted({k.group_version for k in KINDS if k.group_version != "v1"})
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": gv.split("/")[0],
                "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
            }
            for gv in groups
        ],
    }


def api_resource_list(group_version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for kind in (k for k in KINDS if k.group_version == group_version):
        resources.append(
            {
                "name": kind.plural,
                "singularName": kind.kind.lower(),
                "namespaced": True,
                "kind": kind.kind,
                "verbs": VERBS,
                **({"shortNames": SHORT_NAMES[kind.plural]} if kind.plural in SHORT_NAMES else {}),
            }
        )
        if kind.plural in ("services", "ingresses"):
            resources.append(
                {
                    "name": f"{kind.plural}/status",
                    "singularName": "",
                    "namespaced": True,
                    "kind": kind.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    if group_version == "v1":
        resources.append(
            {
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": ["get", "list"],
                "shortNames": ["ns"],
            }
        )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def openapi_v3_index() -> dict[str, Any]:
    paths = {}
    for document in sorted(OPENAPI.glob("*.json")):
        relative = document.stem.replace("__", "/")
        digest = hashlib.sha512(document.read_bytes()).hexdigest()[:128].upper()
        paths[relative] = {"serverRelativeURL": f"/openapi/v3/{relative}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_document(relative: str) -> Response:
    document = OPENAPI / f"{relative.replace('/', '__')}.json"
    if not document.is_file():
        return status(404, "NotFound", "the server could not find the requested resource")
    return Response(200, json.loads(document.read_text()))


def _age(timestamp: str) -> str:
    created = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _service_cells(obj: dict[str, Any]) -> list[Any]:
    spec, balancer = obj.get("spec") or {}, ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(i.get("ip") or i.get("hostname") or "" for i in balancer)
    if not external:
        external = "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), external, ports]


TABLE_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "Service": [("Type", "string"), ("Cluster-IP", "string"), ("External-IP", "string"), ("Port(s)", "string")],
    "ConfigMap": [("Data", "integer")],
    "Secret": [("Type", "string"), ("Data", "integer")],
    "Ingress": [("Hosts", "string")],
}


def _cells(obj: dict[str, Any]) -> list[Any]:
    kind = obj.get("kind")
    if kind == "Service":
        return _service_cells(obj)
    if kind == "ConfigMap":
        return [len(obj.get("data") or {}) + len(obj.get("binaryData") or {})]
    if kind == "Secret":
        return [obj.get("type", "Opaque"), len(obj.get("data") or {})]
    hosts = sorted({r.get("host", "*") for r in (obj.get("spec") or {}).get("rules") or []})
    return [",".join(hosts) or "*"]


def table(kind: Kind, items: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    """meta.k8s.io/v1 Table, as the API server answers kubectl's `Accept: ...;as=Table` (server-side printing):
    the columns kubectl shows for these kinds, and each row's object as PartialObjectMetadata."""
    columns = [("Name", "string"), *TABLE_COLUMNS[kind.kind], ("Age", "string")]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [
            {"name": name, "type": kind_, "format": "name" if name == "Name" else "", "description": "", "priority": 0}
            for name, kind_ in columns
        ],
        "rows": [
            {
                "cells": [obj["metadata"]["name"], *_cells(obj), _age(obj["metadata"]["creationTimestamp"])],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]},
            }
            for obj in items
        ],
    }


def status(code: int, reason: str, message: str, *, name: str = "", kind: str = "") -> Response:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if name or kind:
        body["details"] = {"name": name, "kind": kind}
    return Response(code, body)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, everything else (lists included) is replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge as the API server does it for the fields of these kinds: maps merge, lists with a patch
    merge key merge by that key (`$patch: delete` removes an element), other lists are replaced, and the
    `$setElementOrder/...`, `$retainKeys` and `$deleteFromPrimitiveList/...` directives are honoured or dropped,
    never stored."""
    if isinstance(patch, list) and field in SET_MERGED:
        kept = list(target) if isinstance(target, list) else []
        return kept + [item for item in patch if item not in kept]
    if isinstance(patch, list):
        key = MERGE_KEYS.get(field)
        if key is None or not isinstance(target, list):
            return [strategic_merge_patch(None, item) for item in patch]
        merged = [copy.deepcopy(item) for item in target]
        for item in patch:
            if not isinstance(item, dict):
                continue
            found = next((i for i, have in enumerate(merged) if isinstance(have, dict) and have.get(key) == item.get(key)), None)
            if item.get("$patch") == "delete":
                if found is not None:
                    del merged[found]
            elif found is None:
                merged.append(strategic_merge_patch(None, item))
            else:
                merged[found] = strategic_merge_patch(merged[found], item)
        return merged
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if name.startswith("$deleteFromPrimitiveList/"):
            field_name = name.split("/", 1)[1]
            result[field_name] = [v for v in result.get(field_name) or [] if v not in value]
        elif name.startswith("$"):
            continue
        elif value is None:
            result.pop(name, None)
        else:
            result[name] = strategic_merge_patch(result.get(name), value, name)
    return result


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    document = copy.deepcopy(target)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = document
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif op["op"] == "test" and parent.get(last) != op["value"]:
            raise ValueError(f"test failed at {op['path']}")
    return document


def _label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class KubeEmulator(JsonServer):
    def __init__(self, *, tls: TlsFiles, token: str) -> None:
        super().__init__(tls=tls, token=token, name="kubernetes")
        self._rv = itertools.count(1000)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []
        self.bookmark_interval_seconds = 1.0
        self._changed = threading.Condition(self.lock)
        self._list_snapshots: dict[str, list[dict[str, Any]]] = {}
        self._namespaces_used: set[str] = set()
        for kind in KINDS:
            ns = rf"{kind.prefix}/namespaces/(?P<ns>[a-z0-9-]+)/{kind.plural}"
            self.route("GET", rf"{kind.prefix}/{kind.plural}", self._handler(kind, "list"))
            self.route("GET", ns, self._handler(kind, "list"))
            self.route("POST", ns, self._handler(kind, "create"))
            for verb in ("GET", "PUT", "PATCH", "DELETE"):
                self.route(verb, ns + r"/(?P<name>[^/]+)", self._handler(kind, verb.lower()))
                self.route(verb, ns + r"/(?P<name>[^/]+)/status", self._handler(kind, verb.lower()))
        self.route("GET", r"/version", lambda r, m: Response(200, VERSION))
        self.route("GET", r"/api/v1/namespaces", lambda r, m: Response(200, self._namespace_list()))
        self.route("GET", r"/api/v1/namespaces/(?P<name>[^/]+)", lambda r, m: self._namespace(m["name"]))
        self.route("GET", r"/api", lambda r, m: Response(200, self._api_versions()))
        self.route("GET", r"/apis", lambda r, m: Response(200, api_group_list()))
        self.route("GET", r"/api/(?P<gv>v1)", self._resources)
        self.route("GET", r"/apis/(?P<gv>[a-z0-9.-]+/v1)", self._resources)
        self.route("GET", r"/openapi/v3", lambda r, m: Response(200, openapi_v3_index()))
        self.route("GET", r"/openapi/v3/(?P<gv>api/v1|apis/[a-z.]+/v1)", lambda r, m: openapi_v3_document(m["gv"]))

    def _resources(self, request: Request, match: re.Match[str]) -> Response:
        if not any(k.group_version == match["gv"] for k in KINDS):
            return self.not_found(request)
        return Response(200, api_resource_list(match["gv"]))

    def _namespace_names(self) -> list[str]:
        """A namespace exists here once an object was stored in it, and the cluster's own always (there is no
        Namespace object to create or delete yet; creating into a namespace never used still works)."""
        with self.lock:
            return sorted({"default", "kube-system", "kube-public", "kube-node-lease", *self._namespaces_used})

    def _namespace_object(self, name: str) -> dict[str, Any]:
        return {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def _namespace(self, name: str) -> Response:
        if name not in self._namespace_names():
            return status(404, "NotFound", f'namespaces "{name}" not found', name=name, kind="namespaces")
        return Response(200, self._namespace_object(name))

    def _namespace_list(self) -> dict[str, Any]:
        items = [self._namespace_object(name) for name in self._namespace_names()]
        return {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": str(next(self._rv))}, "items": items}

    def _api_versions(self) -> dict[str, Any]:
        address = self.url.removeprefix("https://")
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
        }

    # -- direct access for tests and the sandbox -------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.objects.clear()
            self.history.clear()
            self.faults.clear()
            self.log.clear()
            self._list_snapshots.clear()
            self._namespaces_used.clear()
            self.latency_seconds = 0.0

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object as `kubectl apply` would, bypassing the HTTP layer."""
        kind = next(k for k in KINDS if k.kind == obj["kind"])
        metadata = obj["metadata"]
        key = (kind.plural, metadata.get("namespace", "default"), metadata["name"])
        with self.lock:
            existing = self.objects.get(key)
            stored = self._defaulted(kind, copy.deepcopy(obj), existing)
            self._store(kind, key, stored, "MODIFIED" if existing else "ADDED")
            return copy.deepcopy(stored)

    def remove(self, kind_name: str, namespace: str, name: str) -> None:
        kind = next(k for k in KINDS if k.kind == kind_name)
        with self.lock:
            obj = self.objects.pop((kind.plural, namespace, name))
            self._record("DELETED", kind, self._bump(obj))

    def get(self, kind_name: str, namespace: str, name: str) -> dict[str, Any] | None:
        kind = next(k for k in KINDS if k.kind == kind_name)
        with self.lock:
            found = self.objects.get((kind.plural, namespace, name))
            return copy.deepcopy(found) if found else None

    def compact(self) -> None:
        """Forget the watch history, so a watch from an older resourceVersion gets 410 Gone."""
        with self.lock:
            self.history.clear()
            self._compacted_below = next(self._rv)

    # -- internals -----------------------------------------------------------------------------------

    _compacted_below = 0

    def unauthorized(self) -> Response:
        return status(401, "Unauthorized", "Unauthorized")

    def not_found(self, request: Request) -> Response:
        return status(404, "NotFound", "the server could not find the requested resource")

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        return obj

    def _record(self, event: str, kind: Kind, obj: dict[str, Any]) -> None:
        self.history.append((int(obj["metadata"]["resourceVersion"]), event, kind.plural, copy.deepcopy(obj)))
        del self.history[:-HISTORY_LIMIT]
        self._changed.notify_all()

    def _store(self, kind: Kind, key: tuple[str, str, str], obj: dict[str, Any], event: str) -> None:
        self._namespaces_used.add(key[1])
        self.objects[key] = self._bump(obj)
        self._record(event, kind, obj)

    def _defaulted(self, kind: Kind, obj: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        obj["apiVersion"], obj["kind"] = kind.group_version, kind.kind
        metadata = obj.setdefault("metadata", {})
        metadata.setdefault("namespace", "default")
        if existing:
            for field in ("uid", "creationTimestamp"):
                metadata[field] = existing["metadata"][field]
        else:
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if kind.kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            spec.setdefault(
                "clusterIP",
                (existing or {}).get("spec", {}).get("clusterIP")
                or f"10.0.{len(self.objects) // 250}.{len(self.objects) % 250 + 1}",
            )
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            obj.setdefault("status", {"loadBalancer": {}})
        if kind.kind == "Secret":
            obj.setdefault("type", "Opaque")
            for key, value in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[key] = base64.b64encode(value.encode()).decode()
        return obj

    def _handler(self, kind: Kind, verb: str):  # type: ignore[no-untyped-def]
        def handle(request: Request, match: re.Match[str]) -> Response:
            groups = match.groupdict()
            namespace, name = groups.get("ns"), groups.get("name")
            subresource = request.path.endswith("/status")
            if verb == "list":
                return (
                    self._watch(kind, namespace, request)
                    if request.query.get("watch") in ("1", "true")
                    else self._list(kind, namespace, request)
                )
            assert namespace is not None
            if verb == "create":
                return self._create(kind, namespace, request)
            assert name is not None
            key = (kind.plural, namespace, name)
            existing = self.objects.get(key)
            if existing is None:
                return status(404, "NotFound", f'{kind.plural} "{name}" not found', name=name, kind=kind.plural)
            if verb == "get":
                if "as=Table" in request.headers.get("accept", ""):
                    return Response(200, table(kind, [existing], {"resourceVersion": existing["metadata"]["resourceVersion"]}))
                return Response(200, copy.deepcopy(existing))
            if verb == "delete":
                del self.objects[key]
                self._record("DELETED", kind, self._bump(copy.deepcopy(existing)))
                return Response(
                    200,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {"name": name, "kind": kind.plural, "uid": existing["metadata"]["uid"]},
                    },
                )
            body = request.json()
            if verb == "patch":
                content_type = request.headers.get("content-type", "")
                try:
                    if "json-patch" in content_type:
                        body = json_patch(existing, body)
                    elif "strategic-merge-patch" in content_type:
                        body = strategic_merge_patch(existing, body)
                    else:
                        body = merge_patch(existing, body)
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    return status(422, "Invalid", f"the patch could not be applied: {exc}")
            if not isinstance(body, dict):
                return status(400, "BadRequest", "the body must be an object")
            wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
            if (verb == "put" or wanted_rv) and wanted_rv != existing["metadata"]["resourceVersion"]:
                message = (
                    f'Operation cannot be fulfilled on {kind.plural} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                )
                return status(409, "Conflict", message, name=name, kind=kind.plural)
            if subresource:
                updated = copy.deepcopy(existing)
                updated["status"] = body.get("status", {})
            else:
                updated = body
                updated.pop("status", None)
                if "status" in existing:
                    updated["status"] = copy.deepcopy(existing["status"])
            updated.setdefault("metadata", {}).update(name=name, namespace=namespace)
            stored = self._defaulted(kind, updated, existing)
            self._store(kind, key, stored, "MODIFIED")
            return Response(200, copy.deepcopy(stored))

        return handle

    def _create(self, kind: Kind, namespace: str, request: Request) -> Response:
        body = request.json()
        name = ((body or {}).get("metadata") or {}).get("name")
        if not name:
            return status(422, "Invalid", f"{kind.kind} is invalid: metadata.name: Required value")
        key = (kind.plural, namespace, name)
        if key in self.objects:
            return status(409, "AlreadyExists", f'{kind.plural} "{name}" already exists', name=name, kind=kind.plural)
        body["metadata"]["namespace"] = namespace
        body.get("metadata", {}).pop("resourceVersion", None)
        stored = self._defaulted(kind, body, None)
        self._store(kind, key, stored, "ADDED")
        return Response(201, copy.deepcopy(stored))

    def _selected(self, kind: Kind, namespace: str | None, request: Request) -> list[dict[str, Any]]:
        labels, fields = request.query.get("labelSelector", ""), request.query.get("fieldSelector", "")
        wanted_name = fields.split("=", 1)[1] if fields.startswith("metadata.name=") else None
        return [
            copy.deepcopy(obj)
            for (plural, ns, name), obj in sorted(self.objects.items())
            if plural == kind.plural
            and namespace in (None, ns)
            and (wanted_name is None or name == wanted_name)
            and _label_selector_matches(labels, obj["metadata"].get("labels") or {})
        ]

    def _list(self, kind: Kind, namespace: str | None, request: Request) -> Response:
        token = request.query.get("continue")
        if token:
            items = self._list_snapshots.get(token.split(":")[0])
            if items is None:
                return status(410, "Expired", "The provided continue parameter is too old to display a consistent list result.")
            offset = int(token.split(":")[1])
            list_rv = token.split(":")[2]
        else:
            items, offset, list_rv = self._selected(kind, namespace, request), 0, str(next(self._rv))
        limit = int(request.query.get("limit") or 0)
        page = items[offset : offset + limit] if limit else items[offset:]
        metadata: dict[str, Any] = {"resourceVersion": list_rv}
        if limit and offset + limit < len(items):
            snapshot = token.split(":")[0] if token else uuid.uuid4().hex
            self._list_snapshots[snapshot] = items
            metadata["continue"] = f"{snapshot}:{offset + limit}:{list_rv}"
            metadata["remainingItemCount"] = len(items) - offset - limit
        if "as=Table" in request.headers.get("accept", ""):
            return Response(200, table(kind, page, metadata))
        return Response(200, {"kind": f"{kind.kind}List", "apiVersion": kind.group_version, "metadata": metadata, "items": page})

    def _watch(self, kind: Kind, namespace: str | None, request: Request) -> Response:
        since = int(request.query.get("resourceVersion") or 0) or next(self._rv)
        timeout = float(request.query.get("timeoutSeconds") or 30)
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true")
        labels = request.query.get("labelSelector", "")
        as_table = "as=Table" in request.headers.get("accept", "")

        def stream() -> Iterator[bytes]:
            deadline = time.monotonic() + timeout
            last_seen, last_bookmark = since, time.monotonic()
            if since < self._compacted_below:
                gone = status(410, "Expired", f"too old resource version: {since} ({self._compacted_below})").body
                yield json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n"
                return
            while time.monotonic() < deadline:
                with self.lock:
                    events = [
                        (rv, event, obj)
                        for rv, event, plural, obj in self.history
                        if rv > last_seen
                        and plural == kind.plural
                        and namespace in (None, obj["metadata"]["namespace"])
                        and _label_selector_matches(labels, obj["metadata"].get("labels") or {})
                    ]
                    if not events:
                        self._changed.wait(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
                for rv, event, obj in events:
                    last_seen = rv
                    shown = table(kind, [obj], {"resourceVersion": str(rv)}) if as_table else obj
                    yield json.dumps({"type": event, "object": shown}).encode() + b"\n"
                if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval_seconds:
                    last_bookmark = time.monotonic()
                    current = max(last_seen, self.history[-1][0] if self.history else last_seen)
                    marker = {"kind": kind.kind, "apiVersion": kind.group_version, "metadata": {"resourceVersion": str(current)}}
                    yield json.dumps({"type": "BOOKMARK", "object": marker}).encode() + b"\n"

        return Response(200, stream=stream())
