"""Identical requests coalesce in a worker (issue 18): while a run is in progress, every identical request
shares one follow-up run that starts after it; 20 concurrent requests cost at most two runs."""

from __future__ import annotations

import threading
import time
from typing import Any

from sandbox.world import World
from shared.runtime.coalesce import RUNS, Coalescer
from tests.events.test_on_event import app, deliver

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
