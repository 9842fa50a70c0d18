"""`make` on a machine without the right Python says so in one line and creates nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_an_old_python_is_named_in_one_line_and_no_venv_is_made(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.fail("make is missing")
    old_python = tmp_path / "python3.10"
    old_python.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Python 3.10.12"; exit 0; fi\nexit 1\n')
    old_python.chmod(0o755)
    venv = tmp_path / "venv"
    made = subprocess.run(  # noqa: S603 - make from the PATH, our own Makefile
        ["make", "-s", "-C", str(ROOT), f"PYTHON={old_python}", f"VENV={venv}", f"{venv}/.installed"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert made.returncode != 0
    [message] = [line for line in made.stdout.splitlines() if line.strip()]
    assert "needs Python 3.11 or newer" in message and "Python 3.10.12" in message
    assert not venv.exists()


def test_the_demo_runs_on_a_v2_tier_and_writes_the_integration_subnet_as_the_allow_list() -> None:
    import subprocess
    import sys

    from sandbox.apim_tiers import INTEGRATION_SUBNET_PREFIX

    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "demo", "--tier", "PremiumV2"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"-> '{INTEGRATION_SUBNET_PREFIX}'" in done.stdout
