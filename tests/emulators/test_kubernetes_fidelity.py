"""The Kubernetes emulator answers as a real API server does, each behaviour against its source: the API
conventions and API concepts pages (kubernetes.io, kubernetes/community), apimachinery's validation, and the
OpenAPI documents in sandbox/openapi. Driven by the official Python client, as the app drives it."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from sandbox.world import World
from shared import sync
from shared.adapters import kube as kube_adapter
from shared.core.scope import Scope
from tests.conftest import service


def core(world: World) -> Any:
    """The client, untyped here: these tests send dictionaries, as the app does."""
    return client.CoreV1Api(config.new_client_from_config(config_file=str(world.kubeconfig)))


def configmap(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}, "data": {}}


def status_of(raised: pytest.ExceptionInfo[ApiException]) -> tuple[int, str]:
    import json

    body = json.loads(str(raised.value.body))
    return raised.value.status, body["reason"]


def test_creating_in_a_namespace_that_does_not_exist_is_404_namespace_not_found(world: World) -> None:
    with pytest.raises(ApiException) as raised:
        core(world).create_namespaced_config_map("nowhere", configmap("x"))
    assert status_of(raised) == (404, "NotFound") and 'namespaces \\"nowhere\\" not found' in str(raised.value.body)
    core(world).create_namespace({"metadata": {"name": "nowhere"}})
    assert core(world).create_namespaced_config_map("nowhere", configmap("x")).metadata.name == "x"


def test_deleting_a_namespace_deletes_what_it_holds(world: World) -> None:
    core(world).create_namespace({"metadata": {"name": "team"}})
    core(world).create_namespaced_config_map("team", configmap("x"))
    core(world).delete_namespace("team")
    assert world.kube.get("ConfigMap", "team", "x") is None
    with pytest.raises(ApiException) as raised:
        core(world).read_namespace("team")
    assert raised.value.status == 404


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("ConfigMap", configmap("Not_A_Name"), "metadata.name"),
        ("Service", {"metadata": {"name": "9starts-with-digit"}, "spec": {"ports": [{"port": 80}]}}, "metadata.name"),
        (
            "Service",
            {"metadata": {"name": "lb"}, "spec": {"ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/8", "nope"]}},
            "spec.loadBalancerSourceRanges[1]",
        ),
        ("ConfigMap", {"metadata": {"name": "big", "annotations": {"a": "x" * (256 * 1024)}}}, "metadata.annotations"),
    ],
)
def test_invalid_objects_are_422_invalid_with_the_field_in_the_causes(
    world: World, kind: str, body: dict[str, Any], field: str
) -> None:
    create = core(world).create_namespaced_config_map if kind == "ConfigMap" else core(world).create_namespaced_service
    with pytest.raises(ApiException) as raised:
        create("default", body)
    import json

    answer = json.loads(str(raised.value.body))
    assert raised.value.status == 422 and answer["reason"] == "Invalid"
    assert field in [cause["field"] for cause in answer["details"]["causes"]]


def test_an_ingress_path_without_path_type_is_422(world: World) -> None:
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "rules": [
                {
                    "host": "a.example",
                    "http": {"paths": [{"path": "/", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]},
                }
            ]
        },
    }
    import requests  # the Python client refuses this body itself; kubectl and other clients send it

    answer = requests.post(
        f"{world.kube.url}/apis/networking.k8s.io/v1/namespaces/default/ingresses",
        json=body,
        headers={"Authorization": f"Bearer {world.token}"},
        verify=str(world.tls.ca_cert),
        timeout=10,
    )
    assert answer.status_code == 422
    assert [c["field"] for c in answer.json()["details"]["causes"]] == ["spec.rules[0].http.paths[0].pathType"]


def test_an_expired_continue_token_is_410_and_a_made_up_one_is_400(world: World) -> None:
    api = core(world)
    for i in range(3):
        world.kube.apply({**configmap(f"c{i}"), "metadata": {"name": f"c{i}", "namespace": "default"}})
    first = api.list_namespaced_config_map("default", limit=1)
    world.kube.compact()
    with pytest.raises(ApiException) as raised:
        api.list_namespaced_config_map("default", limit=1, _continue=first.metadata._continue)
    assert status_of(raised) == (410, "Expired")
    with pytest.raises(ApiException) as raised:
        api.list_namespaced_config_map("default", limit=1, _continue="not-a-token")
    assert status_of(raised) == (400, "BadRequest")


def test_label_selectors_take_inequality_and_set_based_terms_and_field_selectors_the_common_fields(world: World) -> None:
    for name, labels in (("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "api", "env": "dev"}), ("c", {"env": "prod"})):
        world.kube.apply({**configmap(name, labels), "metadata": {"name": name, "namespace": "default", "labels": labels}})

    def names(**selectors: str) -> list[str]:
        return [str(c.metadata.name) for c in core(world).list_namespaced_config_map("default", **selectors).items]

    assert names(label_selector="tier!=web") == ["b", "c"]
    assert names(label_selector="tier in (web, api),env=prod") == ["a"]
    assert names(label_selector="tier notin (web)") == ["b", "c"]
    assert names(label_selector="!tier") == ["c"]
    assert names(field_selector="metadata.name!=a") == ["b", "c"]
    with pytest.raises(ApiException) as raised:
        names(field_selector="spec.type=LoadBalancer")
    assert status_of(raised) == (400, "BadRequest") and "field label not supported" in str(raised.value.body)


def test_a_watch_without_a_resource_version_starts_with_the_current_state_as_added_events(world: World) -> None:
    world.kube.apply(service("orders"))
    events = list(watch.Watch().stream(core(world).list_namespaced_service, "shop", timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "orders")]


def test_an_update_without_a_resource_version_is_unconditional(world: World) -> None:
    world.kube.apply(service("orders"))
    current = core(world).read_namespaced_service("orders", "shop").to_dict()
    current["metadata"]["resource_version"] = None
    current["metadata"]["annotations"] = {"changed": "yes"}
    updated = core(world).replace_namespaced_service("orders", "shop", current)
    assert updated.metadata.annotations == {"changed": "yes"}


def test_delete_collection_deletes_what_the_selector_picks(world: World) -> None:
    for name, labels in (("a", {"app": "x"}), ("b", {"app": "y"})):
        world.kube.apply({**configmap(name), "metadata": {"name": name, "namespace": "default", "labels": labels}})
    core(world).delete_collection_namespaced_config_map("default", label_selector="app=x")
    assert world.kube.get("ConfigMap", "default", "a") is None and world.kube.get("ConfigMap", "default", "b") is not None


def test_strategic_merge_merges_ports_by_port_and_replaces_other_lists(world: World) -> None:
    world.kube.apply(service("orders", ports=[{"name": "http", "port": 80}, {"name": "https", "port": 443}]))
    patch = {"spec": {"ports": [{"port": 443, "name": "tls"}], "loadBalancerSourceRanges": ["10.0.0.0/8"]}}
    patched = core(world).patch_namespaced_service("orders", "shop", patch)  # the client's default: strategic merge
    assert [(p.port, p.name) for p in patched.spec.ports] == [(80, "http"), (443, "tls")]
    again = core(world).patch_namespaced_service("orders", "shop", {"spec": {"loadBalancerSourceRanges": ["10.1.0.0/16"]}})
    assert again.spec.load_balancer_source_ranges == ["10.1.0.0/16"]


def test_the_app_lists_again_from_the_start_when_its_continue_token_expires(
    world: World, make_deps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_adapter, "PAGE_SIZE", 2)
    for i in range(5):
        world.kube.apply(service(f"svc-{i}"))
    world.kube.compact_after_next_page = True
    report = sync.run(Scope("aks-sandbox"), make_deps(ALLOWLIST_ENABLED="false"))
    assert not report.failed, report.to_text()
    assert len(world.apim.backends) == 5
    expired = [r for r in world.kube.log if r.status == 410]
    assert len(expired) == 1, "the expired page was answered 410, then the list started again"


def create_custom(world: World, path: str, body: dict[str, Any]) -> Any:
    import requests

    return requests.post(
        f"{world.kube.url}/apis/{path}",
        json=body,
        headers={"Authorization": f"Bearer {world.token}"},
        verify=str(world.tls.ca_cert),
        timeout=10,
    )


def test_gateway_api_objects_are_validated_against_their_crd_schema(world: World) -> None:
    def create(body: dict[str, Any]) -> Any:
        return create_custom(world, "gateway.networking.k8s.io/v1/namespaces/default/httproutes", body)

    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]},
    }
    assert create(route).status_code == 201
    broken = {**route, "metadata": {"name": "broken"}, "spec": {"rules": [{"matches": [{"path": {"type": "Regexy"}}]}]}}
    answer = create(broken)
    assert answer.status_code == 422 and answer.json()["reason"] == "Invalid"
    assert [c["field"] for c in answer.json()["details"]["causes"]] == ["spec.rules[0].matches[0].path.type"]


def test_istio_authorization_policies_are_validated_against_their_crd_schema(world: World) -> None:
    def create(name: str, spec: dict[str, Any]) -> Any:
        body = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": name}, "spec": spec}
        return create_custom(world, "security.istio.io/v1/namespaces/default/authorizationpolicies", body)

    allow = {"action": "ALLOW", "rules": [{"from": [{"source": {"remoteIpBlocks": ["20.0.0.1/32"]}}]}]}
    assert create("apim-only", allow).status_code == 201
    answer = create("permit", {**allow, "action": "PERMIT"})
    assert answer.status_code == 422
    assert [c["field"] for c in answer.json()["details"]["causes"]] == ["spec.action"]
