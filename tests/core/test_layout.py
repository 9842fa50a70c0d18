"""Which module may import which SDK: each SDK at exactly one adapter, azure.functions only in the triggers.

import-linter (run by `make test`) holds the layers of shared/; it sees every azure.* package as one, so the
per-SDK rule is read from the source here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent

OWNERS = {
    "azure.mgmt.apimanagement": {"shared/adapters/apim.py"},
    "kubernetes": {"shared/adapters/kube.py"},
    "azure.identity": {"shared/adapters/credentials.py"},
    "azure.storage.blob": {"shared/adapters/lease.py"},
    "azure.keyvault.secrets": {"shared/adapters/keyvault.py"},
    "opentelemetry": {"shared/adapters/telemetry.py"},
    "azure.monitor": {"shared/adapters/telemetry.py"},
}
"""In the Functions app. The watcher is a program of its own: it talks to Kubernetes itself and is the only
importer of azure-eventgrid."""


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def importers_of(package: str, *folders: str) -> set[str]:
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    return {
        str(p.relative_to(ROOT)) for p in files if any(m == package or m.startswith(package + ".") for m in imported_modules(p))
    }


def test_each_sdk_is_imported_by_exactly_one_adapter_module() -> None:
    for sdk, owners in OWNERS.items():
        assert importers_of(sdk, "shared", "functions") == owners, sdk
    assert importers_of("azure.eventgrid", "shared", "functions", "watcher") == {"watcher/publisher.py"}


def test_azure_functions_is_imported_only_by_the_triggers() -> None:
    importers = importers_of("azure.functions", "shared", "watcher")
    assert importers == set()
    assert "azure.functions" in imported_modules(ROOT / "function_app.py")


def test_only_adapters_import_azure_core() -> None:
    importers = importers_of("azure.core", "shared")
    assert importers and all(p.startswith("shared/adapters/") or p == "shared/deps.py" for p in importers), importers
