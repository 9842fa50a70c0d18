"""`python -m sandbox demo | serve [--seed] | apply`.

serve: start the emulators on loopback (and Azurite when installed), write a dotenv file of the app settings and
print its path and the commands to try; runs until stopped, then removes every folder it made. --seed starts with
the demo world. apply: create or replace Services, Ingresses and ConfigMaps from YAML files, as kubectl would.
demo: seed a small cluster, resync through the real `resync` HTTP handler, print the report and APIM's
backends, then resync again to show that the second run plans and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sandbox.apim_tiers import TIERS
from sandbox.world import World, start_world


def _service(name: str, namespace: str, annotations: dict[str, str], *, ip: str | None, port: int = 443) -> dict[str, Any]:
    """Public Services serve https: APIM's Option 1 token is never sent over plain http (see the tenancy rules)."""
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": {"apim-sync.io/expose": "true", **annotations}},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "https" if port == 443 else "http", "port": port}]},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]} if ip else {}},
    }


DENY_ALL_EXCEPT = {"service.beta.kubernetes.io/azure-deny-all-except-load-balancer-source-ranges": "true"}


RECOMMENDED_OPTION_1 = {
    "PUBLIC_AUTH_MODE": "managed-identity",
    "PUBLIC_AUTH_AUDIENCE": "api://aks-sandbox-backends",
    "PUBLIC_AUTH_HEADER": "",
    "PUBLIC_AUTH_NAMED_VALUE": "",
}
"""The demo shows Option 1 as README recommends it: APIM's managed identity, no shared secret."""

DEMO_SETTINGS = {**RECOMMENDED_OPTION_1, "ROUTE_KINDS": "Ingress,HTTPRoute"}
"""And both route kinds: the catalog through an Ingress, the invoices through a Gateway API HTTPRoute."""

DEMO_POLICY: dict[str, object] = {
    "default": {"modes": ["ingress", "internal"]},
    "namespaces": {
        "shop": {"modes": ["public", "ingress"], "apiPathPrefixes": ["orders", "catalog"]},
        "finance": {"modes": ["internal"]},
    },
}
"""The platform team's tenancy policy for the demo world: what each namespace may ask of APIM."""


def seed(world: World) -> None:
    world.set_tenancy_policy(DEMO_POLICY)
    kube = world.kube
    kube.apply(_service("orders", "shop", {"apim-sync.io/mode": "public", **DENY_ALL_EXCEPT}, ip="20.50.1.10"))
    kube.apply(
        _service(
            "ledger",
            "finance",
            {"apim-sync.io/mode": "internal", "service.beta.kubernetes.io/azure-load-balancer-internal": "true"},
            ip="10.240.0.7",
            port=8080,
        )
    )
    catalog = _service("catalog", "shop", {"apim-sync.io/mode": "ingress", "apim-sync.io/title": "Catalog"}, ip=None)
    catalog["spec"]["type"] = "ClusterIP"
    kube.apply(catalog)
    kube.apply(
        {
            "kind": "Ingress",
            "metadata": {"name": "shop", "namespace": "shop"},
            "spec": {
                "tls": [{"hosts": ["api.contoso.example"], "secretName": "shop-tls"}],
                "rules": [
                    {
                        "host": "api.contoso.example",
                        "http": {
                            "paths": [
                                {
                                    "path": "/catalog",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "catalog", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        }
    )
    kube.apply(_service("search", "shop", {"apim-sync.io/mode": "public", **DENY_ALL_EXCEPT}, ip=None))
    kube.apply(_service("broken", "shop", {"apim-sync.io/mode": "public", "apim-sync.io/port": "grpc"}, ip="20.50.1.11"))
    kube.apply(
        _service(
            "payments",
            "shop",
            {"apim-sync.io/mode": "public", "apim-sync.io/backend-id": "payments", **DENY_ALL_EXCEPT},
            ip="20.50.1.12",
        )
    )
    # Fig. 1 of the guidance: operations on one resource split across Services, published as one API.
    api = {
        "apim-sync.io/mode": "public",
        "apim-sync.io/api-id": "orders",
        "apim-sync.io/api-display-name": "Orders",
        **DENY_ALL_EXCEPT,
    }
    kube.apply(_service("order-reader", "shop", {**api, "apim-sync.io/operations": "GET /orders/{id}"}, ip="20.50.1.20"))
    kube.apply(_service("order-writer", "shop", {**api, "apim-sync.io/operations": "POST /orders"}, ip="20.50.1.21"))
    world.apim.put_backend_directly(
        "payments", {"url": "https://payments.legacy.example", "protocol": "http", "description": "Created by hand in the portal"}
    )
    # The Gateway API, as AKS now recommends after ingress-nginx (approuting-istio): invoices through an HTTPRoute.
    invoices = _service("invoices", "shop", {"apim-sync.io/mode": "ingress", "apim-sync.io/title": "Invoices"}, ip=None)
    invoices["spec"]["type"] = "ClusterIP"
    kube.apply(invoices)
    listener = {
        "name": "https",
        "protocol": "HTTPS",
        "port": 443,
        "hostname": "*.contoso.example",
        "tls": {"mode": "Terminate", "certificateRefs": [{"name": "contoso-wildcard"}]},
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    }
    edge = {"gatewayClassName": "approuting-istio", "listeners": [listener]}
    kube.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "shop"},
            "spec": edge,
        }
    )
    rule = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/invoices"}}],
        "backendRefs": [{"name": "invoices", "port": 80}],
    }
    route = {"parentRefs": [{"name": "edge"}], "hostnames": ["api.contoso.example"], "rules": [rule]}
    kube.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "invoices", "namespace": "shop"},
            "spec": route,
        }
    )


