"""The real kubectl against the Kubernetes emulator, as an operator tries the sandbox: discovery, OpenAPI v3
(validation and client-side apply), server-side printing (Tables), apply, annotate, label, delete and
`get -w`; then the app follows what kubectl changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from sandbox.world import World
from shared import sync
from shared.core import naming
from shared.core.model import ServiceRef
from shared.core.scope import Scope
from shared.runtime.ports import Dependencies
from tests.conftest import service

SERVICE_YAML = """\
apiVersion: v1
kind: Service
metadata:
  name: payments
  namespace: shop
  annotations:
    apim-sync.io/expose: "true"
    apim-sync.io/mode: public
spec:
  type: LoadBalancer
  ports:
  - name: http
    port: 80
"""


@pytest.fixture(scope="module")
def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is missing (Debian: apt-get install kubernetes-client); under CI=true that fails")
        pytest.skip("kubectl is not installed")
    return found


def kubectl(world: World, binary: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [binary, "--kubeconfig", str(world.directory / "kubeconfig"), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603


def test_kubectl_get_lists_services_in_every_namespace_with_the_columns_a_real_cluster_prints(
    world: World, kubectl_binary: str
) -> None:
    world.kube.apply(service("orders"))
    done = kubectl(world, kubectl_binary, "get", "svc", "-A")
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert row.split()[:6] == ["shop", "orders", "LoadBalancer", "10.0.0.1", "52.0.0.10", "80/TCP"]


def test_kubectl_apply_creates_then_leaves_unchanged_then_updates_by_strategic_merge(world: World, kubectl_binary: str) -> None:
    missing_namespace = kubectl(world, kubectl_binary, "apply", "-f", "-", stdin=SERVICE_YAML)
    assert missing_namespace.returncode == 1 and 'namespaces "shop" not found' in missing_namespace.stderr
    assert kubectl(world, kubectl_binary, "create", "namespace", "shop").stdout.strip() == "namespace/shop created"
    first = kubectl(world, kubectl_binary, "apply", "-f", "-", stdin=SERVICE_YAML)
    again = kubectl(world, kubectl_binary, "apply", "-f", "-", stdin=SERVICE_YAML)
    changed = kubectl(world, kubectl_binary, "apply", "-f", "-", stdin=SERVICE_YAML.replace("port: 80", "port: 8080"))
    assert (first.stdout.strip(), again.stdout.strip(), changed.stdout.strip()) == (
        "service/payments created",
        "service/payments unchanged",
        "service/payments configured",
    ), first.stderr + again.stderr + changed.stderr
    stored = world.kube.get("Service", "shop", "payments")
    assert stored is not None
    assert [(p["name"], p["port"]) for p in stored["spec"]["ports"]] == [("http", 8080)]
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
    assert not any(key.startswith("$") for key in stored["spec"]), "patch directives are never stored"


def test_kubectl_annotate_label_and_delete_change_what_the_cluster_holds(world: World, kubectl_binary: str) -> None:
    world.kube.apply(service("orders"))
    annotated = kubectl(world, kubectl_binary, "annotate", "svc", "orders", "-n", "shop", "apim-sync.io/title=Orders")
    labelled = kubectl(world, kubectl_binary, "label", "svc", "orders", "-n", "shop", "team=checkout")
    assert annotated.returncode == 0 and labelled.returncode == 0, annotated.stderr + labelled.stderr
    stored = world.kube.get("Service", "shop", "orders")
    assert stored is not None
    assert stored["metadata"]["annotations"]["apim-sync.io/title"] == "Orders"
    assert stored["metadata"]["labels"] == {"team": "checkout"}
    deleted = kubectl(world, kubectl_binary, "delete", "svc", "orders", "-n", "shop")
    assert deleted.stdout.strip() == 'service "orders" deleted', deleted.stderr
    assert world.kube.get("Service", "shop", "orders") is None
    missing = kubectl(world, kubectl_binary, "get", "svc", "orders", "-n", "shop")
    assert missing.returncode == 1 and 'services "orders" not found' in missing.stderr


def test_kubectl_server_side_apply_creates_and_records_its_field_manager(world: World, kubectl_binary: str) -> None:
    kubectl(world, kubectl_binary, "create", "namespace", "shop")
    applied = kubectl(world, kubectl_binary, "apply", "--server-side", "-f", "-", stdin=SERVICE_YAML)
    assert applied.stdout.strip() == "service/payments serverside-applied", applied.stderr
    again = kubectl(world, kubectl_binary, "apply", "--server-side", "-f", "-", stdin=SERVICE_YAML.replace("public", "ingress"))
    assert again.returncode == 0, again.stderr
    stored = world.kube.get("Service", "shop", "payments")
    assert stored is not None and stored["metadata"]["annotations"]["apim-sync.io/mode"] == "ingress"
    assert [f["manager"] for f in stored["metadata"]["managedFields"]] == ["kubectl"]


def test_kubectl_get_watch_prints_a_service_created_while_it_watches(world: World, kubectl_binary: str) -> None:
    world.kube.apply(service("orders"))
    kubeconfig = str(world.directory / "kubeconfig")
    watching = subprocess.Popen(  # noqa: S603
        [kubectl_binary, "--kubeconfig", kubeconfig, "get", "svc", "-n", "shop", "-w"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("watch=true" in r.path for r in world.kube.log):
            time.sleep(0.05)
        world.kube.apply(service("payments"))
        time.sleep(1.0)
    finally:
        watching.terminate()
        out, _ = watching.communicate(timeout=10)
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == ["orders", "payments"], out


def test_a_service_applied_with_kubectl_is_published_by_the_next_run(
    world: World, kubectl_binary: str, make_deps: object
) -> None:
    kubectl(world, kubectl_binary, "create", "namespace", "shop")
    applied = kubectl(world, kubectl_binary, "apply", "-f", "-", stdin=SERVICE_YAML)
    assert applied.returncode == 0, applied.stderr
    stored = world.kube.get("Service", "shop", "payments")
    assert stored is not None
    world.kube.apply({**stored, "status": {"loadBalancer": {"ingress": [{"ip": "52.0.0.20"}]}}})  # the cloud provider's part
    deps: Dependencies = make_deps()  # type: ignore[operator]
    report = sync.run(Scope("aks-sandbox"), deps)
    assert not report.failed, report.to_text()
    backend = world.apim.backends[naming.backend_id_for(ServiceRef("aks-sandbox", "shop", "payments"))]
    assert backend["properties"]["url"] == "http://52.0.0.20"


def test_kubectl_describe_and_replace_work_as_on_a_cluster(world: World, kubectl_binary: str) -> None:
    world.kube.apply(service("payments"))
    described = kubectl(world, kubectl_binary, "describe", "svc", "payments", "-n", "shop")
    assert described.returncode == 0 and "LoadBalancer Ingress:  52.0.0.10" in described.stdout, described.stderr
    replaced = kubectl(world, kubectl_binary, "replace", "-f", "-", stdin=SERVICE_YAML.replace("mode: public", "title: Payments"))
    assert replaced.stdout.strip() == "service/payments replaced", replaced.stderr
    stored = world.kube.get("Service", "shop", "payments")
    assert stored is not None and stored["metadata"]["annotations"].get("apim-sync.io/title") == "Payments"
    assert "apim-sync.io/mode" not in stored["metadata"]["annotations"], "a replace is a whole new object"
