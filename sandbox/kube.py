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
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
    """RFC 7386; strategic merge is treated the same for the fields this project touches (maps, scalars)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
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
        for kind in KINDS:
            ns = rf"{kind.prefix}/namespaces/(?P<ns>[a-z0-9-]+)/{kind.plural}"
            self.route("GET", rf"{kind.prefix}/{kind.plural}", self._handler(kind, "list"))
            self.route("GET", ns, self._handler(kind, "list"))
            self.route("POST", ns, self._handler(kind, "create"))
            for verb in ("GET", "PUT", "PATCH", "DELETE"):
                self.route(verb, ns + r"/(?P<name>[^/]+)", self._handler(kind, verb.lower()))
                self.route(verb, ns + r"/(?P<name>[^/]+)/status", self._handler(kind, verb.lower()))
        self.route("GET", r"/version", lambda r, m: Response(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-sandbox"}))

    # -- direct access for tests and the sandbox -------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.objects.clear()
            self.history.clear()
            self.faults.clear()
            self.log.clear()
            self._list_snapshots.clear()
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
                    body = json_patch(existing, body) if "json-patch" in content_type else merge_patch(existing, body)
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
        return Response(200, {"kind": f"{kind.kind}List", "apiVersion": kind.group_version, "metadata": metadata, "items": page})

    def _watch(self, kind: Kind, namespace: str | None, request: Request) -> Response:
        since = int(request.query.get("resourceVersion") or 0) or next(self._rv)
        timeout = float(request.query.get("timeoutSeconds") or 30)
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true")
        labels = request.query.get("labelSelector", "")

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
                    yield json.dumps({"type": event, "object": obj}).encode() + b"\n"
                if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval_seconds:
                    last_bookmark = time.monotonic()
                    current = max(last_seen, self.history[-1][0] if self.history else last_seen)
                    marker = {"kind": kind.kind, "apiVersion": kind.group_version, "metadata": {"resourceVersion": str(current)}}
                    yield json.dumps({"type": "BOOKMARK", "object": marker}).encode() + b"\n"

        return Response(200, stream=stream())
