"""Response shaping shared by the HTTP handlers."""

from __future__ import annotations

import json
import math
from typing import Any

import azure.functions as func

from shared.core.reporting import Report


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json", headers=headers or {})


def report_response(report: Report) -> func.HttpResponse:
    """200 when nothing failed (refusals and invalid annotations are not failures); 500 otherwise."""
    if not report.failed:
        return json_response(report.to_json())
    headers = {}
    if report.retryable:
        headers["Retry-After"] = str(math.ceil(report.retry_after_seconds or 30))
    return json_response(report.to_json(), status=500, headers=headers)


def settings_error_response(problems: tuple[tuple[str, str], ...]) -> func.HttpResponse:
    """Names the bad settings and why; never their values."""
    listed = [{"setting": name, "problem": why} for name, why in problems]
    return json_response({"error": "InvalidSettings", "settings": listed}, status=500)
