"""One worker process of the cross-instance coalescing test: N concurrent cluster runs asked of this process at
once, as a burst of events delivered to one instance would ask them. Prints what it saw as JSON."""

from __future__ import annotations

import json
import os
import sys
import threading

from shared import sync
from shared.__main__ import load_env_file
from shared.core.scope import Scope
from shared.core.settings import load_settings
from shared.deps import build_dependencies
from shared.runtime.coalesce import RUNS


def main(env_file: str, requests: int) -> None:
    deps = build_dependencies(load_settings({**os.environ, **load_env_file(env_file)}))
    notes: list[tuple[str, ...]] = []
    go = threading.Barrier(requests)

    def ask() -> None:
        go.wait()
        notes.append(sync.run(Scope(deps.settings.kube.cluster_name), deps, coalesce=True).notes)

    threads = [threading.Thread(target=ask) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    covered = sum(1 for n in notes if any("on another instance" in line for line in n))
    print(json.dumps({"runs_in_this_worker": RUNS.runs, "answered": len(notes), "covered": covered}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
