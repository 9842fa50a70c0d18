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
def rotation_deps(world: World, azurite: Azurite, make_deps: Any) -> Dependencies:
    """Two ingress-mode Services with their Ingresses and backends, one public one, and the lock in Azurite."""
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("orders", "shop", "orders.example.com", "orders"))
    world.kube.apply(service("payments", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("payments", "shop", "payments.example.com", "payments"))
    world.kube.apply(service("public-one"))
    deps: Dependencies = make_deps(
        AzureWebJobsStorage=azurite.connection_string, TRUST_PROPAGATION_SECONDS="60", CERT_GRACE_SECONDS="3600"
    )
    sync.run(Scope("aks-sandbox"), deps)
    return deps
