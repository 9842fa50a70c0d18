"""The sandbox as README tells an operator to use it: `serve --seed` in a clean folder, the printed commands
run as printed, `apply` adds a Service, `rotate` works (Azurite holds its lock), and nothing is left behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.tools import find_azurite, start_azurite
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    environment = {"PATH": os.environ.get("PATH", ""), "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--seed"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if "rotate" in line:
            break
    yield process, lines
    if process.poll() is None:
        process.kill()
        process.wait(10)


def run(command: list[str], home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A printed command, run where serve said to run it, with nothing else in the environment (but a home
    folder for kubectl's discovery cache, which would otherwise land in the repository)."""
    environment = {"PATH": os.environ.get("PATH", ""), **({"HOME": str(home)} if home else {})}
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603


def printed_command(lines: list[str], contains: str) -> list[str]:
    line = next(line for line in lines if contains in line).split("#")[0]
    return line.split()


def test_serve_seed_prints_commands_that_work_as_printed_and_leaves_nothing_behind(
    served: tuple[subprocess.Popen[str], list[str]], tmp_path: Path
) -> None:
    require_tool(find_azurite(), "Azurite (npm azurite)")
    process, lines = served
    env_file = next(line.split(": ", 1)[1] for line in lines if line.startswith("settings: "))
    assert Path(env_file).is_relative_to(tmp_path), "the sandbox works in its own temporary folder"
    assert f"try, in {ROOT}:" in lines

    plan = run(printed_command(lines, "-m shared plan"))
    assert plan.returncode == 2, plan.stderr  # the seeded world has changes to make
    assert "+ backend aks-sandbox-shop-orders-" in plan.stdout

    manifest = tmp_path / "service.yaml"
    manifest.write_text(
        """apiVersion: v1
kind: Service
metadata:
  name: receipts
  namespace: shop
  annotations: {apim-sync.io/expose: "true", apim-sync.io/mode: public}
spec:
  type: LoadBalancer
  ports: [{name: https, port: 443}]
status:
  loadBalancer: {ingress: [{ip: 20.50.1.30}]}
"""
    )
    apply_command = [*printed_command(lines, "-m sandbox apply")[:-1], str(manifest)]
    applied = run(apply_command)
    assert applied.returncode == 0 and "service/receipts created" in applied.stdout, applied.stderr
    sync = run(printed_command(lines, "-m shared sync"))
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "backend aks-sandbox-shop-receipts-" in sync.stdout

    if shutil.which("kubectl"):
        listed = run(printed_command(lines, "kubectl --kubeconfig"), home=tmp_path)
        assert listed.returncode == 0 and "receipts" in listed.stdout, listed.stderr

    rotate = run(printed_command(lines, "-m shared rotate"))
    assert rotate.returncode == 2, rotate.stdout + rotate.stderr  # dry run: steps planned
    assert "CreateCa" in rotate.stdout

    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(("aks-apim-sync-sandbox-", "azurite-"))] == []


def test_the_suite_starts_azurite_with_telemetry_off() -> None:
    server = start_azurite(require_tool(find_azurite(), "Azurite (npm azurite)"))
    try:
        command_line = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--disableTelemetry" in command_line
        assert re.search(rb"--location", b" ".join(command_line))
    finally:
        server.stop()
    assert not server.workspace.exists(), "Azurite's data folder goes with it"
