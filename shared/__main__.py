"""`python -m shared plan|sync|allowlist`: the same engine from a terminal.

plan prints what sync would do (like `terraform plan`); sync applies it (backends and allow-lists);
allowlist runs only the allow-list step (--dry-run to plan it); rotate runs the certificate rotation
(--dry-run, --force, --force-ca). --json prints the report as JSON.
Exit status: 0 done, 1 some change or read failed, 2 bad settings or arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence


def load_env_file(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip('"')
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["plan", "sync", "allowlist", "rotate"])
    parser.add_argument("--force", action="store_true", help="rotate: issue a new client certificate now")
    parser.add_argument("--force-ca", action="store_true", help="rotate: start a CA rotation now")
    parser.add_argument("--dry-run", action="store_true", help="plan only (plan always is)")
    parser.add_argument("--namespace", help="only this namespace")
    parser.add_argument("--service", help="only this Service (needs --namespace)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--allow-mass-delete", action="store_true", help="switch the delete cap off for this run")
    parser.add_argument("--env-file", help="read settings from this dotenv file (as written by `python -m sandbox serve`)")
    args = parser.parse_args(argv)

    from shared import deps, sync
    from shared.core import errors, scope, settings
    from shared.rotation import rotate as rotation_runner

    environ = {**os.environ, **(load_env_file(args.env_file) if args.env_file else {})}
    try:
        dependencies = deps.build_dependencies(settings.load_settings(environ))
    except errors.InvalidSettings as error:
        print(str(error), file=sys.stderr)
        return 2
    if args.command == "rotate":
        force = "ca" if args.force_ca else "certificate" if args.force else None
        rotated = rotation_runner.rotate(dependencies, dry_run=args.dry_run, force=force)
        print(json.dumps(rotated.to_json(), indent=2) if args.json else rotated.to_text())
        return 1 if rotated.failed else 0
    params = {k: v for k, v in (("namespace", args.namespace), ("service", args.service)) if v}
    request = scope.parse_resync_request(params, b"", cluster=dependencies.settings.kube.cluster_name)
    if isinstance(request, scope.BadRequest):
        print(f"{request.field}: {request.message}", file=sys.stderr)
        return 2
    report = sync.run(
        request.scope,
        dependencies,
        steps=sync.Steps.ALLOWLIST if args.command == "allowlist" else sync.Steps.ALL,
        dry_run=args.command == "plan" or args.dry_run,
        allow_mass_delete=args.allow_mass_delete,
    )
    print(json.dumps(report.to_json(), indent=2) if args.json else report.to_text())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