def _resync_via_handler() -> dict[str, Any]:
    import azure.functions as func

    from functions.resync import resync

    request = func.HttpRequest("POST", "http://localhost:7071/api/resync", params={}, body=b"")
    response = resync.build().get_user_function()(request)
    report: dict[str, Any] = json.loads(response.get_body())
    report["http_status"] = response.status_code
    return report


def _print_report(title: str, report: dict[str, Any]) -> None:
    symbol = {"create": "+", "update": "~", "delete": "-"}
    print(f"\n== {title}: HTTP {report['http_status']}")
    for change in report["changes"]:
        print(f"  {symbol[change['action']]} backend {change['id']} ({change['source']}) -> {change['outcome']}")
        for field, (before, after) in change["diff"].items():
            print(f"      {field}: {before!r} -> {after!r}")
    for refusal in report["refusals"]:
        print(f"  ! backend {refusal['id']} refused ({refusal['reason']}): {refusal['message']}")
    for pending in report["pending"]:
        print(f"  … {pending['object']} pending ({pending['reason']}): {pending['message']}")
    for error in report["errors"]:
        print(f"  x {error.get('object', '')} {error.get('field', '')} ({error['reason']}): {error['message']}")
    allowlists = report.get("allowlists") or {}
    for change in allowlists.get("changes", []):
        fields = ", ".join(change["fields"])
        print(f"  ~ {change['object']} {fields}: {change['before']!r} -> {change['after']!r} ({change['reason']})")
    for warning in allowlists.get("warnings", []):
        print(f"  ! {warning['object']} ({warning['reason']}): {warning['message']}")
    if allowlists.get("error"):
        print(f"  x allow-lists ({allowlists['error']['reason']}): {allowlists['error']['message']}")
    for change in (report.get("apis") or {}).get("changes", []):
        target = f" {change['target']}" if change.get("target") else ""
        print(f"  {change['action']} {change['kind']} {change['api']}{target} -> {change['outcome']}")
    for problem in (report.get("apis") or {}).get("problems", []):
        print(f"  ! {problem['object']} ({problem['reason']}): {problem['message']}")
    print(f"  counts: {json.dumps(report['counts'])}")
    print(f"  requests: {json.dumps(report['requests'])}, {report['duration_ms']} ms")


def demo(tier: str = "Developer") -> int:
    world = start_world()
    world.use_tier(tier)
    try:
        os.environ.update({**world.settings(), **DEMO_SETTINGS})
        seed(world)
        first = _resync_via_handler()
        _print_report("first resync (through the resync HTTP handler)", first)
        print("\n== APIM backends now")
        for backend_id, backend in sorted(world.apim.backends.items()):
            print(f"  {backend_id:40} {backend['properties']['url']}")
        _print_apis(world)
        world.apim.clear_log()
        world.kube.clear_log()
        second = _resync_via_handler()
        _print_report("second resync", second)
        writes = len(world.apim.writes()) + len(world.kube.writes())
        print(f"\nsecond run: {writes} writes to APIM or Kubernetes")
        _rotation_plan()
        followed = _event_driven_change(world)
        # A tier without a stable address fails the allow-list step, as it would in Azure: the demo shows that.
        no_stable_address = (first.get("allowlists") or {}).get("error", {}).get("reason") == "NoStableApimAddress"
        first_ok = first["http_status"] == 200 or no_stable_address
        return 0 if writes == 0 and first_ok and followed else 1
    finally:
        world.stop()


