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
