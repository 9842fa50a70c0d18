"""The emulators answer as Microsoft's and Kubernetes' published specs and examples say (tests/fixtures).

Driven by the real SDK clients where the project uses them, and by raw HTTP where the wire shape matters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.mgmt.apimanagement import ApiManagementClient
from azure.mgmt.apimanagement.models import NamedValueCreateContract
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from sandbox.world import RESOURCE_GROUP, SERVICE_NAME, SUBSCRIPTION_ID, World
from shared.adapters.credentials import SandboxCredential
from tests.conftest import service

FIXTURES = Path(__file__).parent.parent / "fixtures"


def example(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def arm(world: World, method: str, path: str, *, token: bool = True, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {world.token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    url = f"{world.apim.url}{world.apim.service_id}{path}"
    return requests.request(method, url, headers=headers, verify=str(world.tls.ca_cert), timeout=10, **kwargs)


def sdk(world: World) -> ApiManagementClient:
    credential = SandboxCredential(world.token, endpoint=world.apim.url)
    return ApiManagementClient(
        credential,
        SUBSCRIPTION_ID,
        base_url=world.apim.url,
        credential_scopes=[f"{world.apim.url}/.default"],
        connection_verify=str(world.tls.ca_cert),
        polling_interval=0,
    )


def kube(world: World) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(world.kubeconfig)))


V = {"api-version": "2024-05-01"}


def test_backend_get_has_the_shape_of_the_published_example(world: World) -> None:
    published = example("apim/ApiManagementGetBackend.json")["responses"]["200"]["body"]
    assert (
        arm(
            world, "PUT", "/backends/sfbackend", params=V, json={"properties": {"url": "http://x", "protocol": "http"}}
        ).status_code
        == 201
    )
    response = arm(world, "GET", "/backends/sfbackend", params=V)
    assert response.status_code == 200 and response.headers["ETag"]
    body = response.json()
    assert set(published) == set(body)
    assert body["id"].endswith("/providers/Microsoft.ApiManagement/service/apim-sandbox/backends/sfbackend")
    assert body["type"] == published["type"]


def test_a_backend_reads_back_as_sent_with_a_null_title_and_no_invented_defaults(world: World) -> None:
    # As recorded from real APIM (issue 14): `title: null`, no server-added `type` or `tls`.
    sent = {"url": "http://x", "protocol": "http", "description": "d"}
    arm(world, "PUT", "/backends/plain", params=V, json={"properties": sent})
    assert arm(world, "GET", "/backends/plain", params=V).json()["properties"] == {"title": None, **sent}


def test_deleting_a_backend_that_is_not_there_is_204(world: World) -> None:
    # As recorded from real APIM (issue 14); If-Match is still required.
    assert arm(world, "DELETE", "/backends/missing", params=V, headers={"If-Match": "*"}).status_code == 204
    assert arm(world, "DELETE", "/backends/missing", params=V).status_code == 400


def test_backend_list_has_the_shape_of_the_published_example_and_pages_with_next_link(world: World) -> None:
    published = example("apim/ApiManagementListBackends.json")["responses"]["200"]["body"]
    for i in range(250):
        world.apim.put_backend_directly(f"b{i:03}", {"url": "http://x", "protocol": "http"})
    first = arm(world, "GET", "/backends", params=V).json()
    assert set(published) <= set(first) and len(first["value"]) == 100 and "$skip=100" in first["nextLink"]
    names = [str(b.name) for b in sdk(world).backend.list_by_service(RESOURCE_GROUP, SERVICE_NAME)]
    assert len(names) == 250 and names == sorted(names)


def test_service_resource_has_the_address_fields_of_the_published_example(world: World) -> None:
    published = example("apim/ApiManagementServiceGetService.json")["responses"]["200"]["body"]
    body = arm(world, "GET", "", params=V).json()
    assert {"id", "name", "type", "location", "etag", "properties"} <= set(published) & set(body)
    assert {"publicIPAddresses", "privateIPAddresses", "provisioningState"} <= set(body["properties"])
    assert sdk(world).api_management_service.get(RESOURCE_GROUP, SERVICE_NAME).public_ip_addresses == ["20.0.0.1"]


def test_requests_without_a_bearer_token_get_401_with_an_arm_error(world: World) -> None:
    response = arm(world, "GET", "/backends", params=V, token=False)
    assert response.status_code == 401 and response.json()["error"]["code"] == "AuthenticationFailed"


def test_missing_api_version_is_an_arm_400(world: World) -> None:
    response = arm(world, "GET", "/backends")
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_backend_put_without_protocol_is_rejected_as_apim_does(world: World) -> None:
    response = arm(world, "PUT", "/backends/x", params=V, json={"properties": {"url": "http://x"}})
    assert response.status_code == 400 and response.json()["error"]["code"] == "ValidationError"


def test_stale_if_match_is_412_and_delete_needs_if_match(world: World) -> None:
    world.apim.put_backend_directly("x", {"url": "http://x", "protocol": "http"})
    body = {"properties": {"url": "http://y", "protocol": "http"}}
    stale = arm(world, "PUT", "/backends/x", params=V, json=body, headers={"If-Match": '"old"'})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "PreconditionFailed"
    assert arm(world, "DELETE", "/backends/x", params=V).status_code == 400


def test_named_value_put_is_long_running_and_the_sdk_polls_it_to_the_end(world: World) -> None:
    poller = sdk(world).named_value.begin_create_or_update(
        RESOURCE_GROUP,
        SERVICE_NAME,
        "aks-backend-token",
        NamedValueCreateContract(display_name="aks-backend-token", value="v", secret=True),
    )
    result = poller.result()
    assert result.display_name == "aks-backend-token" and result.value is None  # secrets are never returned
    statuses = [r.status for r in world.apim.log if "operationsStatuses" in r.path]
    assert statuses == [200, 200]
    # As recorded from real APIM: the first answer is 201 with only the provisioning state, and the polling headers.
    raw = arm(world, "PUT", "/namedValues/other", params=V, json={"properties": {"displayName": "other", "value": "v"}})
    assert raw.status_code == 201 and raw.json() == {"properties": {"ProvisioningState": "InProgress"}}
    assert {"Azure-AsyncOperation", "Location"} <= set(raw.headers)


def test_kubernetes_404_is_the_status_object_of_the_api_conventions(world: World) -> None:
    published = example("kubernetes/status-404-notfound.json")
    response = requests.get(
        f"{world.kube.url}/api/v1/namespaces/shop/services/grafana",
        headers={"Authorization": f"Bearer {world.token}"},
        verify=str(world.tls.ca_cert),
        timeout=10,
    )
    body = response.json()
    assert response.status_code == 404 and set(body) == set(published)
    assert {k: body[k] for k in ("kind", "apiVersion", "status", "reason", "code")} == {
        k: published[k] for k in ("kind", "apiVersion", "status", "reason", "code")
    }
    assert body["message"] == 'services "grafana" not found'


def test_kubernetes_list_pages_with_limit_and_continue(world: World) -> None:
    for i in range(7):
        world.kube.apply(service(f"s{i}"))
    page = kube(world).list_namespaced_service("shop", limit=3)
    assert len(page.items) == 3 and page.metadata._continue and page.metadata.remaining_item_count == 4
    rest = kube(world).list_namespaced_service("shop", limit=10, _continue=page.metadata._continue)
    assert [s.metadata.name for s in rest.items] == ["s3", "s4", "s5", "s6"] and not rest.metadata._continue


def test_kubernetes_update_with_a_stale_resource_version_is_409_conflict(world: World) -> None:
    world.kube.apply(service("orders"))
    api = kube(world)
    current = api.read_namespaced_service("orders", "shop")
    current.metadata.labels = {"team": "a"}
    api.replace_namespaced_service("orders", "shop", current)
    current.metadata.labels = {"team": "b"}
    with pytest.raises(ApiException) as caught:
        api.replace_namespaced_service("orders", "shop", current)
    assert caught.value.status == 409 and json.loads(caught.value.body or "{}")["reason"] == "Conflict"


def test_kubernetes_merge_patch_changes_only_what_it_names(world: World) -> None:
    world.kube.apply(service("orders", annotations={"keep": "me"}))
    kube(world).patch_namespaced_service("orders", "shop", {"metadata": {"annotations": {"added": "yes"}}})
    annotations = world.kube.get("Service", "shop", "orders")["metadata"]["annotations"]  # type: ignore[index]
    assert annotations["keep"] == "me" and annotations["added"] == "yes"


def test_kubernetes_watch_streams_changes_and_bookmarks(world: World) -> None:
    listed = kube(world).list_namespaced_service("shop")
    world.kube.apply(service("orders"))
    events = []
    for event in watch.Watch().stream(
        kube(world).list_namespaced_service,
        "shop",
        resource_version=listed.metadata.resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=2,
    ):
        events.append(event["type"])
        if "BOOKMARK" in events:
            break
    assert events[0] == "ADDED" and "BOOKMARK" in events


def test_kubernetes_watch_from_a_compacted_version_is_410_gone(world: World) -> None:
    world.kube.apply(service("orders"))
    old = world.kube.get("Service", "shop", "orders")["metadata"]["resourceVersion"]  # type: ignore[index]
    world.kube.compact()
    response = requests.get(
        f"{world.kube.url}/api/v1/namespaces/shop/services",
        params={"watch": "1", "resourceVersion": old},
        headers={"Authorization": f"Bearer {world.token}"},
        verify=str(world.tls.ca_cert),
        timeout=10,
    )
    event = json.loads(response.text.splitlines()[0])
    assert event["type"] == "ERROR" and event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


def _pfx() -> tuple[str, str]:
    import base64
    from datetime import UTC, datetime

    from shared.rotation import pki

    now = datetime.now(UTC)
    ca = pki.new_ca("test CA", now=now, days=30, kind=pki.KeyKind.EC_P256)
    client_material = pki.issue_client(ca, "apim-sandbox", now=now, days=7, kind=pki.KeyKind.EC_P256)
    data, password = pki.to_pfx(client_material, "c")
    return base64.b64encode(data).decode(), password


def test_certificate_upload_has_the_shape_of_the_published_example(world: World) -> None:
    published = example("apim/ApiManagementCreateCertificate.json")["responses"]["201"]["body"]
    data, password = _pfx()
    created = arm(world, "PUT", "/certificates/tempcert", params=V, json={"properties": {"data": data, "password": password}})
    assert created.status_code == 201 and set(created.json()) == set(published)
    assert set(created.json()["properties"]) == set(published["properties"])
    assert created.json()["properties"]["subject"] == "O=aks-apim-sync,CN=apim-sandbox"
    listed = example("apim/ApiManagementListCertificates.json")["responses"]["200"]["body"]
    assert set(listed) <= set(arm(world, "GET", "/certificates", params=V).json()) | {"nextLink"}


def test_certificate_with_a_wrong_password_is_rejected(world: World) -> None:
    data, _ = _pfx()
    answer = arm(world, "PUT", "/certificates/bad", params=V, json={"properties": {"data": data, "password": "wrong"}})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "ValidationError"


def test_key_vault_certificate_has_the_shape_of_the_published_example(world: World) -> None:
    published = example("apim/ApiManagementGetCertificateWithKeyVault.json")["responses"]["200"]["body"]
    secret = "https://vault.example.vault.azure.net/secrets/apim-client"
    body = {"properties": {"keyVault": {"secretIdentifier": secret, "identityClientId": None}}}
    assert arm(world, "PUT", "/certificates/kv", params=V, json=body).status_code == 201
    shown = arm(world, "GET", "/certificates/kv", params=V).json()
    assert set(shown["properties"]) == set(published["properties"])
    assert set(shown["properties"]["keyVault"]) == set(published["properties"]["keyVault"])


def test_certificate_referenced_by_a_backend_cannot_be_deleted(world: World) -> None:
    data, password = _pfx()
    arm(world, "PUT", "/certificates/used", params=V, json={"properties": {"data": data, "password": password}})
    reference = f"{world.apim.service_id}/certificates/used"
    backend = {"properties": {"url": "https://x", "protocol": "http", "credentials": {"certificateIds": [reference]}}}
    assert arm(world, "PUT", "/backends/b", params=V, json=backend).status_code == 201
    assert arm(world, "DELETE", "/certificates/used", params=V, headers={"If-Match": "*"}).status_code == 409
    missing = {"properties": {"url": "https://x", "protocol": "http", "credentials": {"certificateIds": [reference + "2"]}}}
    assert arm(world, "PUT", "/backends/c", params=V, json=missing).status_code == 400


def test_an_api_put_without_an_import_answers_at_once_and_the_api_is_readable(world: World) -> None:
    # As recorded from real APIM (issue 14): no Azure-AsyncOperation, readable at once; the body as published.
    published = example("apim/ApiManagementCreateApi.json")["responses"]["201"]
    body = {"properties": {"displayName": "Orders", "path": "orders", "protocols": ["https"]}}
    created = arm(world, "PUT", "/apis/orders", params=V, json=body)
    assert created.status_code == 201 and "Azure-AsyncOperation" not in created.headers
    shown = created.json()
    assert set(shown) == set(published["body"]) and shown["type"] == published["body"]["type"]
    assert {"displayName", "apiRevision", "path", "protocols", "isCurrent"} <= set(shown["properties"])
    assert arm(world, "GET", "/apis/orders", params=V).status_code == 200


def test_an_api_put_as_the_published_example_shows_it_is_long_running_and_the_sdk_polls_it(world: World) -> None:
    world.apim.api_side.async_api_puts = True
    published = example("apim/ApiManagementCreateApi.json")["responses"]["201"]
    body = {"properties": {"displayName": "Orders", "path": "orders", "protocols": ["https"]}}
    created = arm(world, "PUT", "/apis/orders", params=V, json=body)
    assert created.status_code == 201 and "/tenant/operationResults/" in created.headers["Azure-AsyncOperation"]
    assert set(published["headers"]) <= {h.lower() for h in created.headers} | {"Azure-AsyncOperation"}
    sales: Any = {"properties": {"displayName": "Sales", "path": "sales", "protocols": ["https"]}}
    poller = sdk(world).api.begin_create_or_update(RESOURCE_GROUP, SERVICE_NAME, "sales", sales, polling_interval=0)
    assert poller.result().path == "sales" and poller.status() == "Succeeded" and "sales" in world.apim.api_side.apis


def test_an_api_delete_is_long_running_under_tenant_operation_results_and_the_api_goes_when_it_succeeds(
    world: World,
) -> None:
    # As recorded from real APIM (issue 14): 202, Azure-AsyncOperation .../tenant/operationResults/..., Location.
    arm(world, "PUT", "/apis/orders", params=V, json={"properties": {"displayName": "Orders", "path": "orders"}})
    deleting = arm(world, "DELETE", "/apis/orders", params=V, headers={"If-Match": "*"})
    assert deleting.status_code == 202 and "/tenant/operationResults/" in deleting.headers["Azure-AsyncOperation"]
    assert "Location" in deleting.headers
    poller = sdk(world).api.begin_delete(RESOURCE_GROUP, SERVICE_NAME, "orders", "*", polling_interval=0)
    poller.result()
    assert "orders" not in world.apim.api_side.apis


def test_operation_and_policy_have_the_shape_of_the_published_examples(world: World) -> None:
    world.apim.api_side.apis["petstore"] = world.apim.api_side._entity(
        "apis", "apis/petstore", "petstore", {"path": "pets", "displayName": "Pets"}
    )
    operation = example("apim/ApiManagementCreateApiOperation.json")
    answer = arm(world, "PUT", "/apis/petstore/operations/newoperations", params=V, json=operation["parameters"]["parameters"])
    assert answer.status_code == 201
    published = operation["responses"]["201"]["body"]
    assert set(answer.json()) == set(published) and answer.json()["properties"] == {"policies": None, **published["properties"]}
    bare = {"properties": {"displayName": "x", "method": "GET", "urlTemplate": "/pets"}}
    shown = arm(world, "PUT", "/apis/petstore/operations/bare", params=V, json=bare).json()["properties"]
    assert shown["templateParameters"] == [] and shown["policies"] is None  # real bodies' defaults
    unparameterised = {"properties": {"displayName": "x", "method": "GET", "urlTemplate": "/pets/{id}"}}
    assert arm(world, "PUT", "/apis/petstore/operations/x", params=V, json=unparameterised).status_code == 400
    policy = example("apim/ApiManagementCreateApiPolicy.json")
    stored = arm(world, "PUT", "/apis/petstore/policies/policy", params=V, json=policy["parameters"]["parameters"])
    assert stored.status_code == 201 and set(stored.json()) == set(policy["responses"]["201"]["body"])
    broken = {"properties": {"format": "rawxml", "value": "<policies><inbound>"}}
    assert arm(world, "PUT", "/apis/petstore/policies/policy", params=V, json=broken).status_code == 400


def test_a_backend_put_with_if_none_match_star_is_412_when_the_backend_exists(world: World) -> None:
    # RFC 9110 13.1.2. That APIM honours If-None-Match on backends is assumed here, not verified against
    # Azure; the app re-reads and decides again on the 412, and would refuse a foreign backend either way.
    body = {"properties": {"url": "http://x", "protocol": "http"}}
    assert arm(world, "PUT", "/backends/b1", params=V, json=body, headers={"If-None-Match": "*"}).status_code == 201
    again = arm(world, "PUT", "/backends/b1", params=V, json=body, headers={"If-None-Match": "*"})
    assert again.status_code == 412 and again.json()["error"]["code"] == "PreconditionFailed"


def test_a_policy_etag_follows_its_content_and_a_stale_if_match_is_412(world: World) -> None:
    world.apim.api_side.apis["a"] = world.apim.api_side._entity("apis", "apis/a", "a", {"path": "a", "displayName": "a"})
    policy = "<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound></policies>"
    body = {"properties": {"format": "rawxml", "value": policy}}
    assert arm(world, "PUT", "/apis/a/policies/policy", params=V, json=body).status_code == 201
    first = arm(world, "GET", "/apis/a/policies/policy", params={**V, "format": "rawxml"}).headers["ETag"]
    changed = {"properties": {"format": "rawxml", "value": policy.replace("<outbound>", "<outbound><cache-store />")}}
    assert arm(world, "PUT", "/apis/a/policies/policy", params=V, json=changed, headers={"If-Match": first}).status_code == 200
    second = arm(world, "GET", "/apis/a/policies/policy", params={**V, "format": "rawxml"}).headers["ETag"]
    assert second != first
    stale = arm(world, "PUT", "/apis/a/policies/policy", params=V, json=body, headers={"If-Match": first})
    assert stale.status_code == 412


def test_a_policy_is_stored_as_apim_keeps_it_rawxml_expressions_and_reserialised(world: World) -> None:
    # rawxml takes policy expressions unescaped (Microsoft's policy-expressions docs); format xml needs them
    # escaped; APIM hands a policy back re-serialised, one element a line, so a client must not compare text.
    world.apim.api_side.apis["a"] = world.apim.api_side._entity("apis", "apis/a", "a", {"path": "a", "displayName": "a"})
    expression = '@(context.Variables.GetValueOrDefault<string>("x"))'
    raw = f'<policies><inbound><set-variable name="v" value="{expression}" /></inbound></policies>'

    def put(policy_format: str) -> int:
        body = {"properties": {"format": policy_format, "value": raw}}
        return arm(world, "PUT", "/apis/a/policies/policy", params=V, json=body).status_code

    assert put("rawxml") == 201
    assert put("xml") == 400
    held = arm(world, "GET", "/apis/a/policies/policy", params={**V, "format": "rawxml"}).json()["properties"]["value"]
    assert held.splitlines()[0] == "<policies>" and "\r\n\t<inbound>" in held
    assert 'GetValueOrDefault<string>("x")' in held


def test_the_api_list_takes_apims_odata_filter_and_refuses_what_it_does_not_know(world: World) -> None:
    # Microsoft's "Api - List By Service" documents $filter on name, path and description with eq, startswith,
    # endswith and contains; an unknown clause is a 400.
    side = world.apim.api_side
    for name, path in (("a", "shop"), ("b", "shop/admin"), ("c", "shopping")):
        side.apis[name] = side._entity("apis", f"apis/{name}", name, {"path": path, "description": f"namespace={name}"})
    kept = arm(world, "GET", "/apis", params={**V, "$filter": "path eq 'shop' or startswith(path,'shop/')"})
    assert sorted(a["name"] for a in kept.json()["value"]) == ["a", "b"]
    by_mark = arm(world, "GET", "/apis", params={**V, "$filter": "endswith(description,'namespace=c')"})
    assert [a["name"] for a in by_mark.json()["value"]] == ["c"]
    assert arm(world, "GET", "/apis", params={**V, "$filter": "sizeof(path) gt 3"}).status_code == 400
