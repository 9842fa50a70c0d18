"""Certificate rotation: a timer (ROTATION_SCHEDULE, daily by default) and POST /api/rotate.

POST options (query or JSON body): force=true rotates the client certificate now, forceCa=true starts a
CA rotation now, dryRun=true shows the steps without doing them. A run that finds another holding the
lock says so and exits cleanly.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from functions._deps import dependencies_or_none
from functions._http import json_response, settings_error_response
from shared import deps
from shared.core import errors
from shared.core.scope import BadRequest, parse_flags
from shared.rotation import rotate as rotation_runner

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)

ROTATION_SCHEDULE = "%ROTATION_SCHEDULE%"


@bp.function_name("rotate_certificates")
@bp.timer_trigger(arg_name="timer", schedule=ROTATION_SCHEDULE, run_on_startup=False, use_monitor=True)
@bp.retry(strategy="exponential_backoff", max_retry_count="3", minimum_interval="00:01:00", maximum_interval="00:15:00")
def rotate_certificates(timer: func.TimerRequest) -> None:
    dependencies = dependencies_or_none(log, "rotation")
    if dependencies is None:
        return
    report = rotation_runner.rotate(dependencies)
    log.info("rotation finished: %s", json.dumps(report.to_json()))
    if report.retryable:
        raise errors.RetryableError("rotation hit a transient failure; retrying")


@bp.function_name("rotate")
@bp.route(route="rotate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def rotate(req: func.HttpRequest) -> func.HttpResponse:
    try:
        dependencies = deps.dependencies()
    except errors.InvalidSettings as error:
        return settings_error_response(error.problems)
    flags = parse_flags(dict(req.params), req.get_body(), ("force", "forceCa", "dryRun"))
    if isinstance(flags, BadRequest):
        return json_response(flags.to_json(), status=400)
    force = "ca" if flags["forceCa"] else "certificate" if flags["force"] else None
    report = rotation_runner.rotate(dependencies, dry_run=flags["dryRun"], force=force)
    status = 200 if not report.failed else 500
    headers = {"Retry-After": "60"} if report.retryable else None
    return json_response(report.to_json(), status=status, headers=headers)
