"""The run report's JSON is a contract with operators' tooling: for the demo world it stays byte for byte
what it was when the layout of shared/ changed (captured at commit c60200e, before the restructure; the
restructure left it byte-identical). Changed on purpose since: the tenancy issue adds one Kubernetes read per
run (the policy ConfigMap), a `warnings` list, and the demo's public Services serve https.

When a behaviour changes on purpose, regenerate the file with UPDATE_GOLDEN=1 and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sandbox.__main__ import seed
from sandbox.world import World
from shared import sync
from shared.core.scope import Scope

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden" / "demo-world-reports.json"


def test_the_demo_world_reports_are_byte_compatible(world: World, make_deps: Any) -> None:
    seed(world)
    deps = make_deps()
    scope = Scope(world.settings()["CLUSTER_NAME"])
    runs = {}
    for name, dry_run in (("plan", True), ("sync", False), ("again", True)):
        report = sync.run(scope, deps, dry_run=dry_run).to_json()
        report["duration_ms"] = 0
        runs[name] = report
    produced = json.dumps(runs, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(produced)
    assert produced == GOLDEN.read_text()
