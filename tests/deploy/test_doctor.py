"""`doctor` against the sandbox: every check passes with the deployed roles; each missing permission, role, named
value or storage is a failed check that names it and says how to fix it; nothing is ever written."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

from functions import doctor as doctor_function
from sandbox.tools import Azurite
from sandbox.world import World
from shared import doctor
from shared.__main__ import main
from shared.core.permissions import Feature, arm_actions
from tests.deploy.test_permissions import enforce_the_deployed_roles, manifest_roles


def environ(world: World, azurite: Azurite, **extra: str) -> dict[str, str]:
    return {**world.settings(), "AzureWebJobsStorage": azurite.connection_string, **extra}


def failed(report: doctor.DoctorReport) -> dict[str, doctor.Check]:
    return {check.name: check for check in report.checks if check.ok is False}


def test_doctor_passes_against_the_sandbox_with_the_deployed_roles_and_writes_nothing(world: World, azurite: Azurite) -> None:
    enforce_the_deployed_roles(world)
    report = doctor.run(environ(world, azurite, ROUTE_KINDS="Ingress,HTTPRoute", GATEWAY_ALLOWLIST="istio"))
    assert not report.failed, report.to_text()
    names = [check.name for check in report.checks]
    assert {"settings", "APIM service", "APIM addresses for allow-lists", "Option 1 named value"} <= set(names)
    assert "ARM permissions on APIM" in names and "rotation lock storage" in names
    assert any(name.startswith("Kubernetes authorizationpolicies.security.istio.io") for name in names)
    assert world.apim.writes() == []
    assert [r for r in world.kube.writes() if "selfsubjectaccessreviews" not in r.path] == []


def test_an_arm_action_the_role_lacks_is_named_with_its_fix(world: World, azurite: Azurite) -> None:
    world.apim.granted_actions = [
        a for a in arm_actions(set(Feature)) if a != "Microsoft.ApiManagement/service/certificates/write"
    ]
    report = doctor.run(environ(world, azurite))
    check = failed(report)["ARM permissions on APIM"]
    assert "Microsoft.ApiManagement/service/certificates/write" in check.detail
    assert "certificate.create_or_update" in check.detail
    assert "infra/modules/apim-access.bicep" in check.fix


def test_a_kubernetes_verb_the_roles_lack_is_named_with_the_role_that_grants_it(world: World, azurite: Azurite) -> None:
    enforce_the_deployed_roles(world)
    assert world.kube.rbac is not None
    world.kube.rbac = [r for r in world.kube.rbac if not (r["resources"] == ["services"] and r["verbs"] == ["patch"])]
    report = doctor.run(environ(world, azurite))
    (check,) = failed(report).values()
    assert check.name == "Kubernetes services (patch) in every namespace"
    assert "not allowed: patch" in check.detail and "feature 'allowlists'" in check.fix


def test_a_missing_option_1_named_value_is_a_failed_check(world: World, azurite: Azurite) -> None:
    world.apim.named_values.clear()
    check = failed(doctor.run(environ(world, azurite)))["Option 1 named value"]
    assert "'aks-backend-token' does not exist" in check.detail and "create the secret named value" in check.fix


def test_unreachable_lock_storage_is_a_failed_check(world: World, azurite: Azurite) -> None:
    broken = azurite.connection_string.replace(f":{azurite.port}/", ":9/")
    check = failed(doctor.run(environ(world, azurite, AzureWebJobsStorage=broken)))["rotation lock storage"]
    assert "Storage Blob Data Owner" in check.fix


def test_wrong_settings_are_named_without_their_values(world: World, azurite: Azurite) -> None:
    report = doctor.run(environ(world, azurite, SYNC_POLICY="everything", ARM_ENDPOINT="http://secret-host.example"))
    (check,) = report.checks
    assert check.ok is False and "SYNC_POLICY" in check.detail and "ARM_ENDPOINT" in check.detail
    assert "everything" not in check.detail and "secret-host" not in check.detail


def test_the_cli_prints_the_checklist_and_exits_1_on_a_failure(
    world: World, azurite: Azurite, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in environ(world, azurite).items():
        monkeypatch.setenv(name, value)
    assert main(["doctor"]) == 0
    assert "all checks passed" in capsys.readouterr().out
    world.apim.not_actions = ["Microsoft.ApiManagement/service/backends/*"]
    assert main(["doctor", "--json"]) == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["ok"] is False and any("backends/write" in c["detail"] for c in shown["checks"] if c["ok"] is False)


def test_the_http_function_answers_200_or_500_with_the_checklist(
    world: World, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared import deps

    for name, value in environ(world, azurite).items():
        monkeypatch.setenv(name, value)
    deps.reset()
    handler: Any = doctor_function.run_doctor.build().get_user_function()
    request = func.HttpRequest("POST", "http://localhost/api/doctor", body=b"")
    assert handler(request).status_code == 200
    world.kube.rbac = [rule for role in manifest_roles() for rule in role["rules"] if "services" not in rule["resources"]]
    answer = handler(request)
    assert answer.status_code == 500
    assert any(c["check"].startswith("Kubernetes services") for c in json.loads(answer.get_body())["checks"] if c["ok"] is False)
