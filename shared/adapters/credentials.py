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
        return AccessToken(self._token, int(time.time()) + 3600)


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
