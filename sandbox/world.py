"""Start both emulators on loopback and describe them as the app settings aks-apim-sync reads."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.apim import ApimEmulator
from sandbox.apim_tiers import INTEGRATION_SUBNET_PREFIX, V2_WITH_SUBNET
from sandbox.kube import KubeEmulator
from sandbox.tls import TlsFiles, make_tls_files

SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-sandbox"
SERVICE_NAME = "apim-sandbox"
CLUSTER_NAME = "aks-sandbox"
OWNER_ID = "sandbox-owner"
PUBLIC_AUTH_NAMED_VALUE = "aks-backend-token"
TENANCY_NAMESPACE, TENANCY_CONFIGMAP = "aks-apim-sync", "aks-apim-sync-tenancy"
AKS_RESOURCE_ID = (
    f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
    f"/providers/Microsoft.ContainerService/managedClusters/{CLUSTER_NAME}"
)


@dataclass
class World:
    directory: Path
    tls: TlsFiles
    apim: ApimEmulator
    kube: KubeEmulator
    kubeconfig: Path
    token: str
    owns_directory: bool = False
    """The world made its folder (kubeconfig with a token, TLS key): it removes it when stopped."""
    tier_settings: dict[str, str] = field(default_factory=dict)
    """Settings the APIM tier needs (a v2 tier in a subnet: that subnet's prefix)."""

    def use_tier(self, tier: str) -> None:
        """APIM of another tier from now on (sandbox.apim_tiers.TIERS), reset() included."""
        self.apim.default_tier = tier
        self.apim.set_tier(tier)
        self.tier_settings = {"ALLOWLIST_PRIVATE_PREFIXES": INTEGRATION_SUBNET_PREFIX} if tier in V2_WITH_SUBNET else {}

    def settings(self) -> dict[str, str]:
        """The app settings that point aks-apim-sync at this world."""
        return {
            "APIM_SUBSCRIPTION_ID": SUBSCRIPTION_ID,
            "APIM_RESOURCE_GROUP": RESOURCE_GROUP,
            "APIM_SERVICE_NAME": SERVICE_NAME,
            "ARM_ENDPOINT": self.apim.url,
            "ARM_CA_BUNDLE": str(self.tls.ca_cert),
            "SANDBOX_TOKEN": self.token,
            "CLUSTER_NAME": CLUSTER_NAME,
            "AKS_RESOURCE_ID": AKS_RESOURCE_ID,
            "OWNER_ID": OWNER_ID,
            "ANNOTATION_PREFIX": "apim-sync.io",
            "NAMESPACES": "",
            "SYNC_POLICY": "sync",
            "DEFAULT_MODE": "ingress",
            "KUBECONFIG": str(self.kubeconfig),
            "PUBLIC_AUTH_HEADER": "X-Apim-Backend-Token",
            "PUBLIC_AUTH_NAMED_VALUE": PUBLIC_AUTH_NAMED_VALUE,
            "MAX_RETRY_WAIT_SECONDS": "5",
            # The emulator's buckets refill in real time unless throttle(time_scale=...) says otherwise; the app's
            # model runs as fast so that tests not about pacing are not paced (the throttling tests set both).
            "ARM_PACING_TIME_SCALE": "1000",
            "PERIODIC_RESYNC_SCHEDULE": "0 */5 * * * *",
            "ROTATION_SCHEDULE": "0 0 3 * * *",
            **self.tier_settings,
        }

    def set_tenancy_policy(self, policy: dict[str, object] | None) -> None:
        """Write (or, with None, remove) the platform team's tenancy policy ConfigMap (see shared.core.tenancy)."""
        if policy is None:
            if self.kube.get("ConfigMap", TENANCY_NAMESPACE, TENANCY_CONFIGMAP) is not None:
                self.kube.remove("ConfigMap", TENANCY_NAMESPACE, TENANCY_CONFIGMAP)
            return
        self.kube.apply(
            {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {"name": TENANCY_CONFIGMAP, "namespace": TENANCY_NAMESPACE},
                "data": {"policy.yaml": json.dumps(policy, indent=2)},
            }
        )

    def write_env_file(self, extra: dict[str, str] | None = None) -> Path:
        path = self.directory / "sandbox.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in {**self.settings(), **(extra or {})}.items()))
        return path

    def reset(self) -> None:
        self.apim.reset()
        self.kube.reset()
        self.seed_platform()

    def seed_platform(self) -> None:
        """What the platform team made before installing the app: the Option 1 named value in APIM."""
        self.apim.put_named_value_directly(PUBLIC_AUTH_NAMED_VALUE)

    def stop(self) -> None:
        self.apim.stop()
        self.kube.stop()
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _kubeconfig(path: Path, server: str, ca: Path, token: str) -> None:
    ca_data = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: {CLUSTER_NAME}
  cluster:
    server: {server}
    certificate-authority-data: {ca_data}
users:
- name: sandbox
  user:
    token: {token}
contexts:
- name: {CLUSTER_NAME}
  context:
    cluster: {CLUSTER_NAME}
    user: sandbox
current-context: {CLUSTER_NAME}
"""
    )


def start_world(directory: Path | None = None) -> World:
    owns_directory = directory is None
    directory = directory or Path(tempfile.mkdtemp(prefix="aks-apim-sync-sandbox-"))
    tls = make_tls_files(directory / "tls")
    token = "sandbox-" + secrets.token_hex(8)
    apim = ApimEmulator(
        tls=tls, token=token, subscription_id=SUBSCRIPTION_ID, resource_group=RESOURCE_GROUP, service_name=SERVICE_NAME
    ).start()
    kube = KubeEmulator(tls=tls, token=token).start()
    assert isinstance(apim, ApimEmulator) and isinstance(kube, KubeEmulator)
    kube.installed_namespaces = (TENANCY_NAMESPACE,)  # the app's own namespace, made when it is installed
    kube.reset()
    kubeconfig = directory / "kubeconfig"
    _kubeconfig(kubeconfig, kube.url, tls.ca_cert, token)
    world = World(
        directory=directory, tls=tls, apim=apim, kube=kube, kubeconfig=kubeconfig, token=token, owns_directory=owns_directory
    )
    world.seed_platform()
    return world
