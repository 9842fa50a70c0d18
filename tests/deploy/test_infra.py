"""infra/ is consistent with the code, since no Azure is reachable here: every Bicep file parses and passes
checkov; the app settings are the ones the code reads; the custom role is the ARM table; every event type
subscribed to is one the router acts on; the Functions app passes azure-functions-doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from sandbox.world import World
from shared.core import settings
from shared.core.errors import InvalidSettings
from shared.core.permissions import ARM_OPERATIONS, Feature, arm_actions
from shared.core.watcher_events import CLUSTER_RESYNC, SERVICE_CHANGED, TRUST_CHANGED, watcher_source
from shared.events.routing import Acknowledge, EventContext, Malformed, route
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

HOST_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",  # read by the Functions host and by shared.telemetry
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",  # the host's Entra ID authentication to Application Insights
    "AZURE_CLIENT_ID",  # azure-identity's DefaultAzureCredential: which user-assigned identity
}
"""Settings in the template that the Functions host or an SDK reads, not our code."""
BINDING_SETTINGS = {"PERIODIC_RESYNC_SCHEDULE", "ROTATION_SCHEDULE"}
"""Settings the trigger bindings read (%NAME% in functions/)."""


def parsed(path: Path) -> dict[str, Any]:
    document: Any = BicepParser().parse(file_path=path)
    return dict(document)


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


class Recording(dict[str, str]):
    """An environment that remembers every name the settings loader asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def settings_the_code_reads(world: World) -> tuple[set[str], set[str]]:
    """(every setting name the code reads, the required ones)."""
    asked: set[str] = set()
    required: set[str] = set()
    for environ in ({}, world.settings()):
        recording = Recording(environ)
        try:
            settings.load_settings(recording)
        except InvalidSettings as invalid:
            required |= {name for name, why in invalid.problems if why == "missing"}
        asked |= recording.asked
    for module in (ROOT / "functions").glob("*.py"):
        text = module.read_text()
        asked |= {name for name in BINDING_SETTINGS if f"%{name}%" in text}
    return asked, required


def app_settings() -> dict[str, Any]:
    app = parsed(INFRA / "main.bicep")["resources"]["app"]["config"]
    return {item["name"]: item["value"] for item in app["properties"]["siteConfig"]["appSettings"]}


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    document = parsed(path)
    assert document["resources"] or document["modules"]


