"""A run stops starting writes before the function's timeout: what is left is reported as deferred, and the next
run continues where the plan left off, without writing anything twice."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from sandbox.world import World
from shared import sync
from shared.core.scope import Scope
from shared.runtime.deadline import Deadline
from tests.conftest import service

CLUSTER = Scope("aks-sandbox")
BUDGET_FOR_SOME_APIS = "46"
BUDGET_FOR_SOME_ALLOWLISTS = "55"
BUDGET_FOR_SOME_EXISTING_APIS = "30"
"""Clock ticks (one per look at the clock): past the backends, part-way through the APIs (or the allow-lists)."""


def test_a_run_out_of_time_defers_the_rest_and_the_next_run_finishes_it_without_repeating_a_write(
    world: World, make_deps: Any
) -> None:
    for i in range(40):
        world.kube.apply(service(f"svc-{i:02d}"))
    ticks = itertools.count()
    # Every look at the clock is a second later: the budget of 30 "seconds" runs out part-way through the writes.
    slow = dataclasses.replace(
        make_deps(RUN_TIME_BUDGET_SECONDS="30", APPLY_CONCURRENCY="1"), monotonic=lambda: float(next(ticks))
    )

    first = sync.run(CLUSTER, slow)

    outcomes = [c["outcome"] for c in first.changes]
    assert first.incomplete and not first.failed
    assert 0 < outcomes.count("applied") < 40 and outcomes.count("applied") + outcomes.count("deferred") == 40
    assert first.counts["deferred"] == outcomes.count("deferred")
    assert all(c["error_reason"] == "TimeBudgetSpent" for c in first.changes if c["outcome"] == "deferred")
    assert all(c["diff"] == {} for c in first.changes if c["outcome"] == "deferred"), "the run that makes it plans it"
    assert all(c["diff"] for c in first.changes if c["outcome"] == "applied")
    assert first.to_json()["incomplete"] is True
    assert first.apis is not None and "time budget" in (first.apis.to_json().get("skipped") or "")
    assert any(note.startswith("incomplete:") for note in first.notes)

    world.apim.clear_log()
    second = sync.run(CLUSTER, make_deps())

    assert not second.incomplete and len(world.apim.backends) == 40
    assert len([r for r in world.apim.writes() if "/backends/" in r.path]) == outcomes.count("deferred")


def test_apis_not_started_in_time_are_reported_and_the_next_run_makes_them_without_repeating_a_write(
    world: World, make_deps: Any
) -> None:
    for i in range(12):
        annotations = {"apim-sync.io/api-id": f"api-{i:02d}", "apim-sync.io/operations": "GET /items"}
        world.kube.apply(service(f"svc-{i:02d}", annotations=annotations))
    ticks = itertools.count()
    slow = dataclasses.replace(
        make_deps(RUN_TIME_BUDGET_SECONDS=BUDGET_FOR_SOME_APIS, APPLY_CONCURRENCY="1", ALLOWLIST_ENABLED="false"),
        monotonic=lambda: float(next(ticks)),
    )

    first = sync.run(CLUSTER, slow).to_json()

    assert first["incomplete"] is True and not first["counts"]["failed"]
    made = {c["api"] for c in first["apis"]["changes"] if c["kind"] == "api" and c["outcome"] == "applied"}
    put_off = {p["object"].removeprefix("API ") for p in first["apis"]["problems"] if p["reason"] == "TimeBudgetSpent"}
    put_off |= {c["api"] for c in first["apis"]["changes"] if c["outcome"] == "deferred"}
    assert made and put_off and made | put_off == {f"api-{i:02d}" for i in range(12)}

    writes_before = len(world.apim.writes())
    second = sync.run(CLUSTER, make_deps(ALLOWLIST_ENABLED="false"))
    assert not second.incomplete and set(world.apim.api_side.apis) == made | put_off
    assert not any(c["api"] in made for c in second.to_json()["apis"]["changes"]), "nothing made before is written again"
    assert len(world.apim.writes()) > writes_before


def test_no_work_starts_that_would_end_past_the_budget_as_long_as_the_longest_piece_so_far() -> None:
    now = [0.0]
    deadline = Deadline(100.0, lambda: now[0])
    with deadline.piece():
        now[0] += 30.0  # an API's writes, paced: 30 s
    now[0] = 69.0
    assert not deadline.passed(), "a 30 s piece started now ends at 99 s"
    now[0] = 71.0
    assert deadline.passed(), "one started now would end at 101 s, past the budget: the margin is measured"


def test_allow_lists_not_written_in_time_are_deferred_and_the_next_run_writes_only_them(world: World, make_deps: Any) -> None:
    for i in range(12):
        world.kube.apply(service(f"svc-{i:02d}"))
    ticks = itertools.count()
    slow = dataclasses.replace(
        make_deps(RUN_TIME_BUDGET_SECONDS=BUDGET_FOR_SOME_ALLOWLISTS, APPLY_CONCURRENCY="1", APIS_ENABLED="false"),
        monotonic=lambda: float(next(ticks)),
    )

    first = sync.run(CLUSTER, slow).to_json()

    outcomes = [c["outcome"] for c in first["allowlists"]["changes"]]
    assert first["incomplete"] is True and "applied" in outcomes and "deferred" in outcomes
    deferred = {c["object"] for c in first["allowlists"]["changes"] if c["outcome"] == "deferred"}
    second = sync.run(CLUSTER, make_deps(APIS_ENABLED="false")).to_json()
    assert {c["object"] for c in second["allowlists"]["changes"]} == deferred
    assert all(c["outcome"] == "applied" for c in second["allowlists"]["changes"])


def test_when_a_run_reads_only_some_existing_apis_the_next_run_starts_with_the_first_it_did_not_reach(
    world: World, make_deps: Any
) -> None:
    apis = [f"api-{i:02d}" for i in range(12)]
    for i, api_id in enumerate(apis):
        annotations = {"apim-sync.io/api-id": api_id, "apim-sync.io/operations": "GET /items"}
        world.kube.apply(service(f"svc-{i:02d}", annotations=annotations))
    sync.run(CLUSTER, make_deps(ALLOWLIST_ENABLED="false"))  # every API exists and is as the cluster asks
    ticks = itertools.count()
    # One worker's runs share their resume points (the worker builds its dependencies once).
    worker = dataclasses.replace(
        make_deps(RUN_TIME_BUDGET_SECONDS=BUDGET_FOR_SOME_EXISTING_APIS, APPLY_CONCURRENCY="1", ALLOWLIST_ENABLED="false"),
        monotonic=lambda: float(next(ticks)),
    )

    def read_in_order() -> list[str]:
        reads = [r.path.split("/apis/")[1].split("/")[0] for r in world.apim.log if r.method == "GET" and "/policies/" in r.path]
        world.apim.clear_log()
        return reads

    world.apim.clear_log()
    sync.run(CLUSTER, worker)
    first = read_in_order()
    sync.run(CLUSTER, worker)
    second = read_in_order()

    def wrapped_from(api_id: str) -> list[str]:
        return apis[apis.index(api_id) :] + apis[: apis.index(api_id)]

    assert 0 < len(first) < len(apis), "the first run's time covers only some of the APIs"
    assert first == wrapped_from(first[0])[: len(first)]
    first_not_reached = wrapped_from(first[0])[len(first)]
    assert second == wrapped_from(first_not_reached)[: len(second)], "the next run starts where the last stopped"
