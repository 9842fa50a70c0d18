"""Emulator of the Key Vault secrets data plane (api-version 7.x) for what aks-apim-sync calls.

As Key Vault answers: a request without a token gets 401 with the `WWW-Authenticate: Bearer authorization=...,
resource=...` challenge that the SDK's challenge policy needs before it sends a token; every PUT of a secret
makes a new version; GET /secrets/{name} (or /{name}/) returns the latest; errors are {"error": {code, message}}.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from sandbox.httpbase import JsonServer, Request, Response
from sandbox.tls import TlsFiles

CHALLENGE = 'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"'


def kv_error(status: int, code: str, message: str, **headers: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}}, dict(headers))


class KeyVaultEmulator(JsonServer):
    def __init__(self, *, tls: TlsFiles, token: str) -> None:
        super().__init__(tls=tls, token=token, name="keyvault")
        self.secrets: dict[str, list[dict[str, Any]]] = {}
        self.route("PUT", r"/secrets/(?P<name>[A-Za-z0-9-]{1,127})", self._put)
        self.route("GET", r"/secrets/(?P<name>[A-Za-z0-9-]{1,127})/?(?P<version>[0-9a-f]*)", self._get)

    def unauthorized(self) -> Response:
        return kv_error(
            401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", **{"WWW-Authenticate": CHALLENGE}
        )

    def not_found(self, request: Request) -> Response:
        return kv_error(404, "NotFound", f"{request.path} is not a Key Vault secrets route")

    def reset(self) -> None:
        with self.lock:
            self.secrets.clear()
            self.faults.clear()
            self.log.clear()

    def put_certificate_version(self, name: str, pem: bytes, *, pkcs12: bytes | None = None) -> str:
        """A new version of a Key Vault certificate, as Key Vault keeps it in the secret of the same name: the
        private key, the certificate and its chain as PEM (application/x-pem-file), or, given `pkcs12`, that PFX
        base64 (application/x-pkcs12). Returns the version."""
        import base64

        value, content_type = (
            (base64.b64encode(pkcs12).decode(), "application/x-pkcs12") if pkcs12 else (pem.decode(), "application/x-pem-file")
        )
        stored = {"value": value, "contentType": content_type, "version": uuid.uuid4().hex, "created": int(time.time())}
        with self.lock:
            self.secrets.setdefault(name, []).append(stored)
        return str(stored["version"])

    def secret_value(self, url: str) -> tuple[str, str | None] | None:
        """(value, content type) of the version a secret URL of this vault names (the latest when versionless)."""
        prefix = f"{self.url}/secrets/"
        if not url.startswith(prefix):
            return None
        name, _, version = url[len(prefix) :].rstrip("/").partition("/")
        with self.lock:
            versions = self.secrets.get(name) or []
            found = (
                next((v for v in versions if v["version"] == version), None) if version else (versions[-1] if versions else None)
            )
            return (found["value"], found.get("contentType")) if found else None

    def latest(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            versions = self.secrets.get(name)
            return dict(versions[-1]) if versions else None

    def _shown(self, name: str, stored: dict[str, Any]) -> dict[str, Any]:
        return {
            "value": stored["value"],
            "contentType": stored.get("contentType"),
            "id": f"{self.url}/secrets/{name}/{stored['version']}",
            "attributes": {
                "enabled": True,
                "created": stored["created"],
                "updated": stored["created"],
                "recoveryLevel": "Recoverable+Purgeable",
            },
        }

    def _put(self, request: Request, match: re.Match[str]) -> Response:
        if not request.query.get("api-version"):
            return kv_error(400, "BadParameter", "The api-version query parameter is required.")
        body = request.json() or {}
        if not isinstance(body.get("value"), str):
            return kv_error(400, "BadParameter", "Property value is required.")
        stored = {
            "value": body["value"],
            "contentType": body.get("contentType"),
            "version": uuid.uuid4().hex,
            "created": int(time.time()),
        }
        self.secrets.setdefault(match["name"], []).append(stored)
        return Response(200, self._shown(match["name"], stored))

    def _get(self, request: Request, match: re.Match[str]) -> Response:
        versions = self.secrets.get(match["name"]) or []
        found = (
            next((v for v in versions if v["version"] == match["version"]), None)
            if match["version"]
            else (versions[-1] if versions else None)
        )
        if found is None:
            return kv_error(404, "SecretNotFound", f"A secret with (name/id) {match['name']} was not found in this key vault.")
        return Response(200, self._shown(match["name"], found))
