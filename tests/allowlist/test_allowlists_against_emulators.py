"""Allow-lists in the Kubernetes emulator follow the APIM emulator's addresses, through the real SDKs."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

from functions import resync as resync_module
from sandbox.httpbase import Fault
from sandbox.world import World
from shared import sync
from shared.__main__ import main
from shared.allowlists.report import AllowListReport
from shared.core.annotations import DENY_ALL_EXCEPT_SOURCE_RANGES, NGINX_ALLOWLIST, NGINX_WHITELIST
from shared.core.reporting import Report
from shared.core.scope import Scope
from tests.allowlist.fronts import FRONTS, Front
from tests.conftest import ingress, service

CLUSTER = Scope("aks-sandbox")
DENY = {DENY_ALL_EXCEPT_SOURCE_RANGES: "true"}


def allowlist_report(report: Report) -> AllowListReport:
    assert isinstance(report.allowlists, AllowListReport)
    return report.allowlists


def seed(world: World) -> None:
    world.kube.apply(service("orders", mode="ingress", lb_ip=None))
    world.kube.apply(ingress("orders", "shop", "orders.example.com", "orders"))
    world.kube.apply(service("payments", annotations=DENY))


def ingress_annotations(world: World, name: str = "orders") -> dict[str, str]:
    found = world.kube.get("Ingress", "shop", name)
    assert found is not None
    return dict(found["metadata"].get("annotations") or {})


def source_ranges(world: World, name: str = "payments") -> Any:
    found = world.kube.get("Service", "shop", name)
    assert found is not None
    return found["spec"].get("loadBalancerSourceRanges")


@pytest.mark.parametrize("front", FRONTS, ids=lambda f: f.name)
def test_lists_follow_apim_addresses_then_a_second_run_writes_nothing(world: World, make_deps: Any, front: Front) -> None:
    front.seed(world)
    deps = make_deps(**front.settings)
    first = sync.run(CLUSTER, deps)
    assert front.held(world) == "20.0.0.1/32"
    assert [c["object"] for c in allowlist_report(first).changes] == [front.object]
    world.apim.service["properties"]["publicIPAddresses"] = ["20.0.0.7"]
    world.apim.service["properties"]["additionalLocations"] = [{"location": "North Europe", "publicIPAddresses": ["20.1.0.1"]}]

    report = sync.run(CLUSTER, deps)

    assert front.held(world) == "20.0.0.7/32,20.1.0.1/32"
    assert [(c["object"], c["outcome"]) for c in allowlist_report(report).changes] == [(front.object, "applied")]
    world.kube.clear_log()
    again = sync.run(CLUSTER, deps)
    assert world.kube.writes() == [] and allowlist_report(again).unchanged == 1


@pytest.mark.parametrize("front", FRONTS, ids=lambda f: f.name)
def test_no_usable_addresses_writes_nothing_and_reports_why(world: World, make_deps: Any, front: Front) -> None:
    front.seed(world)
    deps = make_deps(**front.settings)
    sync.run(CLUSTER, deps)
    world.apim.service["properties"]["publicIPAddresses"] = None
    world.kube.clear_log()

    report = sync.run(CLUSTER, deps)

    assert world.kube.writes() == []
    assert front.held(world) == "20.0.0.1/32", "the old list stays"
    error = report.to_json()["allowlists"]["error"]
    assert error["reason"] == "NoUsableApimAddresses" and "would admit everyone" in error["message"]
    assert report.failed and not report.retryable


def test_unmanaged_ingress_is_untouched(world: World, make_deps: Any) -> None:
    seed(world)
    world.kube.apply(service("legacy", expose=False))
    world.kube.apply(ingress("legacy", "shop", "legacy.example.com", "legacy"))
    sync.run(CLUSTER, make_deps())
    assert NGINX_ALLOWLIST not in ingress_annotations(world, "legacy")


@pytest.mark.parametrize("front", FRONTS, ids=lambda f: f.name)
def test_hand_edited_list_is_restored_and_reported(world: World, make_deps: Any, front: Front) -> None:
    front.seed(world)
    deps = make_deps(**front.settings)
    sync.run(CLUSTER, deps)
    front.hand_edit(world, "0.0.0.0/0")

    report = sync.run(CLUSTER, deps)

    assert front.held(world) == "20.0.0.1/32"
    (change,) = report.to_json()["allowlists"]["changes"]
    assert {k: change[k] for k in ("object", "before", "after", "reason", "outcome")} == {
        "object": front.object,
        "before": "0.0.0.0/0",
        "after": "20.0.0.1/32",
        "reason": "Restored",
        "outcome": "applied",
    }


def test_other_annotations_are_kept(world: World, make_deps: Any) -> None:
    seed(world)
    manifest = ingress("orders", "shop", "orders.example.com", "orders")
    manifest["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}
    world.kube.apply(manifest)
    sync.run(CLUSTER, make_deps())
    assert ingress_annotations(world)["nginx.ingress.kubernetes.io/proxy-body-size"] == "8m"


def test_both_annotation_names_when_asked(world: World, make_deps: Any) -> None:
    seed(world)
    sync.run(CLUSTER, make_deps(ALLOWLIST_ANNOTATION="both"))
    assert ingress_annotations(world)[NGINX_ALLOWLIST] == ingress_annotations(world)[NGINX_WHITELIST] == "20.0.0.1/32"


@pytest.mark.parametrize("front", FRONTS, ids=lambda f: f.name)
def test_concurrent_edit_is_reread_and_written_again(world: World, make_deps: Any, front: Front) -> None:
    front.seed(world)
    deps = make_deps(**front.settings)
    sync.run(CLUSTER, deps)
    world.apim.service["properties"]["publicIPAddresses"] = ["20.0.0.7"]
    world.kube.inject(Fault(409, method="PATCH", path_contains=front.path, times=1))

    report = sync.run(CLUSTER, deps)

    assert front.held(world) == "20.0.0.7/32"
    (change,) = report.to_json()["allowlists"]["changes"]
    assert change["outcome"] == "applied" and change["attempts"] == 2


def test_preflight_warnings_name_the_object_and_why(world: World, make_deps: Any) -> None:
    seed(world)
    world.kube.apply(service("no-deny"))
    world.kube.apply(service("exclusive", annotations={"service.beta.kubernetes.io/azure-allowed-ip-ranges": "1.2.3.4/32"}))
    controller = service("ingress-nginx-controller", "ingress-nginx", expose=False, mode=None)
    world.kube.apply(controller)

    report = sync.run(CLUSTER, make_deps(INGRESS_CONTROLLER_SERVICE="ingress-nginx/ingress-nginx-controller"))

    warnings = {(w["object"], w["reason"]) for w in report.to_json()["allowlists"]["warnings"]}
    assert warnings == {
        ("Service shop/no-deny", "VnetTrafficNotDenied"),
        ("Service shop/exclusive", "ExclusiveAllowListAnnotation"),
        ("Service ingress-nginx/ingress-nginx-controller", "ClientAddressNotPreserved"),
    }
    assert source_ranges(world, "exclusive") is None, "exclusive with the azure annotation: not written"


@pytest.mark.parametrize("front", FRONTS, ids=lambda f: f.name)
def test_dry_run_plans_without_writing(world: World, make_deps: Any, front: Front) -> None:
    front.seed(world)
    report = sync.run(CLUSTER, make_deps(**front.settings), dry_run=True)
    assert world.kube.writes() == []
    assert [(c["object"], c["outcome"]) for c in allowlist_report(report).changes] == [(front.object, "planned")]


def test_resync_endpoint_scope_allowlist_runs_only_that_step(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in world.settings().items():
        monkeypatch.setenv(name, value)
    seed(world)
    request = func.HttpRequest("POST", "http://localhost/api/resync", params={"scope": "allowlist"}, body=b"")
    response = resync_module.resync.build().get_user_function()(request)
    body = json.loads(response.get_body())
    assert response.status_code == 200 and body["counts"]["create"] == 0 and world.apim.backends == {}
    assert ingress_annotations(world)[NGINX_ALLOWLIST] == "20.0.0.1/32"


def test_cli_allowlist_dry_run_prints_the_plan(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    seed(world)
    assert main(["allowlist", "--dry-run", "--env-file", str(world.write_env_file())]) == 2, "2: changes planned"
    out = capsys.readouterr().out
    assert "~ Ingress shop/orders" in out and "20.0.0.1/32" in out and world.kube.writes() == []
    assert "backends not reconciled" in out and "backend" not in out.replace("backends not reconciled", "")


def test_disabled_allow_lists_are_not_touched(world: World, make_deps: Any) -> None:
    seed(world)
    report = sync.run(CLUSTER, make_deps(ALLOWLIST_ENABLED="false"))
    assert NGINX_ALLOWLIST not in ingress_annotations(world)
    assert report.to_json()["allowlists"]["skipped"] == "ALLOWLIST_ENABLED is false"
