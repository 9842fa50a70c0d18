"""The worker's dependencies for triggers that cannot answer a caller (timers, Event Grid)."""

from __future__ import annotations

import logging

from shared import deps
from shared.core import errors
from shared.runtime.ports import Dependencies


def dependencies_or_none(log: logging.Logger, what: str) -> Dependencies | None:
    """None (logged, naming the settings but never their values) when the settings are invalid: retrying cannot help."""
    try:
        return deps.dependencies()
    except errors.InvalidSettings as error:
        log.error("settings invalid; %s not run", what, extra={"settings": [name for name, _ in error.problems]})
        return None
