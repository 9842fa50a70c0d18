"""Credentials for ARM and the AKS API server.

In Azure: azure-identity's DefaultAzureCredential (managed identity in a Function app). In the sandbox: a
static token that refuses to work unless the endpoint is loopback, so it can never be pointed at Azure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

from shared.core.settings import AKS_SERVER_SCOPE, is_loopback_url

REFRESH_MARGIN_SECONDS = 300


class SandboxCredential:
    def __init__(self, token: str, *, endpoint: str) -> None:
        if not is_loopback_url(endpoint):
            raise ValueError("the sandbox credential works only against a loopback endpoint")
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        expires = int(time.time()) + 3600
        if any(scope.startswith(STORAGE_SCOPE_PREFIX) for scope in scopes):
            return AccessToken(_storage_token(self._token, expires), expires)
        return AccessToken(self._token, expires)


STORAGE_SCOPE_PREFIX = "https://storage.azure.com"


def _storage_token(subject: str, expires: int) -> str:
    """Azurite with OAuth (basic) reads a bearer token as Entra ID issues it for storage, a JWT with an
    issuer, audience and lifetime, but does not check the signature: this one is unsigned, for loopback only."""
    import base64
    import hashlib
    import json

    def part(document: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": expires,
        "oid": hashlib.sha256(subject.encode()).hexdigest()[:32],
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class RefreshingToken:
    """A bearer token for one scope, fetched again shortly before it expires; thread-safe."""

    def __init__(self, credential: TokenCredential, scope: str = AKS_SERVER_SCOPE) -> None:
        self._credential, self._scope = credential, scope
        self._lock = threading.Lock()
        self._token: AccessToken | None = None

    def value(self) -> str:
        with self._lock:
            if self._token is None or self._token.expires_on - REFRESH_MARGIN_SECONDS < time.time():
                self._token = self._credential.get_token(self._scope)
            return self._token.token


def azure_credential() -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def managed_identity(client_id: str) -> TokenCredential:
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id)
