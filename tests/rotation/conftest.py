"""Fixtures of the rotation tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.keyvault import KeyVaultEmulator
from sandbox.tools import Azurite
from sandbox.world import World
from shared import sync
from shared.core.scope import Scope
from shared.runtime.ports import Dependencies
from tests.conftest import ingress, service
from tests.gateway.test_httproute_discovery import gateway, httproute
from tests.rotation.support import Clock


@pytest.fixture(scope="session")
def key_vault(session_world: World) -> Iterator[KeyVaultEmulator]:
    server = KeyVaultEmulator(tls=session_world.tls, token=session_world.token).start()
    assert isinstance(server, KeyVaultEmulator)
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rotation_deps(world: World, azurite: Azurite, make_deps: Any, request: pytest.FixtureRequest) -> Dependencies:
    """Two ingress-mode Services with their backends, one public one, and the lock in Azurite. The two are routed
    through Ingresses (ingress-nginx) or, parametrised with "HTTPRoute", through HTTPRoutes on one Gateway."""
    front = getattr(request, "param", "Ingress")
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(service("payments", mode="ingress", lb_ip=None))
    if front == "Ingress":
        world.kube.apply(ingress("orders", "shop", "orders.example.com", "orders"))
        world.kube.apply(ingress("payments", "shop", "payments.example.com", "payments"))
    else:
        world.kube.apply(gateway())
        world.kube.apply(httproute("orders", service_name="orders", host="orders.contoso.example"))
        world.kube.apply(httproute("payments", service_name="payments", host="payments.contoso.example"))
    world.kube.apply(service("public-one"))
    deps: Dependencies = make_deps(
        AzureWebJobsStorage=azurite.connection_string,
        TRUST_PROPAGATION_SECONDS="60",
        CERT_GRACE_SECONDS="3600",
        ROUTE_KINDS=front,
    )
    sync.run(Scope("aks-sandbox"), deps)
    return deps


@pytest.fixture
def front(request: pytest.FixtureRequest) -> str:
    """The front rotation_deps was parametrised with."""
    callspec = getattr(request.node, "callspec", None)
    return str(callspec.params.get("rotation_deps", "Ingress")) if callspec else "Ingress"
