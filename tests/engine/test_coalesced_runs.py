"""Identical requests coalesce in a worker (issue 18): while a run is in progress, every identical request
shares one follow-up run that starts after it; 20 concurrent requests cost at most two runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox.tools import Azurite
from sandbox.world import World
from shared import sync
from shared.adapters.lease import BlobRunLedger
from shared.core.errors import LeaseHeld, RetryableError
from shared.core.scope import Scope
from shared.runtime.coalesce import RUNS, Coalescer, Covered, across_instances
from tests.conftest import service
from tests.events.test_on_event import app, deliver

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = Scope("aks-sandbox")

__all__ = ["app"]  # the fixture


def test_twenty_concurrent_identical_requests_cost_at_most_two_runs_and_every_caller_gets_a_later_run() -> None:
    coalescer: Coalescer[int] = Coalescer()
    started: list[float] = []
    release = threading.Event()

    def work() -> int:
        started.append(time.monotonic())
        if len(started) == 1:
            release.wait(5)  # the first run is in progress while the others arrive
        return len(started)

    asked: dict[int, float] = {}
    results: dict[int, int] = {}

    def caller(i: int) -> None:
        asked[i] = time.monotonic()
        results[i] = coalescer.run("cluster", work)

    first = threading.Thread(target=caller, args=(0,))
    first.start()
    while not started:
        time.sleep(0.001)
    others = [threading.Thread(target=caller, args=(i,)) for i in range(1, 20)]
    for thread in others:
        thread.start()
    time.sleep(0.1)
    release.set()
    for thread in [first, *others]:
        thread.join(5)

    assert coalescer.runs == 2 and len(results) == 20
    assert results[0] == 1 and all(results[i] == 2 for i in range(1, 20))
    assert all(started[1] >= asked[i] for i in range(1, 20)), "the follow-up started after every request it serves"


def test_different_requests_do_not_wait_for_each_other() -> None:
    coalescer: Coalescer[str] = Coalescer()
    gate = threading.Event()
    done: list[str] = []

    def slow() -> str:
        gate.wait(5)
        return "slow"

    thread = threading.Thread(target=lambda: done.append(coalescer.run("namespace shop", slow)))
    thread.start()
    assert coalescer.run("namespace finance", lambda: "fast") == "fast"
    gate.set()
    thread.join(5)
    assert done == ["slow"]


def test_a_burst_of_cluster_resync_events_costs_at_most_two_runs(app: World) -> None:
    from shared.core.watcher_events import CLUSTER_RESYNC, cluster_subject, watcher_source

    app.apim.latency_seconds = 0.02  # each run takes a while, as against real ARM
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "burst",
        "source": watcher_source("aks-sandbox"),
        "type": CLUSTER_RESYNC,
        "subject": cluster_subject("aks-sandbox"),
        "data": {},
    }
    before = RUNS.runs
    threads = [threading.Thread(target=deliver, args=({**event, "id": f"burst-{i}"},)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert RUNS.runs - before <= 2


# -- across instances: a leased blob per request in the Functions storage account (Azurite) ---------------------


def _ledger(azurite: Azurite) -> BlobRunLedger:
    return BlobRunLedger(connection_string=azurite.connection_string)


def _ask(ledger: BlobRunLedger, key: str, *, sleep: Any, waiting_at_most: float = 30) -> str | Covered:
    """A request for `key` made now, whose run would answer "mine ran"; `sleep` is where others act meanwhile."""
    return across_instances(
        ledger,
        key,
        lambda: "mine ran",
        asked_after=ledger.last_started(key),
        give_up_at=time.monotonic() + waiting_at_most,
        monotonic=time.monotonic,
        sleep=sleep,
        poll_seconds=0.1,
    )


def test_a_run_in_progress_on_another_instance_is_waited_for_not_joined(azurite: Azurite) -> None:
    key, mine, theirs = f"cluster-{uuid.uuid4()}", _ledger(azurite), _ledger(azurite)
    their_turn = theirs.try_turn(key)
    assert their_turn is not None
    with their_turn:
        their_run = their_turn.begin()

        def their_run_ends(_seconds: float) -> None:
            their_turn.end(their_run)
            their_turn.__exit__(None, None, None)

        outcome = _ask(mine, key, sleep=their_run_ends)
    assert outcome == "mine ran", "their run may have read the cluster before this request's change"
    assert (mine.last_started(key), mine.last_completed(key)) == (2, 2)


def test_a_request_served_meanwhile_by_a_later_run_on_another_instance_runs_nothing(azurite: Azurite) -> None:
    key, mine, theirs = f"cluster-{uuid.uuid4()}", _ledger(azurite), _ledger(azurite)
    first = theirs.try_turn(key)
    assert first is not None
    first.__enter__()
    first.begin()  # run 1 is in progress when this request asks

    def others_run_meanwhile(_seconds: float) -> None:
        first.end(1)
        first.__exit__(None, None, None)
        second = theirs.try_turn(key)  # another instance's follow-up takes the turn first: run 2
        assert second is not None
        with second:
            second.end(second.begin())

    outcome = _ask(mine, key, sleep=others_run_meanwhile)
    assert outcome == Covered(2)
    assert mine.last_started(key) == 2, "no third run"


def test_a_request_that_waits_too_long_is_left_to_a_later_delivery(azurite: Azurite) -> None:
    key, mine, theirs = f"cluster-{uuid.uuid4()}", _ledger(azurite), _ledger(azurite)
    turn = theirs.try_turn(key)
    assert turn is not None
    with turn:
        turn.begin()
        with pytest.raises(LeaseHeld) as raised:
            _ask(mine, key, sleep=time.sleep, waiting_at_most=0.3)
    assert isinstance(raised.value, RetryableError)


def test_twenty_requests_across_two_worker_processes_cost_at_most_two_runs(world: World, azurite: Azurite) -> None:
    for name in ("cart", "orders", "search"):
        world.kube.apply(service(name, "shop"))
    world.apim.latency_seconds = 0.05  # a run takes a while, as against real ARM
    env_file = world.write_env_file({"AzureWebJobsStorage": azurite.connection_string, "ALLOWLIST_ENABLED": "false"})
    world.kube.clear_log()
    workers = [
        subprocess.Popen(  # noqa: S603 - our own module and arguments
            [sys.executable, "-m", "tests.engine.burst_worker", str(env_file), "10"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "CI"},
        )
        for _ in range(2)
    ]
    seen = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        seen.append(json.loads(out))
    cluster_reads = [r for r in world.kube.log if r.method == "GET" and r.path.split("?")[0].endswith("/services")]
    assert sum(s["answered"] for s in seen) == 20
    assert len(cluster_reads) <= 2, f"{len(cluster_reads)} runs read the cluster; workers saw {seen}"
    assert len(world.apim.backends) == 3


def test_an_unreachable_ledger_does_not_stop_the_run(world: World, make_deps: Any) -> None:
    world.kube.apply(service("cart", "shop"))
    unreachable = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/x;"
    deps = make_deps(AzureWebJobsStorage=unreachable, ALLOWLIST_ENABLED="false")
    report = sync.run(CLUSTER, deps, coalesce=True)
    assert not report.failed and len(world.apim.backends) == 1
    assert any(n.startswith("not coordinated with other instances") for n in report.notes)
