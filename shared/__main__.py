"""`python -m shared`: the engine from a terminal, as the HTTP endpoints and timers run it.

Exit status, as terraform's (`plan -detailed-exitcode`) for plan:
  plan       0 no changes, 2 changes planned, 1 error
  sync       0 done, 1 error (some change or read failed)
  allowlist  0 done (or nothing to change), 2 changes planned (--dry-run), 1 error
  rotate     0 done, 2 steps planned (--dry-run), 1 error
Errors (bad settings, a missing env file, a wrong argument) are exit 1 too, printed as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

EXAMPLES = {
    "plan": "python -m shared plan --env-file sandbox.env                  # what sync would do; exit 2 when it would change",
    "sync": "python -m shared sync --namespace shop --service orders --json",
    "allowlist": "python -m shared allowlist --dry-run                        # only the allow-list step",
    "rotate": "python -m shared rotate --dry-run                           # the next mTLS rotation steps",
    "doctor": "python -m shared doctor                                     # check identity, roles, RBAC, storage",
}
NEXT_STEP = {
    "InvalidSettings": "fix the settings named above (README, Configuration), or pass --env-file",
    "EnvFile": "pass the dotenv file `python -m sandbox serve` printed, or set the settings in the environment",
    "BadRequest": "see `python -m shared <command> --help`",
}


class CliError(Exception):
    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.field = reason, message, field


def load_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines as a shell would read them: `export` prefixes, single or double quotes, # comments."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise CliError("EnvFile", f"cannot read --env-file {path}: {error.strerror or type(error).__name__}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise CliError("EnvFile", f"{path}, line {number}: expected KEY=VALUE", field=f"line {number}")
        try:
            words = shlex.split(value, comments=True)
        except ValueError:
            raise CliError("EnvFile", f"{path}, line {number}: unbalanced quotes", field=f"line {number}") from None
        values[key.strip()] = " ".join(words)
    return values


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is exit 1 (2 means 'changes planned') and JSON when --json was asked for."""

    def error(self, message: str) -> NoReturn:
        raise CliError("BadRequest", message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m shared",
        description="Keep APIM in step with the cluster, from a terminal. Commands: plan, sync, allowlist, rotate, doctor.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()) + "\n\n" + (__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{plan,sync,allowlist,rotate,doctor}")
    helps = {
        "plan": "show what sync would do (backends, APIs, allow-lists); writes nothing",
        "sync": "reconcile backends, APIs and allow-lists now",
        "allowlist": "refresh only the IP allow-lists of the cluster's entry points",
        "rotate": "run the mTLS certificate rotation (needs AzureWebJobsStorage for its lock)",
        "doctor": "check a live setup (settings, identity, permissions, RBAC, storage, Key Vault); changes nothing",
    }
    for name, text in helps.items():
        command = commands.add_parser(
            name,
            help=text,
            description=text,
            epilog=f"example:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument("--env-file", help="read settings from this dotenv file (as `python -m sandbox serve` writes it)")
        command.add_argument("--json", action="store_true", help="print the report, or the error, as JSON")
        if name in ("allowlist", "rotate"):
            command.add_argument("--dry-run", action="store_true", help="plan only; write nothing")
        if name in ("plan", "sync", "allowlist"):
            command.add_argument("--namespace", help="only this namespace")
            command.add_argument("--service", help="only this Service (needs --namespace)")
        if name == "sync":
            command.add_argument("--allow-mass-delete", action="store_true", help="switch the delete cap off for this run")
        if name == "rotate":
            command.add_argument("--force", action="store_true", help="issue a new client certificate now")
            command.add_argument("--force-ca", action="store_true", help="start a CA rotation now")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in arguments
    try:
        return _run(_parser().parse_args(arguments))
    except CliError as error:
        _print_error(error, as_json)
        return 1


def _print_error(error: CliError, as_json: bool) -> None:
    shown: dict[str, Any] = {"reason": error.reason, "message": error.message}
    if error.field:
        shown["field"] = error.field
    if NEXT_STEP.get(error.reason):
        shown["next"] = NEXT_STEP[error.reason]
    if as_json:
        print(json.dumps({"error": shown}, indent=2))
    else:
        print(f"error ({error.reason}): {error.message}", file=sys.stderr)
        if "next" in shown:
            print(f"next: {shown['next']}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from shared import deps, sync
    from shared.core import errors, scope, settings
    from shared.rotation import rotate

    environ = {**os.environ, **(load_env_file(args.env_file) if args.env_file else {})}
    if args.command == "doctor":
        from shared import doctor

        checked = doctor.run(environ)
        _print(checked.to_json(), checked.to_text(), args.json)
        return 1 if checked.failed else 0
    try:
        dependencies = deps.build_dependencies(settings.load_settings(environ))
    except errors.InvalidSettings as error:
        raise CliError("InvalidSettings", str(error)) from None
    dry_run = args.command == "plan" or getattr(args, "dry_run", False)
    if args.command == "rotate":
        force = "ca" if args.force_ca else "certificate" if args.force else None
        rotated = rotate.rotate(dependencies, dry_run=dry_run, force=force)
        _print(rotated.to_json(), rotated.to_text(), args.json)
        if rotated.failed:
            return 1
        return 2 if dry_run and rotated.steps else 0
    params = {k: v for k, v in (("namespace", args.namespace), ("service", args.service)) if v}
    request = scope.parse_resync_request(params, b"", cluster=dependencies.settings.kube.cluster_name)
    if isinstance(request, scope.BadRequest):
        raise CliError("BadRequest", f"--{request.field}: {request.message}", field=request.field)
    report = sync.run(
        request.scope,
        dependencies,
        steps=sync.Steps.ALLOWLIST if args.command == "allowlist" else sync.Steps.ALL,
        dry_run=dry_run,
        allow_mass_delete=getattr(args, "allow_mass_delete", False),
    )
    _print(report.to_json(), report.to_text(), args.json)
    if report.failed:
        return 1
    return 2 if dry_run and report.has_changes else 0


def _print(shown: dict[str, Any], text: str, as_json: bool) -> None:
    print(json.dumps(shown, indent=2) if as_json else text)


if __name__ == "__main__":
    sys.exit(main())
