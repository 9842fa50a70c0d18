"""Shared fixtures: one sandbox world per test session, reset before every test that uses it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.tools import Azurite, find_azurite, start_azurite
from sandbox.world import World, start_world
from shared import deps
from shared.core import settings
from shared.runtime.ports import Dependencies


@pytest.fixture(scope="session")
def session_world() -> Iterator[World]:
    world = start_world()
    yield world
    world.stop()


@pytest.fixture
def world(session_world: World) -> World:
    session_world.reset()
    deps.reset()
    return session_world


class RecordedSleeps(list[float]):
    """Stands in for time.sleep: remembers each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


def settings_for(world: World, **overrides: str) -> settings.Settings:
    return settings.load_settings({**world.settings(), **overrides})


@pytest.fixture
def make_deps(world: World, sleeps: RecordedSleeps) -> Any:
    def build(**overrides: str) -> Dependencies:
        return deps.build_dependencies(settings_for(world, **overrides), sleep=sleeps)

    return build


def service(
    name: str,
    namespace: str = "shop",
    *,
    mode: str | None = "public",
    annotations: dict[str, str] | None = None,
    lb_ip: str | None = "52.0.0.10",
    ports: list[dict[str, Any]] | None = None,
    internal: bool = False,
    expose: bool = True,
) -> dict[str, Any]:
    """A Service manifest as a platform engineer would write it."""
    wanted: dict[str, str] = {}
    if expose:
        wanted["apim-sync.io/expose"] = "true"
    if mode:
        wanted["apim-sync.io/mode"] = mode
    if internal:
        wanted["service.beta.kubernetes.io/azure-load-balancer-internal"] = "true"
    wanted.update(annotations or {})
    manifest: dict[str, Any] = {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "annotations": wanted},
        "spec": {"type": "LoadBalancer", "ports": ports or [{"name": "http", "port": 80}]},
    }
    manifest["status"] = {"loadBalancer": {"ingress": [{"ip": lb_ip}]} if lb_ip else {}}
    return manifest


def ingress(name: str, namespace: str, host: str, service_name: str, *, path: str = "/", tls: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": path,
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service_name, "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ],
    }
    if tls:
        spec["tls"] = [{"hosts": [host], "secretName": f"{name}-tls"}]
    return {
        "kind": "Ingress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def require_tool(path: str | None, name: str) -> str:
    """The tool's path; without it the test is skipped, except under CI=true, where a missing tool fails."""
    if path is None:
        message = f"{name} is not installed (run `make tools`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite(require_tool(find_azurite(), "Azurite (npm azurite)"))
    yield server
    server.stop()