def _rotation_plan() -> None:
    """What the first certificate rotation would do (a dry run needs no lock, so no storage account)."""
    from shared import deps
    from shared.rotation import rotate as rotation_runner

    report = rotation_runner.rotate(deps.dependencies(), dry_run=True)
    print("\n== mTLS rotation, dry run (POST /api/rotate?dryRun=true)")
    print("\n".join(report.to_text().splitlines()[1:]))


def _print_apis(world: World) -> None:
    from shared.apis import claims as apis

    store = world.apim.api_side
    print("\n== APIM APIs now (each operation and the backend its policy routes to)")
    for api_id, api in sorted(store.apis.items()):
        properties = api["properties"]
        print(f"  API {api_id} /{properties['path']}  subscription required: {properties['subscriptionRequired']}")
        for (owner, op_id), operation in sorted(store.operations.items()):
            if owner == api_id:
                route = apis.policy_routing(store.api_policies.get(api_id)).route_for(op_id)
                routed, audience = (route.backend_id, route.audience) if route else (None, None)
                token = f"  (APIM's managed-identity token for {audience})" if audience else ""
                print(f"    {operation['properties']['method']:6} {operation['properties']['urlTemplate']:18} -> {routed}{token}")


def _event_driven_change(world: World) -> bool:
    """The watcher sees a Service change and publishes it; the topic delivers it to on_event; APIM follows."""
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter

    from sandbox.eventgrid import EventGridTopic
    from watcher.__main__ import Running
    from watcher.settings import WatcherSettings

    function_app = __import__("function_app")
    on_event = next(f for f in function_app.app.get_functions() if f.get_function_name() == "on_event").get_user_function()
    delivered: list[str] = []

    def deliver(event: dict[str, Any]) -> None:
        delivered.append(f"{event['type']} {event.get('subject', '')}")
        on_event(EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={}))

    topic = EventGridTopic(tls=world.tls, key="sandbox-topic-key", token=world.token).start()
    topic.subscribe(deliver)
    settings = WatcherSettings(
        cluster_name=world.settings()["CLUSTER_NAME"],
        topic_endpoint=topic.url + "/api/events",
        topic_key="sandbox-topic-key",
        source=f"urn:aks-apim-sync:watcher:{world.settings()['CLUSTER_NAME']}",
        kubeconfig=str(world.kubeconfig),
        coalesce_seconds=0.2,
        watch_timeout_seconds=5,
        ca_bundle=str(world.tls.ca_cert),
    )
    running = Running(settings)
    try:
        running.watcher.ready.wait(10)
        deadline = time.monotonic() + 10
        while (running.outbox.published == 0 or running.outbox.pending) and time.monotonic() < deadline:
            time.sleep(0.05)  # the watcher's start-up resync goes out first
        topic.wait_until_idle()
        world.apim.clear_log()
        world.kube.clear_log()
        delivered.clear()
        print("\n== event-driven: the load balancer of shop/orders gets a new address (20.50.1.99)")
        orders = world.kube.get("Service", "shop", "orders")
        assert orders is not None
        orders["status"] = {"loadBalancer": {"ingress": [{"ip": "20.50.1.99"}]}}
        world.kube.apply(orders)
        backend = next(b for b in world.apim.backends.values() if "shop/orders" in b["properties"].get("description", ""))
        deadline = time.monotonic() + 15
        while backend["properties"]["url"] != "https://20.50.1.99" and time.monotonic() < deadline:
            time.sleep(0.05)
            backend = next(b for b in world.apim.backends.values() if "shop/orders" in b["properties"].get("description", ""))
        topic.wait_until_idle()
        for line in delivered:
            print(f"  event delivered to on_event: {line}")
        print(f"  backend url now: {backend['properties']['url']}")
        arm = [f"{r.method} {r.path.split('?')[0].rsplit('/', 2)[-2:]}" for r in world.apim.log]
        kube = [f"{r.method} {r.path.split('?')[0]}" for r in world.kube.log if "watch=" not in r.path]
        print(f"  requests for this event: ARM {len(arm)}, Kubernetes {len(kube)} (no list of all Services or backends)")
        return bool(backend["properties"]["url"] == "https://20.50.1.99")
    finally:
        running.stop()
        topic.stop()


