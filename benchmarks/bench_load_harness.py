"""What ``load_test()`` itself costs: its reported throughput against a hand-written loop.

What: a trivial workflow (``Trivial``: one action flipping between two steps, no handler), one
execution performing OPERATIONS actions, on a fresh temporary SQLite file (WAL, as load_test
sets it up), flowscope configured (every action is a span) in both variants:
- harness: ``load_test(Trivial, concurrent_executions=1, operations_per_execution=OPERATIONS)``;
  the number taken is what it *reports* (``operations_per_second``), so both its overhead
  (choosing the action through ``available_actions`` and the policy, timing and recording
  every action, progress counters, the memory sampler, the dedicated aggregating processor)
  and any error in its clock would show;
- hand loop: the same engine settings, schema and user, then ``start_workflow`` and
  ``execution.perform_action("hit")`` OPERATIONS times in one thread, timed with
  ``time.monotonic`` around exactly that.
One execution, because with several threads SQLite's write lock makes waiting connections
sleep-poll (1-100 ms steps), which would measure SQLite's lock fairness rather than the harness.

How: rounds interleaved in alternating order (see _harness.py); each round uses a fresh
database for each variant (created untimed). Per-operation wall time (the harness reports wall
time), min over rounds on each side.

Target: the harness's reported throughput is within 10% of the hand loop's: per-operation
time harness / hand loop <= 1.10, and >= 0.90 (it must not over-report either).

    .venv/bin/python benchmarks/bench_load_harness.py      # BENCH_ROUNDS=N, BENCH_OPERATIONS=N
"""

from __future__ import annotations

import threading
import time

from _harness import Check, Report, Samples, describe, env_int, ratio
from _load_workflows import Trivial

import flowscope
from flowscope.performance import load_test
from flowscope.benchmark._load_database import create_load_engine, open_load_database
from flowscope.workflows import create_schema, start_workflow

ROUNDS = env_int("BENCH_ROUNDS", 9)
OPERATIONS = env_int("BENCH_OPERATIONS", 500)
TARGET = 1.10
USER = "load-test"


def harness() -> float:
    """Seconds per operation, as load_test reports it."""
    result = load_test(Trivial, concurrent_executions=1, operations_per_execution=OPERATIONS, seed=0)
    assert result.operations_performed == OPERATIONS and not result.errors, result.errors
    return 1.0 / result.operations_per_second


def hand_loop() -> float:
    """Seconds per operation of the same actions, written by hand."""
    from sqlalchemy.orm import Session

    database = open_load_database(None)
    engine = create_load_engine(database.url, pool_size=2)
    try:
        create_schema(engine)
        with engine.connect():
            pass                                  # the connection exists before the clock starts
        elapsed = [0.0]

        def run() -> None:
            with Session(engine) as session:
                started = time.monotonic()
                execution = start_workflow(session, Trivial)
                for _ in range(OPERATIONS):
                    execution.perform_action("hit", user=USER)
                elapsed[0] = time.monotonic() - started

        thread = threading.Thread(target=run)    # load_test runs each execution on a thread too
        thread.start()
        thread.join()
        return elapsed[0] / OPERATIONS
    finally:
        engine.dispose()
        database.remove()


def main() -> None:
    flowscope.configure()
    print(f"bench_load_harness: 1 execution x {OPERATIONS} actions of a trivial workflow, SQLite (WAL), "
          f"{ROUNDS} rounds + 1 warm-up")
    wall: dict[str, list[float]] = {"hand loop": [], "harness": []}
    variants = {"hand loop": hand_loop, "harness": harness}
    for r in range(ROUNDS + 1):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            per_operation = variants[name]()
            if r > 0:
                wall[name].append(per_operation)
    samples = Samples(wall=wall, cpu=wall)
    for name, values in wall.items():
        print(f"  wall {name:<10} per operation: {describe(values)}")
    best = {name: min(values) for name, values in wall.items()}
    print(f"  throughput (best round): hand loop {1 / best['hand loop']:.0f} operations/s, "
          f"harness reports {1 / best['harness']:.0f} operations/s")
    report = Report("bench_load_harness")
    overhead = ratio("harness / hand loop, per operation", samples, "harness", "hand loop", clock="wall",
                     target=TARGET, note="load_test's reported throughput against a hand-written loop")
    report.ratios.append(overhead)
    report.checks.append(Check("harness does not over-report (ratio)", overhead.by_min, 0.90, "x", direction="min"))
    report.info.update(operations=OPERATIONS, rounds=ROUNDS,
                       hand_loop_ops_per_second=1 / best["hand loop"], harness_ops_per_second=1 / best["harness"])
    report.print_and_exit()


if __name__ == "__main__":
    main()
