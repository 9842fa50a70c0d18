"""The Kubernetes API conventions the emulator answers by (sandbox.kube): discovery, OpenAPI documents, Status
objects and validation (422 with causes), label and field selectors, patches (JSON, merge, strategic merge),
continue tokens, and server-side printing (Tables). Pure: no server state.

Sources: the Kubernetes API conventions (kubernetes/community), the API concepts pages (kubernetes.io), the
OpenAPI documents under sandbox/openapi, and apimachinery's validation messages.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import functools
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.httpbase import Response


@dataclass(frozen=True)
class Kind:
    group_version: str
    plural: str
    kind: str

    @property
    def version(self) -> str:
        return self.group_version.rsplit("/", 1)[-1]

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"


KINDS = (
    Kind("v1", "services", "Service"),
    Kind("v1", "secrets", "Secret"),
    Kind("v1", "configmaps", "ConfigMap"),
    Kind("networking.k8s.io/v1", "ingresses", "Ingress"),
    Kind("gateway.networking.k8s.io/v1", "gateways", "Gateway"),
    Kind("gateway.networking.k8s.io/v1", "httproutes", "HTTPRoute"),
    Kind("gateway.networking.k8s.io/v1beta1", "referencegrants", "ReferenceGrant"),
    Kind("security.istio.io/v1", "authorizationpolicies", "AuthorizationPolicy"),
)
CRDS = Path(__file__).parent / "crds"
"""The Gateway API CRDs (standard channel, v1.6.1) and Istio's AuthorizationPolicy CRD, whose schemas validate
those kinds; see SOURCES.md there."""
NAMESPACE_KIND = Kind("v1", "namespaces", "Namespace")
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
SHORT_NAMES = {
    "services": ["svc"],
    "configmaps": ["cm"],
    "ingresses": ["ing"],
    "gateways": ["gtw"],
    "authorizationpolicies": ["ap"],
}
OPENAPI = Path(__file__).parent / "openapi"
"""Kubernetes' OpenAPI v3 documents, trimmed to the schemas of the kinds served here (see SOURCES.md there);
kubectl reads them to validate and to compute client-side apply's strategic merge patches."""
MERGE_KEYS = {"ports": "port", "conditions": "type", "ownerReferences": "uid"}
"""x-kubernetes-patch-strategy merge and its merge key, for the list fields of the kinds served here (from those
documents: ServiceSpec.ports, the status conditions, ObjectMeta.ownerReferences); ObjectMeta.finalizers merges
as a set. Every other list (status.loadBalancer.ingress, Ingress rules and tls) is replaced."""
SET_MERGED = {"finalizers"}


