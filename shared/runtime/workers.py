"""Work through many items with a few threads, holding a few items' worth of bookkeeping, not one per item.

`ThreadPoolExecutor.map` submits every item at once: a future, a condition and a work item each (about 600 bytes),
which at a first sync of 10,000 Services was the largest thing a run held while it applied. Here each of the
pool's workers pulls the next item when it is free, so what is held grows with the workers, not the items.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def start_each(pool: Executor, work: Callable[[T], R], items: Sequence[T], *, workers: int) -> Callable[[], list[R]]:
    """Start `workers` of the pool's threads on `items` (each item once, in order of starting) and return what
    waits for them: the results in the items' order, or the first exception a worker met (that worker stops;
    the others finish their items). Two calls on two pools work side by side until each is waited for."""
    results: list[R | None] = [None] * len(items)
    lock = threading.Lock()
    next_index = 0

    def pull() -> None:
        nonlocal next_index
        while True:
            with lock:
                index, next_index = next_index, next_index + 1
            if index >= len(items):
                return
            results[index] = work(items[index])

    started = [pool.submit(pull) for _ in range(min(workers, len(items)))]

    def wait() -> list[R]:
        for future in started:
            future.result()
        return results  # type: ignore[return-value]  # every slot is filled once every worker has returned

    return wait
