"""Check a live setup, changing nothing: a checklist with the fix for each failure.

Each check asks Azure or Kubernetes exactly what the enabled features need (shared.core.permissions): the
identity's effective ARM permissions on the APIM service, a SelfSubjectAccessReview per Kubernetes verb, the
lock's storage, Key Vault when configured. Reads only; a SelfSubjectAccessReview is an answer, never stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.allowlists import addresses
from shared.core import errors
from shared.core.permissions import ARM_OPERATIONS, Feature, allows, arm_actions, enabled_features, kube_rules
from shared.core.settings import Settings, load_settings
from shared.runtime.ports import Dependencies

FIXES_BY_SETTING = "set it in the Function App's settings (infra/main.bicep sets every one; README, Configuration)"
ROLE_FIX = (
    "add the missing actions to the app's custom role on the APIM instance (infra/modules/apim-access.bicep) and "
    "redeploy, or `az role definition update`; the identity is the Function App's (AZURE_CLIENT_ID)"
)
RBAC_FIX = (
    "apply deploy/kubernetes/app-rbac.yaml with the role of feature '{feature}' bound to the app identity's object id "
    "(infra output appIdentityPrincipalId)"
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None
    """None: not applicable or not checked (the detail says why)."""
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"check": self.name, "ok": self.ok, "detail": self.detail}
        if self.fix:
            shown["fix"] = self.fix
        return shown


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(check.ok is False for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.failed, "checks": [check.to_json() for check in self.checks]}

    def to_text(self) -> str:
        marks = {True: "ok  ", False: "FAIL", None: "--  "}
        lines = ["aks-apim-sync doctor"]
        for check in self.checks:
            lines.append(f"  {marks[check.ok]} {check.name}: {check.detail}")
            if check.fix:
                lines.append(f"       fix: {check.fix}")
        lines.append("  all checks passed" if not self.failed else "  some checks failed: see the fixes above")
        return "\n".join(lines)


def run(environ: Mapping[str, str], build: Callable[[Settings], Dependencies] | None = None) -> DoctorReport:
    """Settings first (each wrong one named, never its value); then every other check with the dependencies."""
    try:
        loaded = load_settings(environ)
        if build is None:
            from shared.deps import build_dependencies

            build = build_dependencies
        dependencies = build(loaded)
    except errors.InvalidSettings as invalid:
        named = "; ".join(f"{name}: {why}" for name, why in invalid.problems)
        return DoctorReport((Check("settings", False, named, FIXES_BY_SETTING),))
    return diagnose(dependencies)


def diagnose(deps: Dependencies) -> DoctorReport:
    """Every check after the settings; each one runs whatever the others found."""
    settings = deps.settings
    features = enabled_features(settings)
    checks = [_settings_check(settings)]
    service = _attempt(checks, "APIM service", deps.apim_service.get_service, _apim_fix)
    if service is not None:
        sku = (service.get("sku") or {}).get("name", "?")
        checks.append(Check("APIM service", True, f"{settings.apim.service_name} reachable with an ARM token; tier {sku}"))
        if Feature.ALLOWLISTS in features:
            checks.append(_addresses_check(service, settings))
    if Feature.PUBLIC_AUTH in features and settings.public_auth.named_value:
        checks.append(_named_value_check(deps, settings.public_auth.named_value))
    checks.append(_arm_permissions_check(deps, features))
    checks += _kubernetes_checks(deps, features)
    checks += _storage_and_vault_checks(deps, features)
    checks.append(
        Check(
            "event subscriptions",
            None,
            "not checked: reading them needs Microsoft.EventGrid read rights the app's identity does not hold; "
            "infra/ creates them pointing at on_event",
        )
    )
    return DoctorReport(tuple(checks))


def _settings_check(settings: Settings) -> Check:
    features = ", ".join(sorted(f.value for f in enabled_features(settings)))
    return Check("settings", True, f"valid; features: {features}")


def _attempt(checks: list[Check], name: str, call: Callable[[], Any], fix: Callable[[errors.SyncError], str]) -> Any:
    try:
        return call()
    except errors.SyncError as error:
        checks.append(Check(name, False, str(error), fix(error)))
        return None


def _apim_fix(error: errors.SyncError) -> str:
    if isinstance(error, errors.AccessDenied) and "token" in str(error):
        return "give the Function App its managed identity and set AZURE_CLIENT_ID to its client id"
    if isinstance(error, errors.AccessDenied):
        return ROLE_FIX
    if isinstance(error, errors.NotFound):
        return "check APIM_SUBSCRIPTION_ID, APIM_RESOURCE_GROUP and APIM_SERVICE_NAME"
    return "ARM did not answer; try again, and check ARM_ENDPOINT"


def _addresses_check(service: dict[str, Any], settings: Settings) -> Check:
    usable = addresses.allowed_cidrs(addresses.addresses_from_service(service), settings.allowlist.policy)
    if isinstance(usable, addresses.NoUsableAddresses):
        return Check(
            "APIM addresses for allow-lists",
            False,
            usable.why,
            "set ALLOWLIST_ADDRESSES (and ALLOWLIST_PRIVATE_PREFIXES for an injected APIM), or ALLOWLIST_ENABLED=false",
        )
    return Check("APIM addresses for allow-lists", True, ", ".join(usable))


def _named_value_check(deps: Dependencies, name: str) -> Check:
    try:
        exists = deps.apim_service.named_value_exists(name)
    except errors.SyncError as error:
        return Check("Option 1 named value", False, str(error), ROLE_FIX)
    if not exists:
        return Check(
            "Option 1 named value",
            False,
            f"named value '{name}' does not exist in APIM: every public backend's credential header would be empty",
            f"create the secret named value '{name}' in APIM (or a Key Vault reference), or unset PUBLIC_AUTH_NAMED_VALUE",
        )
    return Check("Option 1 named value", True, f"'{name}' exists")


def _arm_permissions_check(deps: Dependencies, features: frozenset[Feature]) -> Check:
    try:
        granted, denied = deps.apim_service.effective_permissions()
    except errors.SyncError as error:
        return Check("ARM permissions on APIM", False, str(error), ROLE_FIX)
    missing = [action for action in arm_actions(features) if not allows(granted, denied, action)]
    if missing:
        calls = sorted({op.sdk_call for op in ARM_OPERATIONS if op.action in missing})
        detail = f"missing {', '.join(missing)} (used by {', '.join(calls)})"
        return Check("ARM permissions on APIM", False, detail, ROLE_FIX)
    return Check("ARM permissions on APIM", True, f"all {len(arm_actions(features))} actions the features need")


def _kubernetes_checks(deps: Dependencies, features: frozenset[Feature]) -> list[Check]:
    if deps.access is None:
        return [Check("Kubernetes API server", None, "no access probe in this build")]
    try:
        version = deps.access.server_version()
    except errors.SyncError as error:
        return [Check("Kubernetes API server", False, str(error), "check AKS_API_SERVER and AKS_CA_CERT (or KUBECONFIG)")]
    checks = [Check("Kubernetes API server", True, f"answers ({version})")]
    namespace = deps.settings.mtls.namespace
    for rule in kube_rules(features):
        where = namespace if rule.namespaced else ""
        denied: list[str] = []
        for verb in rule.verbs:
            try:
                if not deps.access.may(verb, rule.group, rule.resource, where):
                    denied.append(verb)
            except errors.SyncError as error:
                return [*checks, Check("Kubernetes RBAC", False, str(error), "check the cluster's API server is reachable")]
        resource = f"{rule.resource}{'.' + rule.group if rule.group else ''}"
        scope = f"in {namespace}" if rule.namespaced else "in every namespace"
        name = f"Kubernetes {resource} ({', '.join(rule.verbs)}) {scope}"
        if denied:
            feature = sorted(f.value for f in rule.features & features)[0]
            detail = f"not allowed: {', '.join(denied)} ({rule.why})"
            checks.append(Check(name, False, detail, RBAC_FIX.format(feature=feature)))
        else:
            checks.append(Check(name, True, "allowed"))
    return checks


def _storage_and_vault_checks(deps: Dependencies, features: frozenset[Feature]) -> list[Check]:
    checks: list[Check] = []
    if Feature.ROTATION in features:
        if deps.lock_probe is None:
            checks.append(
                Check(
                    "rotation lock storage",
                    False,
                    "no storage configured for the rotation lock",
                    "set AzureWebJobsStorage__accountName (with the identity) or AzureWebJobsStorage",
                )
            )
        else:
            fix = "grant the app identity Storage Blob Data Owner on the Functions storage account (infra/main.bicep does)"
            checks.append(_readable("rotation lock storage", deps.lock_probe, "the lock container is reachable", fix))
    vault_fix = "grant the app identity Key Vault Secrets Officer (CA) or Key Vault Secrets User (certificate) on the vault"
    if deps.ca_store is not None:
        checks.append(_readable("Key Vault (CA)", deps.ca_store.read, "the CA secret is readable", vault_fix))
    if deps.keyvault_certificate is not None:
        read = deps.keyvault_certificate.version
        checks.append(_readable("Key Vault (certificate)", read, "the certificate's secret is readable", vault_fix))
    return checks


def _readable(name: str, read: Callable[[], object], detail: str, fix: str) -> Check:
    """One read that must succeed: passed with `detail`, or failed with the error and `fix`."""
    try:
        read()
    except errors.SyncError as error:
        return Check(name, False, str(error), fix)
    return Check(name, True, detail)