@dataclass(frozen=True)
class RequestAttributes:
    """What the API server's authorizer sees of a resource request (as in its RequestInfo)."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str
    subresource: str = ""

    @property
    def core(self) -> bool:
        return self.group == ""


_RESOURCE_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[a-z0-9.-]+)/(?P<version>v[a-z0-9]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?$"
)


def request_attributes(method: str, path: str, query: dict[str, str]) -> RequestAttributes | None:
    """The verb, group and resource of a resource request; None for discovery, /version and the like."""
    match = _RESOURCE_PATH.match(path)
    if match is None:
        return None
    namespace, resource, name = match["ns"] or "", match["resource"], match["name"] or ""
    if resource == "namespaces" and not namespace and name:
        namespace = name  # GET /api/v1/namespaces/<name>: the namespace itself
    if name == "" and method == "GET":
        verb = "watch" if query.get("watch") in ("true", "1") else "list"
    else:
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, "")
        if method == "DELETE":
            verb = "delete" if name else "deletecollection"
    return RequestAttributes(verb, match["group"] or "", resource, namespace, name, match["sub"] or "")


def api_group_list() -> dict[str, Any]:
    """Discovery of the named groups (unaggregated: kubectl falls back to it when the server offers no
    apidiscovery.k8s.io/v2, as API servers before 1.26 did)."""
    versions: dict[str, list[str]] = {}
    for kind in KINDS:
        if kind.group_version != "v1":
            group, version = kind.group_version.split("/")
            versions.setdefault(group, [])
            if version not in versions[group]:
                versions[group].append(version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in found],
                "preferredVersion": {"groupVersion": f"{group}/{found[0]}", "version": found[0]},
            }
            for group, found in sorted(versions.items())
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
        if kind.plural in ("services", "ingresses", "gateways", "httproutes"):
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
    for relative, document in _openapi_documents().items():
        digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:128].upper()
        paths[relative] = {"serverRelativeURL": f"/openapi/v3/{relative}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_document(relative: str) -> Response:
    document = _openapi_documents().get(relative)
    if document is None:
        return status(404, "NotFound", "the server could not find the requested resource")
    return Response(200, document)


@functools.cache
def _openapi_documents() -> dict[str, dict[str, Any]]:
    """The built-in group-versions' documents, and one per custom resource group-version built from its CRD
    schema as the API server publishes it: the kind's schema with x-kubernetes-group-version-kind, and its
    paths with the same parameters the built-in kinds have (kubectl looks for fieldValidation there)."""
    documents = {path.stem.replace("__", "/"): json.loads(path.read_text()) for path in sorted(OPENAPI.glob("*.json"))}
    networking = documents["apis/networking.k8s.io/v1"]
    template = networking["paths"]["/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/{name}"]
    for kind in KINDS:
        schema = crd_schema(kind.kind, kind.version)
        if schema is None:
            continue
        group, version = kind.group_version.split("/")
        relative = f"apis/{group}/{version}"
        reverse = ".".join(reversed(group.split(".")))
        name = f"{reverse}.{version}.{kind.kind}"
        document = documents.setdefault(
            relative,
            {"openapi": networking["openapi"], "info": networking["info"], "paths": {}, "components": {"schemas": {}}},
        )
        gvk = [{"group": group, "version": version, "kind": kind.kind}]
        document["components"]["schemas"][name] = {**schema, "x-kubernetes-group-version-kind": gvk}
        for common in ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"):
            document["components"]["schemas"][common] = networking["components"]["schemas"][common]
        item = json.loads(json.dumps(template).replace("Ingress", kind.kind).replace("ingresses", kind.plural))
        for operation in item.values():
            if isinstance(operation, dict):
                operation["x-kubernetes-group-version-kind"] = gvk[0]
        text = json.dumps(item).replace("io.k8s.api.networking.v1." + kind.kind, name)
        document["paths"][f"/{relative}/namespaces/{{namespace}}/{kind.plural}/{{name}}"] = json.loads(text)
    return documents


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
    "Namespace": [("Status", "string")],
}


def _cells(obj: dict[str, Any]) -> list[Any]:
    kind = obj.get("kind")
    if kind == "Service":
        return _service_cells(obj)
    if kind == "ConfigMap":
        return [len(obj.get("data") or {}) + len(obj.get("binaryData") or {})]
    if kind == "Secret":
        return [obj.get("type", "Opaque"), len(obj.get("data") or {})]
    if kind == "Namespace":
        return [(obj.get("status") or {}).get("phase", "Active")]
    if kind != "Ingress":
        return []
    hosts = sorted({r.get("host", "*") for r in (obj.get("spec") or {}).get("rules") or []})
    return [",".join(hosts) or "*"]


def table(kind: Kind, items: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    """meta.k8s.io/v1 Table, as the API server answers kubectl's `Accept: ...;as=Table` (server-side printing):
    the columns kubectl shows for these kinds, and each row's object as PartialObjectMetadata."""
    columns = [("Name", "string"), *TABLE_COLUMNS.get(kind.kind, []), ("Age", "string")]
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


_SELECTOR_TERM = re.compile(
    r"^\s*(?P<not>!)?\s*(?P<key>[A-Za-z0-9./_-]+)\s*"
    r"(?:(?P<op>==|!=|=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9._-]*))?\s*$"
)


class BadSelector(ValueError):
    """A selector the API server rejects with 400 BadRequest."""


