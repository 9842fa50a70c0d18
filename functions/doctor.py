"""POST /api/doctor: check the live setup (settings, identity, permissions, RBAC, storage, Key Vault), changing
nothing; 200 with the checklist when every check passes, 500 with it (and the fix for each failure) otherwise."""

from __future__ import annotations

import logging
import os

import azure.functions as func

from functions._http import json_response
from shared import deps, doctor

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.function_name("doctor")
@bp.route(route="doctor", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def run_doctor(req: func.HttpRequest) -> func.HttpResponse:
    # The worker's cached dependencies when they exist (the same clients the runs use); settings errors are a check.
    report = doctor.run(os.environ, lambda _settings: deps.dependencies())
    log.info("doctor finished", extra={"failed": [c.name for c in report.checks if c.ok is False]})
    return json_response(report.to_json(), status=500 if report.failed else 200)
