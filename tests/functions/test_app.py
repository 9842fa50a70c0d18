"""The Functions app as the host sees it: indexed metadata, and handlers called with real trigger objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

import shared
from functions import resync as resync_module
from functions import timers as timers_module
from sandbox.httpbase import Fault
from sandbox.world import World
from tests.conftest import service
from tests.indexed import INDEXED


def bindings() -> dict[str, list[dict[str, Any]]]:
    return {str(f.get_function_name()): json.loads(f.get_function_json())["bindings"] for f in INDEXED}


def test_indexed_functions_are_what_the_host_will_read() -> None:
    assert bindings() == {
        "doctor": [
            {
                "direction": "IN",
                "type": "httpTrigger",
                "name": "req",
                "methods": ["POST"],
                "authLevel": "FUNCTION",
                "route": "doctor",
            },
            {"direction": "OUT", "type": "http", "name": "$return"},
        ],
        "on_event": [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}],
        "resync": [
            {
                "direction": "IN",
                "type": "httpTrigger",
                "name": "req",
                "methods": ["POST"],
                "authLevel": "FUNCTION",
                "route": "resync",
            },
            {"direction": "OUT", "type": "http", "name": "$return"},
        ],
        "rotate": [
            {
                "direction": "IN",
                "type": "httpTrigger",
                "name": "req",
                "methods": ["POST"],
                "authLevel": "FUNCTION",
                "route": "rotate",
            },
            {"direction": "OUT", "type": "http", "name": "$return"},
        ],
        "rotate_certificates": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "%ROTATION_SCHEDULE%",
                "runOnStartup": False,
                "useMonitor": True,
            }
        ],
        "periodic_resync": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "%PERIODIC_RESYNC_SCHEDULE%",
                "runOnStartup": False,
                "useMonitor": True,
            }
        ],
    }


def test_timer_has_an_exponential_retry_policy() -> None:
    timer = next(f for f in INDEXED if f.get_function_name() == "periodic_resync")
    assert timer.get_settings_dict("retry_policy") == {
        "setting_name": "retry_policy",
        "strategy": "exponential_backoff",
        "max_retry_count": "3",
        "minimum_interval": "00:00:10",
        "maximum_interval": "00:05:00",
    }


def test_importing_the_app_loads_no_sdk_with_telemetry_on_or_off() -> None:
    heavy = (
        "('kubernetes', 'azure.mgmt', 'azure.identity', 'azure.eventgrid', 'azure.storage', 'cryptography', "
        "'opentelemetry', 'azure.monitor')"
    )
    probe = f"import sys, function_app; print(sorted(m for m in sys.modules if m.startswith({heavy})))"
    telemetry_on = {
        **os.environ,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    }
    for environ in (dict(os.environ), telemetry_on):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environ).stdout  # noqa: S603
        assert out.strip() == "[]"


def test_public_names_are_exported() -> None:
    assert sorted(shared.__all__) == sorted(
        name
        for name in dir(shared)
        if (not name.startswith("_") and name[0].isupper()) or name in ("load_settings", "parse_resync_request")
    )
    for name in shared.__all__:
        assert getattr(shared, name) is not None


def post(params: dict[str, str] | None = None, body: bytes = b"") -> func.HttpResponse:
    request = func.HttpRequest("POST", "http://localhost/api/resync", params=params or {}, body=body)
    return resync_module.resync.build().get_user_function()(request)  # type: ignore[no-any-return]


@pytest.fixture
def app_settings(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    for name, value in world.settings().items():
        monkeypatch.setenv(name, value)
    return world


def test_resync_endpoint_applies_and_returns_the_report(app_settings: World) -> None:
    app_settings.kube.apply(service("orders"))
    response = post()
    report = json.loads(response.get_body())
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert report["counts"]["create"] == 1 and len(app_settings.apim.backends) == 1


def test_resync_endpoint_dry_run_writes_nothing(app_settings: World) -> None:
    app_settings.kube.apply(service("orders"))
    response = post({"dryRun": "true"})
    assert response.status_code == 200 and json.loads(response.get_body())["dry_run"] is True
    assert app_settings.apim.writes() == []


def test_resync_endpoint_scope_from_the_body(app_settings: World) -> None:
    app_settings.kube.apply(service("orders"))
    app_settings.kube.apply(service("payments"))
    response = post(body=b'{"namespace": "shop", "service": "payments"}')
    assert json.loads(response.get_body())["scope"] == {
        "kind": "service",
        "cluster": "aks-sandbox",
        "namespace": "shop",
        "service": "payments",
    }
    assert len(app_settings.apim.backends) == 1


def test_bad_request_is_400_naming_the_field(app_settings: World) -> None:
    response = post({"dryRun": "perhaps"})
    assert response.status_code == 400
    assert json.loads(response.get_body()) == {"error": "BadRequest", "field": "dryRun", "message": "must be true or false"}


def test_failed_changes_are_500_with_the_report_and_retry_after(app_settings: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    app_settings.kube.apply(service("orders"))
    app_settings.apim.inject(Fault(503, method="PUT", times=99, headers={"Retry-After": "7"}))
    response = post()
    assert response.status_code == 500 and response.headers["Retry-After"] == "7"
    assert json.loads(response.get_body())["counts"]["failed"] == 1


def test_invalid_settings_are_500_naming_settings_but_not_values(app_settings: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OWNER_ID")
    monkeypatch.setenv("SYNC_POLICY", "everything-goes")
    response = post()
    body = json.loads(response.get_body())
    assert response.status_code == 500
    assert body == {
        "error": "InvalidSettings",
        "settings": [
            {"setting": "OWNER_ID", "problem": "missing"},
            {"setting": "SYNC_POLICY", "problem": "expected sync, upsert-only or create-only"},
        ],
    }
    assert app_settings.token not in response.get_body().decode()


def test_timer_reconciles_everything(app_settings: World) -> None:
    app_settings.kube.apply(service("orders"))
    timers_module.periodic_resync.build().get_user_function()(TimerRequest(past_due=False))
    assert len(app_settings.apim.backends) == 1


def test_timer_raises_on_transient_failure_so_the_retry_policy_runs(app_settings: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    app_settings.kube.apply(service("orders"))
    app_settings.apim.inject(Fault(503, method="PUT", times=99))
    with pytest.raises(shared.RetryableError):
        timers_module.periodic_resync.build().get_user_function()(TimerRequest(past_due=False))


def test_no_secret_reaches_logs_or_reports(app_settings: World, caplog: pytest.LogCaptureFixture) -> None:
    app_settings.kube.apply(service("orders"))
    app_settings.apim.inject(Fault(401, method="PUT", body={"error": {"code": "InvalidAuthenticationToken", "message": "bad"}}))
    with caplog.at_level("DEBUG"):
        body = post().get_body().decode()
    everything = body + caplog.text
    assert app_settings.token not in everything