def _selector_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses: `env in (a,b),tier` is two terms."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [t for t in [*terms, current] if t.strip()]


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """The label selector grammar of apimachinery: `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`,
    `key notin (a,b)`; terms are ANDed. BadSelector for anything else."""
    for term in _selector_terms(selector):
        matched = _SELECTOR_TERM.match(term)
        if matched is None or (matched["not"] and matched["op"]):
            raise BadSelector(f"unable to parse requirement: {term.strip()!r}")
        key, op, value = matched["key"], (matched["op"] or "").strip(), matched["value"]
        if not op:
            if (key in labels) == bool(matched["not"]):
                return False
            continue
        if op in ("in", "notin"):
            if value is None or not value.startswith("("):
                raise BadSelector(
                    f"unable to parse requirement: {term.strip()!r}: for 'in', 'notin' operators, values set can't be empty"
                )
            values = {v.strip() for v in value[1:-1].split(",") if v.strip()}
            if (labels.get(key) in values) != (op == "in") or (op == "in" and key not in labels):
                return False
            continue
        if value is None or value.startswith("("):
            raise BadSelector(f"unable to parse requirement: {term.strip()!r}")
        if op == "!=":
            if labels.get(key) == value:
                return False
        elif labels.get(key) != value:
            return False
    return True


FIELD_LABELS = ("metadata.name", "metadata.namespace")


def field_selector_matches(selector: str, obj: dict[str, Any]) -> bool:
    """Field selectors on the fields every kind supports (metadata.name, metadata.namespace): `=`, `==`, `!=`;
    BadSelector (400 'field label not supported') for any other field, as the API server answers."""
    metadata = obj.get("metadata") or {}
    for term in _selector_terms(selector):
        matched = re.fullmatch(r"\s*([A-Za-z0-9._-]+)\s*(==|!=|=)\s*([^,]*?)\s*", term)
        if matched is None:
            raise BadSelector(f"invalid selector: '{term.strip()}'; can't understand '{term.strip()}'")
        field, op, value = matched[1], matched[2], matched[3]
        if field not in FIELD_LABELS:
            raise BadSelector(f"field label not supported: {field}")
        have = str(metadata.get(field.split(".", 1)[1], ""))
        if (have == value) != (op != "!="):
            return False
    return True


# -- validation ----------------------------------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
TOTAL_ANNOTATION_BYTES = 256 * 1024
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")


@dataclass(frozen=True)
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"


def _name_causes(kind: str, name: str) -> list[Cause]:
    if kind == "Service":
        if len(name) > 63 or not _DNS1035_LABEL.match(name):
            return [
                Cause(
                    "metadata.name",
                    f'Invalid value: "{name}": a DNS-1035 label must consist of lower case alphanumeric '
                    "characters or '-', start with an alphabetic character, and end with an alphanumeric character",
                )
            ]
        return []
    if kind == "Namespace":
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            return [
                Cause(
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                    "alphanumeric characters or '-', and must start and end with an alphanumeric character",
                )
            ]
        return []
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return [
            Cause(
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        ]
    return []


def validation_causes(kind: str, obj: dict[str, Any]) -> list[Cause]:
    """What the API server's validation refuses, for the fields the app and the tests write: names, the total
    size of annotations, Service loadBalancerSourceRanges, Ingress paths' pathType."""
    metadata = obj.get("metadata") or {}
    causes = _name_causes(kind, str(metadata.get("name") or ""))
    annotations = metadata.get("annotations") or {}
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > TOTAL_ANNOTATION_BYTES:
        causes.append(
            Cause("metadata.annotations", f"Too long: must have at most {TOTAL_ANNOTATION_BYTES} bytes", "FieldValueTooLong")
        )
    spec = obj.get("spec") or {}
    if kind == "Service":
        for i, cidr in enumerate(spec.get("loadBalancerSourceRanges") or []):
            try:
                ipaddress.ip_network(str(cidr).strip(), strict=False)
            except ValueError:
                causes.append(
                    Cause(f"spec.loadBalancerSourceRanges[{i}]", f'Invalid value: "{cidr}": must be a valid IP address or CIDR')
                )
    if kind == "Ingress":
        for r, rule in enumerate(spec.get("rules") or []):
            for p, path in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
                where = f"spec.rules[{r}].http.paths[{p}].pathType"
                if not path.get("pathType"):
                    causes.append(Cause(where, "Required value: pathType must be specified", "FieldValueRequired"))
                elif path["pathType"] not in PATH_TYPES:
                    causes.append(
                        Cause(
                            where,
                            f'Unsupported value: "{path["pathType"]}": supported values: '
                            '"Exact", "ImplementationSpecific", "Prefix"',
                            "FieldValueNotSupported",
                        )
                    )
    return causes


@functools.cache
def crd_schema(kind: str, version: str) -> dict[str, Any] | None:
    """The openAPIV3Schema of a served custom resource's version; None for a built-in kind."""
    import yaml

    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] != kind:
            continue
        for served in crd["spec"]["versions"]:
            if served["name"] == version:
                schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
                return schema
    return None


