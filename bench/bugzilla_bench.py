"""Benchmark: approving and ending a downtime with 1, 20 and 200 bugs in Bugzilla.

    python bench/bugzilla_bench.py [--latency 0.02] [--sizes 1,20,200]

Runs the bot's Bugzilla jobs (adapters.bugzilla_jobs.perform, what the outbox worker
does) through the real python-bugzilla client against the local BMO-contract server
with added latency per request, and prints wall time and request count. Prints
figures only; it asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.bugzilla import BugzillaClient  # noqa: E402
from adapters.bugzilla_jobs import perform  # noqa: E402
from models.jobs import ApproveBugs, BugResult, RecordOutcomes  # noqa: E402
from models.reactions import OUTCOME_FLAG  # noqa: E402
from tests.servers.bugzilla import BugzillaServer  # noqa: E402

KEY = "bench-key"
FLAG = "needs-treeclosure"
TAG = "[tree-closure 2026-12-05 14:00 UTC]"
# "uniform": every bug has the same whiteboard and outcome (the request count is the same
# for any number of bugs); "mixed": three whiteboards and three outcomes (one more update
# per distinct whiteboard or outcome, still not per bug).
SCENARIOS = {
    "uniform": (("",), (("landed", ""),)),
    "mixed": (("", "[infra]", "[hg]"),
              (("landed", ""), ("rolled-back", "replication lag"), ("not-done", ""))),
}


def run(server: BugzillaServer, client: BugzillaClient, first_id: int, n: int,
        scenario: str) -> dict[str, tuple[float, int]]:
    whiteboards, outcomes = SCENARIOS[scenario]
    ids = list(range(first_id, first_id + n))
    for i, bug_id in enumerate(ids):
        server.add_bug(bug_id, f"work {i}", f"eng{i}@example.org",
                       whiteboard=whiteboards[i % len(whiteboards)], flags=[(FLAG, "?")])
    results = []
    for i, bug in enumerate(ids):
        status, note = outcomes[i % len(outcomes)]
        results.append(BugResult(bug, status, note, f"Outcome: {status}.", OUTCOME_FLAG[status]))
    queued = {
        "approve": ApproveBugs(tuple(ids), TAG),
        "end": RecordOutcomes(tuple(results), f"Downtime #{first_id} ran from 14:00 to 16:00 UTC."),
    }
    figures = {}
    for name, payload in queued.items():
        before = len(server.requests)
        start = time.perf_counter()
        report = perform(client, FLAG, f"dt{first_id}:bench-{name}", payload)
        elapsed = time.perf_counter() - start
        assert not report.problems, report.problems
        figures[name] = (elapsed, len(server.requests) - before)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every request")
    parser.add_argument("--sizes", default="1,20,200", help="numbers of bugs")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    with BugzillaServer(latency=options.latency) as server:
        server.add_account("bot@example.org", KEY)
        client = BugzillaClient(server.url, KEY, flag=FLAG, timeout=30)
        client.check()
        client.get_bugs([1])  # python-bugzilla connects (a one-off /rest/version) outside the timings
        print(f"Bugzilla jobs against the local server, {options.latency * 1000:.0f} ms added per request")
        first_id = 0
        for scenario in SCENARIOS:
            print(f"\n{scenario}:")
            print(f"{'bugs':>5} {'approve':>10} {'requests':>8} {'end':>10} {'requests':>8}")
            results = {}
            for n in sizes:
                first_id += 100_000
                results[n] = run(server, client, first_id, n, scenario)
                (a_t, a_n), (e_t, e_n) = results[n]["approve"], results[n]["end"]
                print(f"{n:>5} {a_t * 1000:>8.0f}ms {a_n:>8} {e_t * 1000:>8.0f}ms {e_n:>8}")
            if len(sizes) > 1:
                small, big = results[sizes[0]], results[sizes[-1]]
                for job in ("approve", "end"):
                    print(f"{job}: {sizes[-1]} bugs take {big[job][0] / small[job][0]:.2f}x the time of "
                          f"{sizes[0]} (target under 3x)")


if __name__ == "__main__":
    main()
