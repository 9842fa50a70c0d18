"""Many items, a few threads: each item once, results in the items' order, and only as many at work as there are
workers (what is held grows with the workers, not with the items)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.runtime.workers import start_each


def test_every_item_is_worked_once_and_the_results_keep_the_items_order() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def square(n: int) -> int:
        with lock:
            seen.append(n)
        return n * n

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = start_each(pool, square, list(range(500)), workers=4)()

    assert results == [n * n for n in range(500)]
    assert sorted(seen) == list(range(500))


def test_no_more_items_are_at_work_than_there_are_workers() -> None:
    at_work, most = 0, 0
    lock = threading.Lock()

    def slow(_: int) -> None:
        nonlocal at_work, most
        with lock:
            at_work += 1
            most = max(most, at_work)
        time.sleep(0.001)
        with lock:
            at_work -= 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        start_each(pool, slow, list(range(200)), workers=3)()

    assert most == 3


def test_two_pools_work_side_by_side_until_each_is_waited_for() -> None:
    both_started = threading.Barrier(2, timeout=5)

    def meet(_: str) -> str:
        both_started.wait()  # would time out if the second pool only began once the first was waited for
        return "met"

    with ThreadPoolExecutor(max_workers=1) as first_pool, ThreadPoolExecutor(max_workers=1) as second_pool:
        first = start_each(first_pool, meet, ["a"], workers=1)
        second = start_each(second_pool, meet, ["b"], workers=1)
        assert (first(), second()) == (["met"], ["met"])


def test_an_unexpected_exception_reaches_whoever_waits() -> None:
    def fragile(n: int) -> int:
        if n == 7:
            raise ValueError("item 7")
        return n

    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(ValueError, match="item 7"):
        start_each(pool, fragile, list(range(20)), workers=2)()


def test_no_items_start_no_workers() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert start_each(pool, str, [], workers=2)() == []
