"""Converging at ARM's pace: the emulator throttles as ARM does (token buckets per operation class, 429 with
Retry-After, the remaining-quota headers), and the app's pacing keeps a first sync of many Services, alone or in
two worker processes at once, from being answered a single 429."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import requests

from sandbox.world import World
from shared import sync
from shared.core.scope import Scope
from shared.runtime.pacing import Pacer
from tests.conftest import service

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = Scope("aks-sandbox")
TIME_SCALE = 10.0
"""The emulator's clock and the app's model run 10 times faster than real time: writes refill at 100/s."""


def arm_get(world: World, path: str = "/backends") -> requests.Response:
    return requests.get(
        f"{world.apim.url}{world.apim.service_id}{path}?api-version=2024-05-01",
        headers={"Authorization": f"Bearer {world.token}"},
        verify=str(world.tls.ca_cert),
        timeout=10,
    )


def test_an_empty_read_bucket_answers_429_with_retry_after_and_every_answer_says_what_is_left(world: World) -> None:
    from sandbox.throttling import TokenBuckets

    world.apim.buckets = TokenBuckets(enforce=True, clock=lambda: 0.0)  # no refill while the test makes its requests
    answers = [arm_get(world) for _ in range(251)]
    assert [a.status_code for a in answers[:250]] == [200] * 250
    assert int(answers[0].headers["x-ms-ratelimit-remaining-subscription-global-reads"]) == 249
    refused = answers[250]
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "TooManyRequests"
    assert refused.headers["Retry-After"] == "1", "one token back in 1/25 s, said in whole seconds"


def test_the_kubernetes_emulator_answers_429_when_the_flow_is_full(world: World) -> None:
    from sandbox.throttling import TokenBuckets

    world.kube.throttle = TokenBuckets({"requests": (5.0, 1.0)}, enforce=True, clock=lambda: 0.0)
    answers = [
        requests.get(
            f"{world.kube.url}/api/v1/services",
            headers={"Authorization": f"Bearer {world.token}"},
            verify=str(world.tls.ca_cert),
            timeout=10,
        )
        for _ in range(6)
    ]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[5].json()["reason"] == "TooManyRequests" and answers[5].headers["Retry-After"] == "1"


def many_services(world: World, count: int, namespace: str = "shop") -> None:
    for i in range(count):
        world.kube.apply(service(f"svc-{i:04d}", namespace))


def test_a_paced_first_sync_gets_no_429_where_an_unpaced_one_gets_many(world: World, make_deps: Any) -> None:
    """The whole budget (share 1) either way, so the two differ only in pacing; writes refill at 50/s here."""
    settings = {"ALLOWLIST_ENABLED": "false", "APIS_ENABLED": "false", "ARM_BUDGET_SHARE": "1", "APPLY_CONCURRENCY": "8"}
    many_services(world, 600)
    world.apim.throttle(time_scale=5)
    unpaced = sync.run(CLUSTER, make_deps(**settings, ARM_PACING_TIME_SCALE="100000"))
    unpaced_429s = world.apim.buckets.answered_429
    assert unpaced_429s > 0, "unpaced, a first sync of 600 Services outruns the write bucket"

    world.reset()
    many_services(world, 600)
    world.apim.throttle(time_scale=5)
    paced = sync.run(CLUSTER, make_deps(**settings, ARM_PACING_TIME_SCALE="5"))
    assert not paced.failed and len(world.apim.backends) == 600
    assert world.apim.buckets.answered_429 == 0, f"paced: none (unpaced: {unpaced_429s}, and {unpaced.counts['failed']} failed)"


def test_two_worker_processes_share_one_budget_without_a_429(world: World, tmp_path: Path) -> None:
    many_services(world, 250, "shop")
    many_services(world, 250, "blog")
    world.apim.throttle(time_scale=TIME_SCALE)
    env_file = world.write_env_file(
        {"ALLOWLIST_ENABLED": "false", "APIS_ENABLED": "false", "ARM_PACING_TIME_SCALE": str(TIME_SCALE)}
    )
    workers = [
        subprocess.Popen(  # noqa: S603 - our own module and arguments
            [sys.executable, "-m", "shared", "sync", "--env-file", str(env_file), "--namespace", namespace, "--json"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "CI"},
        )
        for namespace in ("shop", "blog")
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read() if worker.stderr else ""
    assert len(world.apim.backends) == 500
    assert world.apim.buckets.answered_429 == 0


def test_the_pacer_keeps_to_its_share_and_to_what_arm_says_is_left() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pacer = Pacer(share=0.5, clock=lambda: now[0], sleep=sleep)
    for _ in range(100):
        pacer.acquire("writes")
    assert waits == [], "half of the write bucket at once"
    pacer.acquire("writes")
    assert waits == [0.2], "then at half the refill rate: one write every 0.2 s"
    now[0] += 10  # our half refills in 10 s
    pacer.observe("writes", 120.0)  # but others spent the bucket: only 20 are left above the 100 kept for them
    waits.clear()
    for _ in range(20):
        pacer.acquire("writes")
    assert waits == []
    pacer.acquire("writes")
    assert waits == [0.2]
    pacer.throttled("writes", 3.0)
    waits.clear()
    pacer.acquire("writes")
    assert waits[0] == 3.0, "a Retry-After pauses the class"


def test_a_kubernetes_429_is_waited_out_and_counted(world: World, make_deps: Any, sleeps: list[float]) -> None:
    from sandbox.httpbase import Fault

    many_services(world, 3)
    world.kube.inject(Fault(429, method="GET", path_contains="/services", times=1, headers={"Retry-After": "2"}))
    report = sync.run(CLUSTER, make_deps(APIS_ENABLED="false"))
    assert not report.failed and len(world.apim.backends) == 3
    assert report.requests["kubernetes.throttled"] == 1 and 2.0 in sleeps, "Retry-After honoured"


def test_retry_after_is_honoured_when_another_client_drains_the_bucket(world: World, make_deps: Any) -> None:
    """Another tool of the subscription spends ARM's write bucket just as the app starts writing (its reads said
    nothing of writes): the first writes meet 429s, and their Retry-After (whole seconds, at real speed) pauses
    every writer of the worker; the retries' own backoff is not waited here (recorded), so only the pause holds
    them back."""
    many_services(world, 20)
    world.apim.throttle(time_scale=1)
    settings = {"ALLOWLIST_ENABLED": "false", "APIS_ENABLED": "false", "APPLY_CONCURRENCY": "4"}
    deps = make_deps(**settings, ARM_BUDGET_SHARE="1", ARM_PACING_TIME_SCALE="1")
    admit = world.apim.admit
    drained: list[bool] = []

    def another_client_drains_the_write_bucket(request: Any) -> Any:
        if request.method == "PUT" and not drained:
            drained.append(True)  # once: just as the app's first write arrives
            while world.apim.buckets.take("writes") is None:
                pass
        return admit(request)

    decorate = world.apim.decorate

    def only_retry_after_on_a_429(request: Any, response: Any) -> Any:
        """The 429s here say nothing of what is left: Retry-After alone must hold the writers back."""
        decorated = decorate(request, response)
        if decorated.status == 429:
            decorated.headers = {k: v for k, v in decorated.headers.items() if not k.startswith("x-ms-ratelimit")}
        return decorated

    world.apim.admit = another_client_drains_the_write_bucket  # type: ignore[method-assign]
    world.apim.decorate = only_retry_after_on_a_429  # type: ignore[method-assign]
    try:
        report = sync.run(CLUSTER, deps)
    finally:
        del world.apim.admit, world.apim.decorate
    assert drained and not report.failed and len(world.apim.backends) == 20
    statuses = [r.status for r in world.apim.log if r.method == "PUT"]
    first_success = statuses.index(201)
    assert 1 <= first_success <= 4, "one 429 per writer in flight at most: then all of them wait"
    assert 429 not in statuses[first_success:], f"after the pause, none: {statuses}"


def test_concurrent_runs_in_one_worker_share_one_budget_without_a_429(world: World, make_deps: Any) -> None:
    """Two runs at once in one worker (a timer's and an event's, say), each with the clients it was built with,
    at the whole budget (share 1): together they keep to ARM's bucket."""
    many_services(world, 250, "shop")
    many_services(world, 250, "blog")
    world.apim.throttle(time_scale=TIME_SCALE)
    settings = {"ALLOWLIST_ENABLED": "false", "APIS_ENABLED": "false", "ARM_BUDGET_SHARE": "1"}
    timer_deps, event_deps = (
        make_deps(**settings, ARM_PACING_TIME_SCALE=str(TIME_SCALE)),
        make_deps(**settings, ARM_PACING_TIME_SCALE=str(TIME_SCALE)),
    )
    reports: list[Any] = []
    runs = [
        threading.Thread(target=lambda d=d, ns=ns: reports.append(sync.run(Scope("aks-sandbox", ns), d)))
        for d, ns in ((timer_deps, "shop"), (event_deps, "blog"))
    ]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(120)
    assert len(reports) == 2 and not any(r.failed for r in reports)
    assert len(world.apim.backends) == 500
    assert world.apim.buckets.answered_429 == 0


def test_a_first_sync_larger_than_a_run_converges_over_runs_without_a_429_or_a_failed_write(world: World, make_deps: Any) -> None:
    for i in range(100):
        annotations = {"apim-sync.io/api-id": f"api-{i:03d}", "apim-sync.io/operations": "GET /items"} if i % 2 else {}
        world.kube.apply(service(f"svc-{i:03d}", annotations=annotations))
    world.apim.throttle(time_scale=TIME_SCALE)
    deps = make_deps(ALLOWLIST_ENABLED="false", ARM_PACING_TIME_SCALE=str(TIME_SCALE), RUN_TIME_BUDGET_SECONDS="1")
    reports: list[Any] = []
    while not reports or reports[-1].incomplete:
        assert len(reports) < 20
        reports.append(sync.run(CLUSTER, deps))
    assert len(reports) > 1, "more than one run's budget of work"
    assert not any(r.failed for r in reports)
    assert world.apim.buckets.answered_429 == 0
    assert len(world.apim.backends) == 100 and len(world.apim.api_side.apis) == 50
    assert not sync.run(CLUSTER, deps).has_changes, "converged"
