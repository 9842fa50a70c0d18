"""The rotation lock through the Functions host's identity-based storage settings (no shared key): Azurite with
OAuth on serves https and takes only Entra-style bearer tokens, as a storage account with shared keys off does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.tools import Azurite, find_azurite, start_azurite
from sandbox.world import World
from shared.core import settings
from shared.core.errors import InvalidSettings
from shared.rotation.report import RotationReport
from tests.conftest import require_tool
from tests.rotation.support import Clock, rotate, steps


@pytest.fixture(scope="module")
def azurite_with_oauth(session_world: World) -> Iterator[Azurite]:
    tls = session_world.tls
    server = start_azurite(require_tool(find_azurite(), "Azurite (npm azurite)"), oauth_tls=(tls.server_cert, tls.server_key))
    yield server
    server.stop()


def test_rotation_takes_its_lock_with_the_apps_identity_and_no_connection_string(
    world: World, make_deps: Any, azurite_with_oauth: Azurite
) -> None:
    from tests.conftest import ingress, service

    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("orders", "shop", "orders.example.com", "orders"))
    deps = make_deps(
        **{
            "AzureWebJobsStorage__blobServiceUri": azurite_with_oauth.blob_service_uri,
            "AzureWebJobsStorage__credential": "managedidentity",
        }
    )
    assert deps.settings.mtls.storage_connection is None

    report: RotationReport = rotate(deps, Clock())

    assert steps(report)[:3] == ["CreateCa", "TrustCas", "IssueCertificate"]


def test_azurite_with_oauth_refuses_a_client_without_a_token(azurite_with_oauth: Azurite, session_world: World) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import ContainerClient

    anonymous = ContainerClient(
        azurite_with_oauth.blob_service_uri, "aks-apim-sync-locks", connection_verify=str(session_world.tls.ca_cert)
    )
    with pytest.raises(HttpResponseError) as refused:
        anonymous.create_container()
    assert refused.value.status_code in (401, 403)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"AzureWebJobsStorage__accountName": "stappsync01"}, "https://stappsync01.blob.core.windows.net"),
        ({"AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net/"}, "https://st.blob.core.windows.net"),
    ],
)
def test_the_hosts_identity_based_storage_settings_name_the_blob_service(
    world: World, environ: dict[str, str], expected: str
) -> None:
    loaded = settings.load_settings({**world.settings(), "SANDBOX_TOKEN": "", **environ})
    assert loaded.mtls.storage_blob_uri == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AzureWebJobsStorage__credential", "connectionstring"),
        ("AzureWebJobsStorage__blobServiceUri", "http://st.blob.core.windows.net"),
        ("AzureWebJobsStorage__accountName", "Not_A_Name"),
    ],
)
def test_wrong_identity_based_storage_settings_are_named(world: World, name: str, value: str) -> None:
    with pytest.raises(InvalidSettings) as invalid:
        settings.load_settings({**world.settings(), name: value})
    assert name in [n for n, _ in invalid.value.problems]
