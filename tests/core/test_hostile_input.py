"""Input that used to end a whole run now ends only in a report naming its object and field (issue 12's
crash cases): each parse of untrusted input yields a value or a problem, never an exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.world import World
from shared import sync
from shared.adapters.kube import service_view
from shared.apis.claims import parse_operations
from shared.backends.discovery import Invalid, backend_for
from shared.core.annotations import AnnotationContext
from shared.core.errors import InvalidSettings
from shared.core.model import Mode, OwnerId
from shared.core.scope import BadRequest, Scope, parse_resync_request
from shared.core.settings import load_settings
from tests.conftest import service

CONTEXT = AnnotationContext(cluster="c", owner=OwnerId("o"), prefix="apim-sync.io", default_mode=Mode.PUBLIC)
ANNOTATIONS = ["expose", "mode", "reconcile-policy", "backend-id", "port", "protocol", "path", "url", "title"]


@pytest.mark.parametrize("port", ["²", "٣", "9" * 5000, "0", "65536", "-1", "８０"])
def test_a_strange_port_is_an_invalid_annotation_not_a_crash(port: str) -> None:
    outcome = backend_for(service_view(service("orders", annotations={"apim-sync.io/port": port})), [], CONTEXT)
    assert isinstance(outcome, Invalid) and outcome.field == "apim-sync.io/port"


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(ANNOTATIONS), value=st.text(max_size=300) | st.text(alphabet='0123456789²٣ \r\n<>"', max_size=6000))
def test_any_annotation_value_gives_an_outcome(key: str, value: str) -> None:
    manifest = service("orders", annotations={f"apim-sync.io/{key}": value})
    backend_for(service_view(manifest), [], CONTEXT)  # returns; never raises


@pytest.mark.parametrize("path", ["/a<b", '/a"b', "/a b", "/v1?x=1", "/a\r\nb"])
def test_a_base_path_with_characters_that_do_not_belong_in_a_url_is_refused(path: str) -> None:
    outcome = backend_for(service_view(service("orders", annotations={"apim-sync.io/path": path})), [], CONTEXT)
    assert isinstance(outcome, Invalid) and outcome.field == "apim-sync.io/path"


@pytest.mark.parametrize("operations", ['GET /a"<b>', "GET /x{y", "GET /{a", "POST /ok/</script>"])
def test_an_operation_whose_template_is_not_a_url_template_is_refused(operations: str) -> None:
    with pytest.raises(ValueError, match="URL template"):
        parse_operations(operations)


def test_a_deeply_nested_request_body_is_a_bad_request() -> None:
    body = ("[" * 100_000 + "]" * 100_000).encode()
    assert isinstance(parse_resync_request({}, body, cluster="c"), BadRequest)
    nested = ('{"a":' * 50_000 + "1" + "}" * 50_000).encode()
    assert isinstance(parse_resync_request({}, nested, cluster="c"), BadRequest)


@pytest.mark.parametrize("document", ["[" * 50_000 + "]" * 50_000, "a:\n" + "".join(f"{'  ' * i}- \n" for i in range(1500))])
def test_a_deeply_nested_openapi_document_is_reported_and_the_run_completes(world: World, make_deps: Any, document: str) -> None:
    world.set_tenancy_policy({"default": {"maxOpenApiBytes": 4 * 1024 * 1024}})
    world.kube.apply({"kind": "ConfigMap", "metadata": {"name": "spec", "namespace": "shop"}, "data": {"openapi": document}})
    https = [{"name": "https", "port": 443}]
    world.kube.apply(
        service("deep", annotations={"apim-sync.io/api-id": "deep", "apim-sync.io/openapi": "spec/openapi"}, ports=https)
    )
    world.kube.apply(service("fine", annotations={"apim-sync.io/api-id": "fine"}, ports=https))
    report = sync.run(Scope("aks-sandbox"), make_deps(ALLOWLIST_ENABLED="false"))
    assert "fine" in world.apim.api_side.apis and "deep" not in world.apim.api_side.apis
    problems = report.to_json()["apis"]["problems"]
    assert [(p["object"], p["reason"]) for p in problems] == [("shop/deep", "InvalidOpenApi")]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"TRUST_PROPAGATION_SECONDS": "nan"}, "TRUST_PROPAGATION_SECONDS"),
        ({"TRUST_PROPAGATION_SECONDS": "inf"}, "TRUST_PROPAGATION_SECONDS"),
        ({"TRUST_PROPAGATION_SECONDS": "-5"}, "TRUST_PROPAGATION_SECONDS"),
        ({"MAX_RETRY_WAIT_SECONDS": "-1"}, "MAX_RETRY_WAIT_SECONDS"),
        ({"CERT_GRACE_SECONDS": "nan"}, "CERT_GRACE_SECONDS"),
        ({"CERT_VALIDITY_DAYS": "800"}, "CERT_VALIDITY_DAYS"),
        ({"KUBECONFIG": "/nonexistent/kubeconfig"}, "KUBECONFIG"),
        ({"ARM_CA_BUNDLE": "/nonexistent/ca.pem"}, "ARM_CA_BUNDLE"),
        ({"KUBECONFIG": "", "AKS_API_SERVER": "http://aks.example", "AKS_CA_CERT": "-----BEGIN X"}, "AKS_API_SERVER"),
        ({"ALLOWLIST_EXTRA_CIDRS": "0.0.0.0/1,128.0.0.0/1"}, "ALLOWLIST_EXTRA_CIDRS"),
        ({"ALLOWLIST_EXTRA_CIDRS": "10.0.0.0/7"}, "ALLOWLIST_EXTRA_CIDRS"),
        ({"ALLOWLIST_EXTRA_CIDRS": "2000::/16"}, "ALLOWLIST_EXTRA_CIDRS"),
    ],
)
def test_settings_are_checked_for_range_and_meaning(world: World, overrides: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidSettings) as raised:
        load_settings({**world.settings(), **overrides})
    assert named in [name for name, _ in raised.value.problems]


def test_a_kubeconfig_that_is_not_one_is_a_named_setting_not_a_traceback(world: World, tmp_path: Path) -> None:
    from shared import deps

    broken = tmp_path / "kubeconfig"
    broken.write_text(json.dumps({"not": "a kubeconfig"}))
    with pytest.raises(InvalidSettings) as raised:
        deps.build_dependencies(load_settings({**world.settings(), "KUBECONFIG": str(broken)}))
    assert [name for name, _ in raised.value.problems] == ["KUBECONFIG"]