def schema_causes(kind: str, version: str, obj: dict[str, Any]) -> list[Cause]:
    """Structural validation of a custom resource against its CRD schema, as the API server does it before
    admission (the CEL rules are not evaluated here). `status` is validated only through the subresource."""
    schema = crd_schema(kind, version)
    if schema is None:
        return []
    import jsonschema

    checked = {k: v for k, v in obj.items() if k != "status"}
    validator = jsonschema.Draft7Validator(
        {**schema, "properties": {k: v for k, v in schema.get("properties", {}).items() if k != "status"}}
    )
    causes = []
    for error in sorted(validator.iter_errors(checked), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path).replace(".[", "[")
        reason = "FieldValueRequired" if error.validator == "required" else "FieldValueInvalid"
        causes.append(Cause(where or "<root>", f"Invalid value: {error.message[:200]}", reason))
    return causes


def invalid(kind: str, name: str, causes: list[Cause]) -> Response:
    """422 Invalid, as apimachinery's NewInvalid builds it: the message lists every cause."""
    summary = ", ".join(f"{c.field}: {c.message}" for c in causes)
    message = f'{kind} "{name}" is invalid: {summary}' if len(causes) == 1 else f'{kind} "{name}" is invalid: [{summary}]'
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": {
            "name": name,
            "kind": kind,
            "causes": [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes],
        },
        "code": 422,
    }
    return Response(422, body)


# -- continue tokens -----------------------------------------------------------------------------------


def continue_token(resource_version: int, snapshot: str, offset: int) -> str:
    """Opaque to clients, as the API server's (base64 of a small JSON document carrying the list's version)."""
    document = {"v": "meta.k8s.io/v1", "rv": resource_version, "start": f"{snapshot}:{offset}"}
    return base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":")).encode()).decode().rstrip("=")


def parse_continue(token: str) -> tuple[int, str, int]:
    """(resource version, snapshot, offset); ValueError for a token the server did not make (400 BadRequest)."""
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        snapshot, offset = str(document["start"]).split(":")
        if document.get("v") != "meta.k8s.io/v1":
            raise ValueError("unknown version")
        return int(document["rv"]), snapshot, int(offset)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as error:
        raise ValueError(f"continue key is not valid: {error}") from None


# -- protobuf (kubectl's typed requests) -----------------------------------------------------------------

PROTOBUF_MAGIC = b"k8s\x00"


def _protobuf_fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) of one protobuf message: varints as ints, length-delimited fields as bytes."""
    fields: list[tuple[int, bytes | int]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields.append((number, varint()))
        elif wire == 2:
            length = varint()
            fields.append((number, data[i : i + length]))
            i += length
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return fields


def namespace_from_protobuf(body: bytes) -> dict[str, Any]:
    """The Namespace in a `k8s\\0`-framed protobuf body (runtime.Unknown whose raw is a v1.Namespace), as JSON:
    name and labels of its ObjectMeta, which is all `kubectl create namespace` sends. ValueError otherwise."""
    if not body.startswith(PROTOBUF_MAGIC):
        raise ValueError("not a Kubernetes protobuf body")
    unknown = dict(_protobuf_fields(body[len(PROTOBUF_MAGIC) :]))
    raw = unknown.get(2)
    if not isinstance(raw, bytes):
        raise ValueError("no object in the body")
    namespace = dict(_protobuf_fields(raw))
    meta = namespace.get(1)
    if not isinstance(meta, bytes):
        raise ValueError("no metadata")
    metadata: dict[str, Any] = {}
    for number, value in _protobuf_fields(meta):
        if number == 1 and isinstance(value, bytes):
            metadata["name"] = value.decode()
        elif number == 11 and isinstance(value, bytes):
            entry = dict(_protobuf_fields(value))
            key, label = entry.get(1, b""), entry.get(2, b"")
            if isinstance(key, bytes) and isinstance(label, bytes):
                metadata.setdefault("labels", {})[key.decode()] = label.decode()
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
