"""POST /api/resync: reconcile now, for the whole cluster, a namespace or one Service; ?dryRun=true plans only.

?scope=allowlist runs only the allow-list step, ?scope=backends only the backends; both by default.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions._http import json_response, report_response, settings_error_response
from shared import deps, sync
from shared.core import errors, scope

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.function_name("resync")
@bp.route(route="resync", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def resync(req: func.HttpRequest) -> func.HttpResponse:
    try:
        dependencies = deps.dependencies()
    except errors.InvalidSettings as error:
        log.error("settings invalid", extra={"settings": [name for name, _ in error.problems]})
        return settings_error_response(error.problems)
    parsed = scope.parse_resync_request(dict(req.params), req.get_body(), cluster=dependencies.settings.kube.cluster_name)
    if isinstance(parsed, scope.BadRequest):
        return json_response(parsed.to_json(), status=400)
    report = sync.run(
        parsed.scope,
        dependencies,
        steps=parsed.steps,
        dry_run=parsed.dry_run,
        allow_mass_delete=parsed.allow_mass_delete,
        coalesce=True,
    )
    log.info("resync finished", extra={"counts": report.counts, "dry_run": report.dry_run, "scope": report.scope.kind})
    return report_response(report)
