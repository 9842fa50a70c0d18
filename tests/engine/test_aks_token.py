"""In Azure the Kubernetes source uses the API server URL, its CA and an Entra token, refreshed before expiry."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken

from sandbox.world import World
from shared.adapters.credentials import RefreshingToken
from shared.adapters.kube import KubeSource, api_client_for
from shared.core.scope import Scope
from shared.core.settings import AKS_SERVER_SCOPE
from shared.runtime.counters import RequestCounter
from tests.conftest import service, settings_for


class ShortLivedTokens:
    """Stands in for azure-identity: hands out the emulator's token, each valid for `lifetime` seconds."""

    def __init__(self, token: str, lifetime: int) -> None:
        self.token, self.lifetime = token, lifetime
        self.scopes_asked: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes_asked.append(scopes)
        return AccessToken(self.token, int(time.time()) + self.lifetime)


def aks_source(world: World, credential: ShortLivedTokens) -> KubeSource:
    settings = settings_for(world, KUBECONFIG="", AKS_API_SERVER=world.kube.url, AKS_CA_CERT=world.tls.ca_cert.read_text())
    return KubeSource(api_client_for(settings.kube, RefreshingToken(credential)), settings.kube, counter=RequestCounter())


def test_reads_services_with_an_entra_token_for_the_aks_server_application(world: World) -> None:
    world.kube.apply(service("orders"))
    credential = ShortLivedTokens(world.token, lifetime=3600)
    source = aks_source(world, credential)
    assert [s.name for s in source.list_services(Scope("aks-sandbox"))] == ["orders"]
    source.list_services(Scope("aks-sandbox"))
    assert credential.scopes_asked == [(AKS_SERVER_SCOPE,)]


def test_token_is_fetched_again_when_it_is_about_to_expire(world: World) -> None:
    credential = ShortLivedTokens(world.token, lifetime=60)
    source = aks_source(world, credential)
    source.list_services(Scope("aks-sandbox"))
    source.list_services(Scope("aks-sandbox"))
    assert len(credential.scopes_asked) == 2