def test_checkov_finds_nothing_and_every_skip_says_why() -> None:
    checkov = require_tool(str(CHECKOV) if CHECKOV.exists() else None, "checkov (make tools: .venv-checkov)")
    answer = subprocess.run(  # noqa: S603 - our own tool and arguments
        [checkov, "-d", str(INFRA), "--framework", "bicep", "--quiet", "--compact", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
        check=False,
    )
    report = json.loads(answer.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    assert (summary["failed"], summary["parsing_errors"]) == (0, 0), answer.stdout[-3000:]
    assert summary["passed"] > 0
    for skipped in report["results"].get("skipped_checks") or []:
        assert len(skipped["check_result"].get("suppress_comment") or "") > 20, skipped["check_id"]


def test_the_template_sets_every_required_setting_and_no_unknown_one(world: World) -> None:
    asked, required = settings_the_code_reads(world)
    in_template = set(app_settings())
    assert required <= in_template, f"missing: {required - in_template}"
    assert in_template - asked - HOST_SETTINGS == set(), "set in the template but read by nothing"


def test_the_custom_role_is_the_arm_table_feature_by_feature() -> None:
    variables = parsed(INFRA / "modules" / "apim-access.bicep")["variables"]
    by_variable = {
        "backendActions": {Feature.BACKENDS, Feature.ALLOWLISTS},
        "rotationActions": {Feature.ROTATION},
        "apiActions": {Feature.APIS},
        "productCreateActions": {Feature.CREATE_PRODUCTS},
        "namedValueActions": {Feature.PUBLIC_AUTH},
    }
    granted: set[str] = set()
    for name, features in by_variable.items():
        wanted = sorted(
            {op.action for op in ARM_OPERATIONS if op.features <= features | {Feature.BACKENDS} and op.features & features}
        )
        assert variables[name]["value"] == wanted, name
        granted |= set(wanted)
    assert granted == set(arm_actions(set(Feature)))


def test_every_subscribed_event_type_is_one_the_router_acts_on() -> None:
    apim_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim"
    aks_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks"
    context = EventContext(cluster="aks", apim_service_id=apim_id, aks_resource_id=aks_id)
    subscribed = {t for path in BICEP_FILES for key, value in walk(parsed(path)) if key == "includedEventTypes" for t in value}
    assert subscribed
    for event_type in sorted(subscribed):
        if event_type in (SERVICE_CHANGED, CLUSTER_RESYNC, TRUST_CHANGED):
            subject = "clusters/aks/namespaces/shop/services/orders" if event_type == SERVICE_CHANGED else "clusters/aks"
            event = {"specversion": "1.0", "id": "1", "type": event_type, "source": watcher_source("aks"), "subject": subject}
        elif event_type.startswith("Microsoft.ApiManagement."):
            event = {"id": "1", "eventType": event_type, "topic": apim_id, "subject": "/apis/orders", "data": {}}
        elif event_type.startswith("Microsoft.Resources."):
            event = {
                "id": "1",
                "eventType": event_type,
                "topic": "/subscriptions/s/resourceGroups/rg",
                "subject": f"{apim_id}/backends/b",
            }
        else:
            event = {"id": "1", "eventType": event_type, "topic": aks_id, "subject": "aks", "data": {"nodePoolName": "np"}}
        action = route(event, context)
        assert not isinstance(action, (Acknowledge, Malformed)), (event_type, action)


def test_the_function_timeout_fits_the_flex_consumption_plan() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    assert 0 < hours * 3600 + minutes * 60 + seconds <= 30 * 60, "Flex Consumption's default limit is 30 minutes"
    app = parsed(INFRA / "main.bicep")["resources"]["app"]["config"]
    assert app["properties"]["functionAppConfig"]["runtime"]["name"] == "python"
    assert (
        parsed(INFRA / "main.bicep")["parameters"]["pythonVersion"]["default"]
        == f"{sys.version_info.major}.{sys.version_info.minor}"
    )


def test_the_app_passes_azure_functions_doctor(tmp_path: Path) -> None:
    import shutil

    # The package as `func publish` would upload it (.funcignore keeps the rest out): scanning node_modules and the
    # virtual environments too would only make the check slow.
    app = tmp_path / "app"
    app.mkdir()
    for name in ("function_app.py", "host.json", "requirements.txt", ".funcignore"):
        shutil.copy(ROOT / name, app / name)
    for folder in ("functions", "shared"):
        shutil.copytree(ROOT / folder, app / folder, ignore=shutil.ignore_patterns("__pycache__"))
    doctor = Path(sys.executable).parent / "azure-functions-doctor"
    answer = subprocess.run(  # noqa: S603 - our own tool and arguments
        [str(doctor), "doctor", "--path", str(app), "--format", "json", "--profile", "full"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(answer.stdout)
    failed = [item["rule_id"] for group in report["results"] for item in group["items"] if item["status"] == "fail"]
    assert failed == []


def test_the_tenancy_policy_manifest_parses_and_so_does_its_example() -> None:
    import yaml

    from shared.core.tenancy import parse_policy

    (config_map,) = [
        d
        for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "tenancy-policy.yaml").read_text())
        if d["kind"] == "ConfigMap"
    ]
    text = config_map["data"]["policy.yaml"]
    parse_policy(yaml.safe_load(text), "policy.yaml")
    example = "\n".join(
        line.replace("# ", "", 1) for line in text.splitlines() if line.startswith("# ") and line[2:3] in (" ", "n")
    )
    assert "shop" in example
    parse_policy({**yaml.safe_load(text), **yaml.safe_load(example)}, "policy.yaml")
