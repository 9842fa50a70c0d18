"""`python -m shared plan|sync` runs the same engine from a terminal."""

from __future__ import annotations

import json

import pytest

from sandbox.world import World
from shared.__main__ import main
from tests.conftest import service


def test_plan_prints_a_readable_plan_and_writes_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.kube.apply(service("orders", lb_ip="52.1.2.3"))
    assert main(["plan", "--env-file", str(world.write_env_file())]) == 0
    out = capsys.readouterr().out
    assert "+ backend aks-sandbox-shop-orders-" in out and 'url: None -> "http://52.1.2.3"' in out
    assert world.apim.writes() == []


def test_sync_with_json_applies_and_prints_the_report(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.kube.apply(service("orders"))
    assert main(["sync", "--json", "--env-file", str(world.write_env_file())]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["create"] == 1
    assert len(world.apim.backends) == 1


def test_bad_settings_exit_2_naming_them(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = world.directory / "broken.env"
    env_file.write_text("SYNC_POLICY=sometimes\n")
    for name in world.settings():
        monkeypatch.delenv(name, raising=False)
    assert main(["plan", "--env-file", str(env_file)]) == 2
    assert "SYNC_POLICY" in capsys.readouterr().err
