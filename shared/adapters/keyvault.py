"""The CA kept in an Azure Key Vault secret instead of a Kubernetes Secret; the only module importing
azure-keyvault-secrets.

One secret holds every CA in use as JSON ({"cas": {"<id>": {"crt": PEM, "key": PEM}}}); each write is a new
secret version, so Key Vault keeps the history. The rotation lock is what serialises writers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import TokenCredential
from azure.keyvault.secrets import SecretClient

from shared.adapters.azure_errors import keyvault
from shared.core import errors
from shared.runtime.ports import SecretVersion


class KeyVaultCaStore:
    def __init__(self, vault_url: str, secret_name: str, credential: TokenCredential, *, ca_bundle: str | None = None) -> None:
        self._client = SecretClient(
            vault_url, credential, verify_challenge_resource=ca_bundle is None, retry_total=0, connection_verify=ca_bundle or True
        )
        self._name = secret_name
        self.where = f"Key Vault secret {secret_name}"

    def read(self) -> dict[str, tuple[bytes, bytes]]:
        try:
            with keyvault(self.where):
                secret = self._client.get_secret(self._name)
        except errors.NotFound:
            return {}
        try:
            cas = json.loads(secret.value or "{}").get("cas") or {}
        except ValueError:
            raise errors.RemoteRejected(f"{self.where} does not hold the CA document aks-apim-sync writes") from None
        return {ca_id: (entry["crt"].encode(), entry["key"].encode()) for ca_id, entry in cas.items()}

    def write(self, current: Mapping[str, tuple[bytes, bytes]], changes: Mapping[str, tuple[bytes, bytes] | None]) -> None:
        merged: dict[str, Any] = {k: {"crt": c.decode(), "key": k_.decode()} for k, (c, k_) in current.items()}
        for ca_id, material in changes.items():
            if material is None:
                merged.pop(ca_id, None)
            else:
                merged[ca_id] = {"crt": material[0].decode(), "key": material[1].decode()}
        with keyvault(self.where):
            self._client.set_secret(self._name, json.dumps({"cas": merged}), content_type="application/json")


class KeyVaultCertificateSecret:
    """The secret behind a Key Vault certificate (PFX or PEM, with its chain), read by version."""

    def __init__(self, secret_id: str, credential: TokenCredential, *, ca_bundle: str | None = None) -> None:
        vault_url, _, rest = secret_id.rstrip("/").partition("/secrets/")
        self.secret_id = secret_id.rstrip("/")
        self._name = rest.split("/")[0]
        self._client = SecretClient(
            vault_url, credential, verify_challenge_resource=ca_bundle is None, retry_total=0, connection_verify=ca_bundle or True
        )
        self.where = f"Key Vault certificate {self._name}"

    def version(self, version: str | None = None) -> SecretVersion:
        with keyvault(self.where):
            secret = self._client.get_secret(self._name, version)
        found = str(secret.properties.version or "")
        return SecretVersion(version=found, value=secret.value or "", content_type=secret.properties.content_type)
