"""`python -m shared` as an operator meets it: exit codes like terraform's, JSON on every path, env files as a
shell writes them, help with examples. Most tests run the CLI as a subprocess, as a terminal would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.world import World
from shared.__main__ import load_env_file, main
from tests.conftest import service

ROOT = Path(__file__).resolve().parents[2]


def cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process with only PATH set, so settings come from --env-file alone."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "shared", *arguments],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_plan_exits_2_when_there_are_changes_and_0_when_there_are_none(world: World) -> None:
    env_file = str(world.write_env_file())
    world.kube.apply(service("orders", lb_ip="52.1.2.3"))
    planned = cli("plan", "--env-file", env_file)
    assert planned.returncode == 2, planned.stderr
    assert "+ backend aks-sandbox-shop-orders-" in planned.stdout and 'url: None -> "http://52.1.2.3"' in planned.stdout
    assert world.apim.writes() == []

    synced = cli("sync", "--env-file", env_file)
    assert synced.returncode == 0, synced.stderr
    assert "1 created, 0 updated, 0 deleted" in synced.stdout, "sync speaks in the past tense"
    again = cli("plan", "--env-file", env_file)
    assert again.returncode == 0 and "No backend changes" in again.stdout


def test_sync_with_json_applies_and_prints_the_report(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.kube.apply(service("orders"))
    assert main(["sync", "--json", "--env-file", str(world.write_env_file())]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["create"] == 1
    assert len(world.apim.backends) == 1


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["plan", "--env-file", "/nonexistent/sandbox.env"], "EnvFile"),
        (["plan", "--service", "orders"], "BadRequest"),
        (["plan", "--bogus"], "BadRequest"),
        (["teleport"], "BadRequest"),
        (["plan"], "InvalidSettings"),
    ],
)
def test_every_error_is_exit_1_and_json_when_asked(world: World, arguments: list[str], reason: str) -> None:
    env = ["--env-file", str(world.write_env_file())] if "--env-file" not in arguments and reason != "InvalidSettings" else []
    answered = cli(*arguments, *env, "--json")
    assert answered.returncode == 1, answered.stderr
    shown = json.loads(answered.stdout)["error"]
    assert shown["reason"] == reason and shown["message"]
    assert "Traceback" not in answered.stderr
    plain = cli(*arguments, *env)
    assert plain.returncode == 1 and f"error ({reason})" in plain.stderr and "Traceback" not in plain.stderr


def test_bad_settings_are_named_with_what_to_do_next(world: World) -> None:
    env_file = world.directory / "broken.env"
    env_file.write_text("SYNC_POLICY=sometimes\n")
    answered = cli("plan", "--env-file", str(env_file))
    assert answered.returncode == 1
    assert "SYNC_POLICY" in answered.stderr and "next:" in answered.stderr


def test_env_files_are_read_as_a_shell_reads_them(world: World, tmp_path: Path) -> None:
    written = tmp_path / "app.env"
    lines = [f"export {k}='{v}'" if i % 2 else f'{k}="{v}"' for i, (k, v) in enumerate(world.settings().items())]
    written.write_text("# settings for the sandbox\n\n" + "\n".join(lines) + "\nexport EXTRA=plain # a comment\n")
    assert load_env_file(str(written)) == {**world.settings(), "EXTRA": "plain"}
    world.kube.apply(service("orders"))
    assert cli("plan", "--env-file", str(written)).returncode == 2


def test_an_unknown_service_is_named(world: World) -> None:
    answered = cli("plan", "--namespace", "shop", "--service", "nosuch", "--env-file", str(world.write_env_file()))
    assert answered.returncode == 0
    assert "Service shop/nosuch does not exist" in answered.stdout


def test_help_lists_every_command_with_examples() -> None:
    shown = cli("--help")
    assert shown.returncode == 0
    for command in ("plan", "sync", "allowlist", "rotate"):
        assert command in shown.stdout and f"python -m shared {command}" in shown.stdout
    assert "exit" in shown.stdout.lower()
    for command in ("plan", "sync", "allowlist", "rotate"):
        one = cli(command, "--help")
        assert one.returncode == 0 and "example:" in one.stdout


def test_allowlist_without_changes_says_nothing_about_backends(world: World, make_deps: Any) -> None:
    answered = cli("allowlist", "--dry-run", "--env-file", str(world.write_env_file()))
    assert answered.returncode == 0, answered.stderr
    assert "APIM's backends match" not in answered.stdout and "backends not reconciled" in answered.stdout