def serve(*, seed_demo: bool, tier: str = "Developer") -> int:
    """Run the emulators (and Azurite, when installed, so rotation has its lock) until SIGINT or SIGTERM; every
    folder the sandbox made (kubeconfig with its token, TLS key, Azurite's data) is removed on the way out."""
    from sandbox.tools import find_azurite, start_azurite

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    world = start_world()
    world.use_tier(tier)
    azurite_binary = find_azurite()
    azurite = start_azurite(azurite_binary) if azurite_binary else None
    try:
        extra = {"ROUTE_KINDS": "Ingress,HTTPRoute", **({"AzureWebJobsStorage": azurite.connection_string} if azurite else {})}
        env_file = world.write_env_file(extra)
        if seed_demo:
            seed(world)
        python = sys.executable
        print(f"ARM emulator: {world.apim.url}\nKubernetes emulator: {world.kube.url}\nsettings: {env_file}")
        print(f"world: {'the demo world (--seed)' if seed_demo else 'empty'}, APIM tier {tier}; stop with Ctrl+C")
        print(f"\ntry, in {Path(__file__).resolve().parent.parent}:")
        print(f"  {python} -m shared plan --env-file {env_file}")
        print(f"  {python} -m sandbox apply --env-file {env_file} service.yaml   # add or change Services, Ingresses")
        print(f"  {python} -m shared sync --env-file {env_file}")
        print(f"  kubectl --kubeconfig {world.kubeconfig} get svc -A   # or apply, annotate, delete, get -w: as on a cluster")
        if azurite:
            print(f"  {python} -m shared rotate --dry-run --env-file {env_file}")
        else:
            print("  (rotate needs Azurite for its lock: `make tools` installs it)")
        sys.stdout.flush()
        stop.wait()
        return 0
    finally:
        if azurite:
            azurite.stop()
        world.stop()


def apply(env_file: str, manifests: list[str]) -> int:
    """Create or replace each object of the YAML files in the sandbox's Kubernetes, as `kubectl apply` would."""
    import yaml
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from shared.__main__ import CliError, load_env_file

    try:
        settings = load_env_file(env_file)
    except CliError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    api = config.new_client_from_config(config_file=settings["KUBECONFIG"])  # type: ignore[no-untyped-call]
    core, networking = client.CoreV1Api(api), client.NetworkingV1Api(api)  # type: ignore[no-untyped-call]
    kinds: dict[str, tuple[Any, Any, Any]] = {
        "Service": (core.read_namespaced_service, core.create_namespaced_service, core.replace_namespaced_service),
        "ConfigMap": (core.read_namespaced_config_map, core.create_namespaced_config_map, core.replace_namespaced_config_map),
        "Ingress": (
            networking.read_namespaced_ingress,
            networking.create_namespaced_ingress,
            networking.replace_namespaced_ingress,
        ),
    }
    for path in manifests:
        with open(path, encoding="utf-8") as handle:
            documents = [d for d in yaml.safe_load_all(handle) if d]
        for document in documents:
            kind, metadata = document.get("kind"), document.get("metadata") or {}
            namespace, name = str(metadata.get("namespace", "default")), str(metadata.get("name"))
            if kind not in kinds:
                print(f"error: {path}: kind {kind} is not one the sandbox serves ({', '.join(kinds)})", file=sys.stderr)
                return 1
            read, create, replace = kinds[kind]
            try:
                current = read(name, namespace)
                document["metadata"]["resourceVersion"] = current.metadata.resource_version
                replace(name, namespace, document)
                print(f"{kind.lower()}/{name} configured")
            except ApiException as error:
                if error.status != 404:
                    print(f"error: {kind} {namespace}/{name}: {error.status} {error.reason}", file=sys.stderr)
                    return 1
                create(namespace, document)
                print(f"{kind.lower()}/{name} created")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local emulators of APIM (ARM), Kubernetes, Key Vault and Event Grid for trying aks-apim-sync.",
        epilog=(
            "examples:\n  python -m sandbox demo\n  python -m sandbox serve --seed\n"
            "  python -m sandbox apply --env-file <settings file serve printed> service.yaml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    tier_help = f"the APIM tier the ARM emulator serves (default Developer): {', '.join(TIERS)}"
    demoed = commands.add_parser("demo", help="seed a cluster, sync twice, show a rotation plan and an event-driven change")
    demoed.add_argument("--tier", choices=TIERS, default="Developer", metavar="TIER", help=tier_help)
    served = commands.add_parser("serve", help="run the emulators until stopped; prints the settings file to use")
    served.add_argument("--seed", action="store_true", help="start with the demo world (Services, an Ingress, a policy)")
    served.add_argument("--tier", choices=TIERS, default="Developer", metavar="TIER", help=tier_help)
    applied = commands.add_parser("apply", help="create or replace Services, Ingresses or ConfigMaps from YAML files")
    applied.add_argument("--env-file", required=True, help="the settings file `serve` printed")
    applied.add_argument("manifests", nargs="+")
    args = parser.parse_args()
    if args.command == "demo":
        return demo(args.tier)
    if args.command == "serve":
        return serve(seed_demo=args.seed, tier=args.tier)
    return apply(args.env_file, args.manifests)


if __name__ == "__main__":
    sys.exit(main())
