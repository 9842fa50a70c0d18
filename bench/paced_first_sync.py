"""P3: a first sync of many new Services (half of them with an API of three operations) against ARM's token
buckets, emulated at a time scale, paced and unpaced.

Run: `make bench` (or `python -m bench.paced_first_sync 1000 5000`). Prints one table; not a test. The emulators
run in a process of their own (bench/emulators.py), so the peak RSS is the app's alone. Each run is one
Functions invocation: its time budget is RUN_TIME_BUDGET_SECONDS (540 s) in simulated time, and runs follow
each other. Simulated time = real time x the time scale. Two moments are measured:

- converged: the end of the last run that wrote anything; APIM then holds what the cluster asks for. The
  ratio is this time over the lower bound of what ARM's buckets allow for the requests made until then, at
  the app's share of them: max over read/write/delete of (requests - bucket x share) / (refill x share).
- confirmed: the end of the run by which the app has seen every object since that last write and found
  nothing to do. A full pass over thousands of APIs costs two reads each, more than one run's read budget
  at 10,000 Services, so it may take several runs, each starting where the last stopped.

An untimed run after that must find nothing to write ("verified").
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
from shared.allowlists.report import AllowListReport
from shared.apis.report import ApisReport
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


def _wrote(report: Report) -> bool:
    steps = (report.apis, report.allowlists)
    entries = [*report.changes, *(c for step in steps if step is not None for c in step.changes)]
    return any(c.get("outcome") == "applied" for c in entries)


def _apis_seen_with_nothing_to_do(report: Report, apis: set[str]) -> set[str]:
    """The APIs this run observed and left as they were (not put off for time, no change planned)."""
    step = report.apis
    if not isinstance(step, ApisReport) or step.skipped:
        return set()
    put_off = {p["object"].removeprefix("API ") for p in step.problems if p["reason"] == "TimeBudgetSpent"}
    changed = {c["api"] for c in step.changes}
    return apis - put_off - changed


def _rest_seen_with_nothing_to_do(report: Report) -> bool:
    """Every backend and allow-list seen in this run, none with anything to do."""
    step = report.allowlists
    return not report.changes and isinstance(step, AllowListReport) and not step.skipped and not step.changes


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
        every_api = {f"api-{i:05}" for i in range(0, count, 2)}  # as bench/emulators.py seeds them
        started = time.perf_counter()
        runs = failed_changes = 0
        converged_run, converged_at, seen_at_convergence = 0, 0.0, _stats(emulators)
        unconfirmed_apis, rest_confirmed = set(every_api), False
        while runs < (MAX_RUNS if paced else MAX_UNPACED_RUNS):
            runs += 1
            run_started = time.perf_counter()
            report = sync.run(scope, dependencies)
            now = (time.perf_counter() - started) * TIME_SCALE
            failed_changes += _failed(report)
            if os.environ.get("BENCH_VERBOSE"):
                seconds = (time.perf_counter() - run_started) * TIME_SCALE
                print(f"run {runs}: {seconds:.0f} s simulated, {json.dumps(report.requests)}", file=sys.stderr)
            if _wrote(report) or report.failed:
                converged_run, converged_at, seen_at_convergence = runs, now, _stats(emulators)
                unconfirmed_apis, rest_confirmed = set(every_api), False
            else:
                unconfirmed_apis -= _apis_seen_with_nothing_to_do(report, every_api)
                rest_confirmed = rest_confirmed or _rest_seen_with_nothing_to_do(report)
            # Each run is an invocation of its own: the Functions host keeps no report after answering it.
            del report
            if not unconfirmed_apis and rest_confirmed:
                break
        confirmed = not unconfirmed_apis and rest_confirmed
        confirmed_at = (time.perf_counter() - started) * TIME_SCALE
        seen = _stats(emulators)
        # Proven, not assumed: one more run (not timed) must find nothing to write.
        check = sync.run(scope, dependencies)
        verified = not check.has_changes and not check.failed
        bound = lower_bound_seconds(seen_at_convergence["requests"], share)
        if os.environ.get("BENCH_VERBOSE"):
            print(json.dumps(seen["reads"], indent=1, sort_keys=True), file=sys.stderr)
        return {
            "converged": converged_at,
            "bound": bound,
            "confirmed": confirmed_at if confirmed else float("nan"),
            "answered_429": seen["answered_429"],
            "failed": failed_changes,
            "runs": f"{converged_run}/{runs if confirmed else '-'}",
            "writes": seen["requests"].get("writes", 0),
            "reads": seen["requests"].get("reads", 0),
            "verified": verified,
        }
    finally:
        emulators.stdin.close()
        emulators.wait(timeout=60)


def main(sizes: list[int]) -> None:
    print(
        f"{'services':>8} {'mode':>8} {'ARM reads':>9} {'ARM writes':>10} {'conv. s':>8} {'bound s':>8} {'ratio':>6} "
        f"{'conf. s':>8} {'429s':>6} {'failed':>6} {'runs':>7} {'verified':>8} {'app RSS MB':>10}"
    )
    for size in sizes:
        for paced in (True, False)[: 1 if os.environ.get("BENCH_PACED_ONLY") else 2]:
            result = converge(size, paced=paced)
            ratio = result["converged"] / result["bound"] if result["bound"] else float("nan")
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{size:>8} {'paced' if paced else 'unpaced':>8} {result['reads']:>9.0f} {result['writes']:>10.0f} "
                f"{result['converged']:>8.0f} {result['bound']:>8.0f} {ratio:>6.2f} {result['confirmed']:>8.0f} "
                f"{result['answered_429']:>6.0f} {result['failed']:>6.0f} {result['runs']:>7} "
                f"{'yes' if result['verified'] else 'NO':>8} {rss_mb:>10.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 5000])
