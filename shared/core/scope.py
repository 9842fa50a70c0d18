"""What a run is asked to look at: the whole cluster, one namespace or one Service.

Pure. A scope is a key, never desired state (controller-runtime's Request): the run reads the truth
itself. Also parses the HTTP resync request into a scope, or a BadRequest that names the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.core.model import ServiceRef

MAX_BODY_BYTES = 64 * 1024
"""Every option fits in far less; a larger body is refused before it is parsed."""
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Scope:
    cluster: str
    namespace: str | None = None
    service: str | None = None

    @property
    def kind(self) -> str:
        return "service" if self.service else "namespace" if self.namespace else "cluster"

    def covers(self, ref: ServiceRef) -> bool:
        return (
            ref.cluster == self.cluster
            and (self.namespace is None or ref.namespace == self.namespace)
            and (self.service is None or ref.name == self.service)
        )

    def to_json(self) -> dict[str, str]:
        shown = {"kind": self.kind, "cluster": self.cluster}
        if self.namespace:
            shown["namespace"] = self.namespace
        if self.service:
            shown["service"] = self.service
        return shown


class Steps(StrEnum):
    """Which steps a run takes (the `scope` option of POST /api/resync)."""

    ALL = "all"
    BACKENDS = "backends"
    ALLOWLIST = "allowlist"


@dataclass(frozen=True)
class ResyncRequest:
    scope: Scope
    dry_run: bool
    allow_mass_delete: bool
    steps: Steps = Steps.ALL


@dataclass(frozen=True)
class BadRequest:
    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"error": "BadRequest", "field": self.field, "message": self.message}


def _flag(value: object, name: str) -> bool | BadRequest:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", ""):
        return True
    if text in ("false", "0"):
        return False
    return BadRequest(name, "must be true or false")


def _options(params: Mapping[str, str], body: bytes, known: set[str]) -> dict[str, object] | BadRequest:
    """Options from the query string or a JSON object body (the query string wins); unknown ones are refused."""
    options: dict[str, object] = {}
    if body.strip():
        if len(body) > MAX_BODY_BYTES:
            return BadRequest("body", f"larger than {MAX_BODY_BYTES} bytes")
        try:
            decoded = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return BadRequest("body", "not valid JSON (or nested too deeply)")
        if not isinstance(decoded, dict):
            return BadRequest("body", "must be a JSON object")
        options.update(decoded)
    options.update(params)
    unknown = sorted(set(options) - known)
    if unknown:
        return BadRequest(unknown[0], f"unknown option; known: {', '.join(sorted(known))}")
    return options


def _flags(options: Mapping[str, object], names: tuple[str, ...]) -> dict[str, bool] | BadRequest:
    flags: dict[str, bool] = {}
    for name in names:
        parsed = _flag(options.get(name, False), name)
        if isinstance(parsed, BadRequest):
            return parsed
        flags[name] = parsed
    return flags


def parse_resync_request(params: Mapping[str, str], body: bytes, *, cluster: str) -> ResyncRequest | BadRequest:
    """Options come from the query string or a JSON object body; the query string wins."""
    options = _options(params, body, {"dryRun", "namespace", "service", "allowMassDelete", "scope"})
    if isinstance(options, BadRequest):
        return options
    flags = _flags(options, ("dryRun", "allowMassDelete"))
    if isinstance(flags, BadRequest):
        return flags
    namespace, service = options.get("namespace"), options.get("service")
    for name, value in (("namespace", namespace), ("service", service)):
        if value is not None and (not isinstance(value, str) or not _DNS_LABEL.match(value)):
            return BadRequest(name, "must be a Kubernetes object name (DNS label)")
    if service is not None and namespace is None:
        return BadRequest("service", "needs namespace as well")
    steps = options.get("scope", Steps.ALL.value)
    if steps not in set(Steps):
        return BadRequest("scope", f"must be one of {', '.join(Steps)}")
    scope = Scope(
        cluster,
        namespace=namespace if isinstance(namespace, str) else None,
        service=service if isinstance(service, str) else None,
    )
    return ResyncRequest(
        scope=scope, dry_run=flags["dryRun"], allow_mass_delete=flags["allowMassDelete"], steps=Steps(str(steps))
    )


def parse_flags(params: Mapping[str, str], body: bytes, names: tuple[str, ...]) -> dict[str, bool] | BadRequest:
    """Boolean options from the query string or a JSON object body (the query string wins); unknown ones are refused."""
    options = _options(params, body, set(names))
    return options if isinstance(options, BadRequest) else _flags(options, names)
