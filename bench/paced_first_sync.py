"""P3: a first sync of many new Services (half of them with an API of three operations) against ARM's token
buckets, emulated at a time scale, paced and unpaced.

Run: `make bench` (or `python -m bench.paced_first_sync 1000 5000`). Prints one table; not a test. The emulators
run in a process of their own (bench/emulators.py), so the peak RSS is the app's alone. Each run is one
Functions invocation: its time budget is RUN_TIME_BUDGET_SECONDS (540 s) in simulated time, and runs follow
each other until one has nothing left to do. Simulated time = real time x the time scale. The lower bound is
what ARM's buckets allow for the requests made, at the app's share of them:
max over read/write/delete of (requests - bucket x share) / (refill x share).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sandbox.throttling import ARM_BUCKETS
from shared import deps, sync
from shared.__main__ import load_env_file
from shared.core import settings
from shared.core.reporting import Report
from shared.core.scope import Scope

ROOT = Path(__file__).resolve().parents[1]
TIME_SCALE = float(os.environ.get("BENCH_TIME_SCALE", "10"))
"""10: the app's share of the write bucket refills at 50 writes/s, which the app keeps up with on 2 cores."""
MAX_RUNS = 60
MAX_UNPACED_RUNS = 10
"""Unpaced, a run meets 429s and failures every time and never completes cleanly: ten runs show it."""


def lower_bound_seconds(requests: dict[str, int], share: float) -> float:
    return max(
        max(0.0, (requests.get(kind, 0) - size * share) / (refill * share)) for kind, (size, refill) in ARM_BUCKETS.items()
    )


def _failed(report: Report) -> int:
    steps = (report.apis, report.allowlists)
    failed_steps = sum(1 for step in steps if step is not None for c in step.changes if c.get("outcome") == "failed")
    return int(report.counts["failed"]) + failed_steps


def _stats(emulators: subprocess.Popen[str]) -> dict[str, Any]:
    assert emulators.stdin is not None and emulators.stdout is not None
    emulators.stdin.write("stats\n")
    emulators.stdin.flush()
    seen: dict[str, Any] = json.loads(emulators.stdout.readline())
    return seen


def converge(count: int, *, paced: bool) -> dict[str, Any]:
    emulators = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "bench.emulators", str(count), str(TIME_SCALE)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert emulators.stdin is not None and emulators.stdout is not None
    try:
        environ = load_env_file(emulators.stdout.readline().strip())
        share = 0.5 if paced else 1.0
        overrides = {
            "APPLY_CONCURRENCY": "8",
            "ARM_BUDGET_SHARE": str(share),
            "ARM_PACING_TIME_SCALE": str(TIME_SCALE if paced else 1e6),
            "RUN_TIME_BUDGET_SECONDS": str(540 / TIME_SCALE),
            "MAX_ATTEMPTS": "8",
            "TENANCY_POLICY_CONFIGMAP": "aks-apim-sync/none",
        }
        dependencies = deps.build_dependencies(settings.load_settings({**environ, **overrides}))
        scope = Scope(dependencies.settings.kube.cluster_name)
        started = time.perf_counter()
        runs = failed_changes = 0
        while runs < (MAX_RUNS if paced else MAX_UNPACED_RUNS):
            runs += 1
            run_started = time.perf_counter()
            report = sync.run(scope, dependencies)
            failed_changes += _failed(report)
            if os.environ.get("BENCH_VERBOSE"):
                seconds = (time.perf_counter() - run_started) * TIME_SCALE
                print(f"run {runs}: {seconds:.0f} s simulated, {json.dumps(report.requests)}", file=sys.stderr)
            # Converged: a run that did all it planned (nothing deferred, nothing failed) leaves APIM as desired.
            converged = not report.incomplete and not report.failed
            # Each run is an invocation of its own: the Functions host keeps no report after answering it.
            del report
            if converged:
                break
        simulated = (time.perf_counter() - started) * TIME_SCALE
        seen = _stats(emulators)
        # Proven, not assumed: one more run (not timed) must find nothing to do.
        check = sync.run(scope, dependencies)
        verified = not check.has_changes and not check.failed
        bound = lower_bound_seconds(seen["requests"], share)
        if os.environ.get("BENCH_VERBOSE"):
            print(json.dumps(seen["reads"], indent=1, sort_keys=True), file=sys.stderr)
        return {
            "simulated": simulated,
            "bound": bound,
            "answered_429": seen["answered_429"],
            "failed": failed_changes,
            "runs": runs,
            "writes": seen["requests"].get("writes", 0),
            "reads": seen["requests"].get("reads", 0),
            "verified": verified,
        }
    finally:
        emulators.stdin.close()
        emulators.wait(timeout=60)


def main(sizes: list[int]) -> None:
    print(
        f"{'services':>8} {'mode':>8} {'ARM reads':>9} {'ARM writes':>10} {'sim. s':>8} {'bound s':>8} {'ratio':>6} {'429s':>6} "
        f"{'failed':>6} {'runs':>5} {'verified':>8} {'app RSS MB':>10}"
    )
    for size in sizes:
        for paced in (True, False)[: 1 if os.environ.get("BENCH_PACED_ONLY") else 2]:
            result = converge(size, paced=paced)
            ratio = result["simulated"] / result["bound"] if result["bound"] else float("nan")
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{size:>8} {'paced' if paced else 'unpaced':>8} {result['reads']:>9.0f} {result['writes']:>10.0f} "
                f"{result['simulated']:>8.0f} {result['bound']:>8.0f} {ratio:>6.2f} {result['answered_429']:>6.0f} "
                f"{result['failed']:>6.0f} {result['runs']:>5.0f} {'yes' if result['verified'] else 'NO':>8} {rss_mb:>10.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 5000])
