"""The app as the host indexes it, built once per test session: building twice trips the library's checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import function_app

INDEXED = function_app.app.get_functions()


def user_function(name: str) -> Callable[..., Any]:
    return next(f for f in INDEXED if f.get_function_name() == name).get_user_function()  # type: ignore[no-any-return]
