"""Emulator of the Kubernetes API server for the kinds aks-apim-sync reads and writes.

core/v1 Services, Secrets, ConfigMaps, Namespaces and networking.k8s.io/v1 Ingresses, as a real API server
answers them (sandbox.kube_api has the conventions; tests/emulators states each against its source):
namespaces (404 for a missing one; deleting one deletes its objects), get, list (label selectors with
`!=`, `in`, `notin`, `!key`; field selectors on metadata.name/namespace; limit/continue with opaque tokens,
410 Expired after compaction, 400 for a token it did not make), create (409 AlreadyExists; 422 Invalid with
causes for names, annotation size, loadBalancerSourceRanges, Ingress pathType), update (unconditional without
a resourceVersion, 409 Conflict with a stale one), JSON / merge / strategic-merge patches, server-side apply
with field managers, delete and deletecollection, the status subresource, and watch (synthetic ADDED events
without a resourceVersion, bookmarks, 410 Expired once the history is compacted). kubectl works against it:
discovery, OpenAPI v3, Tables (server-side printing), protobuf for `create namespace`.
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
from typing import Any

import yaml

from sandbox.httpbase import JsonServer, Request, Response
from sandbox.kube_api import (
    HISTORY_LIMIT,
    KINDS,
    NAMESPACE_KIND,
    VERSION,
    BadSelector,
    Cause,
    Kind,
    api_group_list,
    api_resource_list,
    continue_token,
    field_selector_matches,
    invalid,
    json_patch,
    label_selector_matches,
    merge_patch,
    namespace_from_protobuf,
    openapi_v3_document,
    openapi_v3_index,
    parse_continue,
    request_attributes,
    schema_causes,
    status,
    strategic_merge_patch,
    table,
    validation_causes,
)
from sandbox.throttling import TokenBuckets
from sandbox.tls import TlsFiles


def _fields_of(applied: Any) -> dict[str, Any]:
    """FieldsV1 of an applied configuration: `f:<field>` for each map key it sets (lists as a whole)."""
    if not isinstance(applied, dict):
        return {}
    return {f"f:{k}": _fields_of(v) for k, v in applied.items() if k not in ("apiVersion", "kind")}


MEDIA_TYPES = ("application/json", "application/yaml", "application/merge-patch+json", "application/strategic-merge-patch+json")


class KubeEmulator(JsonServer):
    def __init__(self, *, tls: TlsFiles, token: str) -> None:
        super().__init__(tls=tls, token=token, name="kubernetes")
        self._rv = itertools.count(1000)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []
        self.bookmark_interval_seconds = 1.0
        self._changed = threading.Condition(self.lock)
        self._list_snapshots: dict[str, list[dict[str, Any]]] = {}
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.compact_after_next_page = False
        """Tests: compact right after the next page that carries a continue token, so that token expires (410)."""
        self.installed_namespaces: tuple[str, ...] = ()
        """Namespaces that exist from the start besides the cluster's own (the app's, made at installation)."""
        self.rbac: list[dict[str, Any]] | None = None
        """The caller's RBAC: rules as in a (Cluster)Role, each with an optional "namespace" (a Role's); None
        allows everything. Tests load deploy/kubernetes/app-rbac.yaml here to prove it is enough."""
        self.user = "system:serviceaccount:aks-apim-sync:aks-apim-sync"
        self.throttle: TokenBuckets | None = None
        """Priority and fairness for the app's flow: TokenBuckets({"requests": (size, per second)}, enforce=True)."""
        self._builtin_namespaces()
        for kind in KINDS:
            ns = rf"{kind.prefix}/namespaces/(?P<ns>[a-z0-9-]+)/{kind.plural}"
            self.route("GET", rf"{kind.prefix}/{kind.plural}", self._handler(kind, "list"))
            self.route("GET", ns, self._handler(kind, "list"))
            self.route("POST", ns, self._handler(kind, "create"))
            self.route("DELETE", ns, self._handler(kind, "deletecollection"))
            for verb in ("GET", "PUT", "PATCH", "DELETE"):
                self.route(verb, ns + r"/(?P<name>[^/]+)", self._handler(kind, verb.lower()))
                self.route(verb, ns + r"/(?P<name>[^/]+)/status", self._handler(kind, verb.lower()))
        self.route("GET", r"/version/?", lambda r, m: Response(200, VERSION))  # the Python client asks for /version/
        self.route("POST", r"/apis/authorization\.k8s\.io/v1/selfsubjectaccessreviews", self._access_review)
        self.route("GET", r"/api/v1/namespaces", lambda r, m: self._namespace_list(r))
        self.route("POST", r"/api/v1/namespaces", self._create_namespace)
        self.route("GET", r"/api/v1/namespaces/(?P<name>[^/]+)", lambda r, m: self._namespace(m["name"]))
        self.route("DELETE", r"/api/v1/namespaces/(?P<name>[^/]+)", lambda r, m: self._delete_namespace(m["name"]))
        self.route("GET", r"/api", lambda r, m: Response(200, self._api_versions()))
        self.route("GET", r"/apis", lambda r, m: Response(200, api_group_list()))
        self.route("GET", r"/api/(?P<gv>v1)", self._resources)
        self.route("GET", r"/apis/(?P<gv>[a-z0-9.-]+/v1(?:beta1)?)", self._resources)
        self.route("GET", r"/openapi/v3", lambda r, m: Response(200, openapi_v3_index()))
        self.route("GET", r"/openapi/v3/(?P<gv>api/v1|apis/[a-z0-9.-]+/v1(?:beta1)?)", lambda r, m: openapi_v3_document(m["gv"]))

    def _resources(self, request: Request, match: re.Match[str]) -> Response:
        if not any(k.group_version == match["gv"] for k in KINDS):
            return self.not_found(request)
        return Response(200, api_resource_list(match["gv"]))

    # -- namespaces ------------------------------------------------------------------------------------

    def _builtin_namespaces(self) -> None:
        self.namespaces.clear()
        for name in ("default", "kube-system", "kube-public", "kube-node-lease", *self.installed_namespaces):
            self._add_namespace(name)

    def _add_namespace(self, name: str) -> dict[str, Any]:
        created = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": str(uuid.uuid4()),
                "resourceVersion": str(next(self._rv)),
                "creationTimestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        self.namespaces[name] = created
        return created

    def _namespace(self, name: str) -> Response:
        if name not in self.namespaces:
            return status(404, "NotFound", f'namespaces "{name}" not found', name=name, kind="namespaces")
        return Response(200, copy.deepcopy(self.namespaces[name]))

    def _namespace_list(self, request: Request) -> Response:
        items = [copy.deepcopy(self.namespaces[name]) for name in sorted(self.namespaces)]
        metadata = {"resourceVersion": str(next(self._rv))}
        if "as=Table" in request.headers.get("accept", ""):
            return Response(200, table(NAMESPACE_KIND, items, metadata))
        return Response(200, {"kind": "NamespaceList", "apiVersion": "v1", "metadata": metadata, "items": items})

    def _create_namespace(self, request: Request, match: re.Match[str]) -> Response:
        try:
            body = (
                namespace_from_protobuf(request.body) if "protobuf" in request.headers.get("content-type", "") else request.json()
            )
        except (ValueError, IndexError, UnicodeDecodeError) as error:
            return status(400, "BadRequest", f"the body could not be decoded: {error}")
        name = str(((body or {}).get("metadata") or {}).get("name") or "") if isinstance(body, dict) else ""
        causes = validation_causes("Namespace", {"metadata": {"name": name}})
        if causes:
            return invalid("Namespace", name, causes)
        if name in self.namespaces:
            return status(409, "AlreadyExists", f'namespaces "{name}" already exists', name=name, kind="namespaces")
        return Response(201, copy.deepcopy(self._add_namespace(name)))

    def _delete_namespace(self, name: str) -> Response:
        """A namespace and everything in it (a real one is Terminating for a while first)."""
        gone = self.namespaces.pop(name, None)
        if gone is None:
            return status(404, "NotFound", f'namespaces "{name}" not found', name=name, kind="namespaces")
        for key in [k for k in self.objects if k[1] == name]:
            kind = next(k for k in KINDS if k.plural == key[0])
            self._record("DELETED", kind, self._bump(self.objects.pop(key)))
        return Response(200, {**copy.deepcopy(gone), "status": {"phase": "Terminating"}})

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
            self._builtin_namespaces()
            self.compact_after_next_page = False
            self.latency_seconds = 0.0
            self.rbac = None
            self.throttle = None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object as `kubectl apply` would, bypassing the HTTP layer (and its validation: tests
        seed what they need); its namespace is created when missing."""
        kind = next(k for k in KINDS if k.kind == obj["kind"])
        metadata = obj["metadata"]
        key = (kind.plural, metadata.get("namespace", "default"), metadata["name"])
        with self.lock:
            if key[1] not in self.namespaces:
                self._add_namespace(key[1])  # as if `kubectl create namespace` came first
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

    def allows(self, verb: str, group: str, resource: str, namespace: str) -> bool:
        if self.rbac is None:
            return True
        return any(
            verb in rule.get("verbs", ())
            and group in rule.get("apiGroups", ())
            and resource in rule.get("resources", ())
            and (not rule.get("namespace") or rule["namespace"] == namespace)
            for rule in self.rbac
        )

    def admit(self, request: Request) -> Response | None:
        """API priority and fairness, as far as a client sees it: 429 with Retry-After when the flow is full."""
        if self.throttle is None or request_attributes(request.method, request.path, request.query) is None:
            return None
        if request.query.get("watch") in ("true", "1"):
            return None  # a watch holds a long-running seat, not a request's
        wait = self.throttle.take("requests")
        if wait is None:
            return None
        answer = status(429, "TooManyRequests", "Too many requests, please try again later.")
        answer.headers["Retry-After"] = self.throttle.retry_after_header(wait)
        return answer

    def forbidden(self, request: Request) -> Response | None:
        """403 Forbidden, worded as the API server's RBAC authorizer words it."""
        attributes = request_attributes(request.method, request.path, request.query)
        if attributes is None or attributes.resource == "selfsubjectaccessreviews":
            return None
        if self.allows(attributes.verb, attributes.group, attributes.resource, attributes.namespace):
            return None
        where = f'in the namespace "{attributes.namespace}"' if attributes.namespace else "at the cluster scope"
        subject = f'{attributes.resource} "{attributes.name}"' if attributes.name else attributes.resource
        message = (
            f'{subject} is forbidden: User "{self.user}" cannot {attributes.verb} resource "{attributes.resource}" '
            f'in API group "{attributes.group}" {where}'
        )
        return status(403, "Forbidden", message, name=attributes.name, kind=attributes.resource)

    def _access_review(self, request: Request, match: re.Match[str]) -> Response:
        """SelfSubjectAccessReview: may the caller do this? Answered from the same RBAC model, never stored."""
        review = json.loads(request.body or b"{}")
        wanted = (review.get("spec") or {}).get("resourceAttributes") or {}
        allowed = self.allows(
            str(wanted.get("verb") or ""),
            str(wanted.get("group") or ""),
            str(wanted.get("resource") or ""),
            str(wanted.get("namespace") or ""),
        )
        answer = {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": review.get("spec") or {},
            "status": {"allowed": allowed, **({} if allowed else {"reason": ""})},
        }
        return Response(201, answer)

    def refuse_media_type(self, request: Request) -> Response | None:
        """Bodies are read as JSON (and YAML for apply patches); protobuf, which kubectl's typed requests send, only
        for creating a Namespace (`kubectl create namespace`); any other protobuf body is refused with 415."""
        if request.body and "protobuf" in request.headers.get("content-type", "") and request.path != "/api/v1/namespaces":
            message = f"the body of the request was in an unknown format - accepted media types include: {', '.join(MEDIA_TYPES)}"
            return status(415, "UnsupportedMediaType", message)
        return None

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
            if verb == "deletecollection":
                return self._delete_collection(kind, namespace, request)
            if namespace not in self.namespaces and verb in ("create", "put", "patch"):
                return status(404, "NotFound", f'namespaces "{namespace}" not found', name=namespace, kind="namespaces")
            if verb == "create":
                return self._create(kind, namespace, request)
            assert name is not None
            key = (kind.plural, namespace, name)
            existing = self.objects.get(key)
            content_type = request.headers.get("content-type", "")
            if existing is None and verb == "patch" and "apply-patch" in content_type and not subresource:
                return self._server_side_apply(kind, namespace, name, None, request)
            if existing is None:
                return status(404, "NotFound", f'{kind.plural} "{name}" not found', name=name, kind=kind.plural)
            if verb == "get":
                if "as=Table" in request.headers.get("accept", ""):
                    return Response(200, table(kind, [existing], {"resourceVersion": existing["metadata"]["resourceVersion"]}))
                return Response(200, copy.deepcopy(existing))
            if verb == "delete":
                del self.objects[key]
                self._record("DELETED", kind, self._bump(copy.deepcopy(existing)))
                details = {"name": name, "kind": kind.plural, "uid": existing["metadata"]["uid"]}
                return Response(
                    200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
                )
            if verb == "patch" and "apply-patch" in content_type and not subresource:
                return self._server_side_apply(kind, namespace, name, existing, request)
            body = request.json()
            if verb == "patch":
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
            # An update without a resourceVersion is unconditional (these kinds allow it); with one, it must match.
            if wanted_rv and wanted_rv != existing["metadata"]["resourceVersion"]:
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
            causes = validation_causes(kind.kind, updated) + (
                [] if subresource else schema_causes(kind.kind, kind.version, updated)
            )
            if causes:
                return invalid(kind.kind, name, causes)
            stored = self._defaulted(kind, updated, existing)
            self._store(kind, key, stored, "MODIFIED")
            return Response(200, copy.deepcopy(stored))

        return handle

    def _server_side_apply(
        self, kind: Kind, namespace: str, name: str, existing: dict[str, Any] | None, request: Request
    ) -> Response:
        """Server-side apply (PATCH application/apply-patch+yaml): create or merge the applied configuration,
        and record the field manager in managedFields. Field ownership conflicts are not modelled."""
        manager = request.query.get("fieldManager")
        if not manager:
            return status(
                422, "Invalid", "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value: is required for apply patch"
            )
        try:
            applied = yaml.safe_load(request.body.decode() or "null")
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            return status(400, "BadRequest", f"error decoding YAML: {error}")
        if not isinstance(applied, dict):
            return status(400, "BadRequest", "the body must be an object")
        merged = strategic_merge_patch(existing or {}, applied)
        merged.pop("status", None)
        if existing is not None and "status" in existing:
            merged["status"] = copy.deepcopy(existing["status"])
        merged.setdefault("metadata", {}).update(name=name, namespace=namespace)
        entry = {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": kind.group_version,
            "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields_of(applied),
        }
        others = [f for f in merged["metadata"].get("managedFields") or [] if f.get("manager") != manager]
        merged["metadata"]["managedFields"] = [*others, entry]
        causes = validation_causes(kind.kind, merged)
        if causes:
            return invalid(kind.kind, name, causes)
        stored = self._defaulted(kind, merged, existing)
        self._store(kind, (kind.plural, namespace, name), stored, "MODIFIED" if existing else "ADDED")
        return Response(200 if existing else 201, copy.deepcopy(stored))

    def _create(self, kind: Kind, namespace: str, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            return status(400, "BadRequest", "the body must be an object")
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return invalid(
                kind.kind, "", [Cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")]
            )
        causes = validation_causes(kind.kind, body) + schema_causes(kind.kind, kind.version, body)
        if causes:
            return invalid(kind.kind, name, causes)
        key = (kind.plural, namespace, name)
        if key in self.objects:
            return status(409, "AlreadyExists", f'{kind.plural} "{name}" already exists', name=name, kind=kind.plural)
        body["metadata"]["namespace"] = namespace
        body.get("metadata", {}).pop("resourceVersion", None)
        stored = self._defaulted(kind, body, None)
        self._store(kind, key, stored, "ADDED")
        return Response(201, copy.deepcopy(stored))

    def _delete_collection(self, kind: Kind, namespace: str, request: Request) -> Response:
        try:
            doomed = self._selected(kind, namespace, request)
        except BadSelector as error:
            return status(400, "BadRequest", str(error))
        for obj in doomed:
            metadata = obj["metadata"]
            del self.objects[(kind.plural, metadata["namespace"], metadata["name"])]
            self._record("DELETED", kind, self._bump(obj))
        return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})

    def _selected(self, kind: Kind, namespace: str | None, request: Request) -> list[dict[str, Any]]:
        """BadSelector for a selector the API server would refuse."""
        labels, fields = request.query.get("labelSelector", ""), request.query.get("fieldSelector", "")
        return [
            copy.deepcopy(obj)
            for (plural, ns, _), obj in sorted(self.objects.items())
            if plural == kind.plural
            and namespace in (None, ns)
            and label_selector_matches(labels, obj["metadata"].get("labels") or {})
            and field_selector_matches(fields, obj)
        ]

    def _list(self, kind: Kind, namespace: str | None, request: Request) -> Response:
        token = request.query.get("continue")
        if token:
            try:
                list_rv, snapshot, offset = parse_continue(token)
            except ValueError as error:
                return status(400, "BadRequest", str(error))
            items = self._list_snapshots.get(snapshot)
            if items is None or list_rv < self._compacted_below:
                message = (
                    "The provided continue parameter is too old to display a consistent list result. You can start a new "
                    "list without the continue parameter, or use the continue token in this response to retrieve the "
                    "remainder of the results. Continuing with the provided token results in an inconsistent list - "
                    "objects that were created, modified, or deleted between the time the first chunk was returned "
                    "and now may show up in the list."
                )
                return status(410, "Expired", message)
        else:
            try:
                items, offset, list_rv, snapshot = self._selected(kind, namespace, request), 0, next(self._rv), uuid.uuid4().hex
            except BadSelector as error:
                return status(400, "BadRequest", str(error))
        limit = int(request.query.get("limit") or 0)
        page = items[offset : offset + limit] if limit else items[offset:]
        metadata: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit and offset + limit < len(items):
            self._list_snapshots[snapshot] = items
            metadata["continue"] = continue_token(list_rv, snapshot, offset + limit)
            metadata["remainingItemCount"] = len(items) - offset - limit
            if self.compact_after_next_page:
                self.compact_after_next_page = False
                self.compact()
        if "as=Table" in request.headers.get("accept", ""):
            return Response(200, table(kind, page, metadata))
        return Response(200, {"kind": f"{kind.kind}List", "apiVersion": kind.group_version, "metadata": metadata, "items": page})

    def _watch(self, kind: Kind, namespace: str | None, request: Request) -> Response:
        requested = request.query.get("resourceVersion") or "0"
        if not requested.isdigit():
            return status(400, "BadRequest", f'invalid resource version: "{requested}"')
        with self.lock:
            since = int(requested) if requested != "0" else next(self._rv)
            # No resourceVersion (or "0"): the API server first sends the current state as synthetic ADDED events.
            try:
                synthetic = self._selected(kind, namespace, request)
            except BadSelector as error:
                return status(400, "BadRequest", str(error))
            if requested != "0":
                synthetic = []
        fields = request.query.get("fieldSelector", "")
        timeout = float(request.query.get("timeoutSeconds") or 30)
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true")
        labels = request.query.get("labelSelector", "")
        as_table = "as=Table" in request.headers.get("accept", "")

        def stream() -> Iterator[bytes]:
            deadline = time.monotonic() + timeout
            last_seen, last_bookmark = since, time.monotonic()
            for obj in synthetic:
                shown = table(kind, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}) if as_table else obj
                yield json.dumps({"type": "ADDED", "object": shown}).encode() + b"\n"
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
                        and label_selector_matches(labels, obj["metadata"].get("labels") or {})
                        and field_selector_matches(fields, obj)
                    ]
                    # What a bookmark may claim: no further than the history these events were taken from, so an
                    # event recorded after this look is never skipped by a bookmark sent before it.
                    horizon = self.history[-1][0] if self.history else last_seen
                    if not events:
                        self._changed.wait(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
                for rv, event, obj in events:
                    last_seen = rv
                    shown = table(kind, [obj], {"resourceVersion": str(rv)}) if as_table else obj
                    yield json.dumps({"type": event, "object": shown}).encode() + b"\n"
                if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval_seconds:
                    last_bookmark = time.monotonic()
                    current = max(last_seen, horizon)
                    marker = {"kind": kind.kind, "apiVersion": kind.group_version, "metadata": {"resourceVersion": str(current)}}
                    yield json.dumps({"type": "BOOKMARK", "object": marker}).encode() + b"\n"

        return Response(200, stream=stream())
