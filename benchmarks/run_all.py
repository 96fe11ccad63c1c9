"""Run every flowscope benchmark and print one summary table; exit 1 if any target is missed.

    .venv/bin/python benchmarks/run_all.py                 # all of them (~4 minutes here)
    .venv/bin/python benchmarks/run_all.py end_to_end      # only those whose name contains it

Each ``bench_*.py`` runs in a process of its own (each sets the global TracerProvider and
measures its own RSS), with this interpreter; its full report is printed as it runs, and the
``BENCH_RESULT`` line it ends with feeds the table. A script that crashes, or ends without
that line, counts as failed. Environment knobs (BENCH_ROUNDS, BENCH_CHUNK, ...) pass through.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("bench_operation_overhead", "bench_query_attribution", "bench_aggregator_memory", "bench_end_to_end")


def scripts(filters: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    return [p for p in found if not filters or any(f in p.stem for f in filters)]


def run(script: Path) -> tuple[dict | None, int, float]:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(script)], cwd=HERE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    result = None
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT "):])
        else:
            print(line, end="", flush=True)
    code = process.wait()
    return result, code, time.perf_counter() - started


def rows(result: dict) -> list[tuple[str, str, str, str]]:
    out = []
    for r in result["ratios"]:
        if r["target"] is None:
            target, verdict = "-", "info"
        else:
            target = f"{'<=' if r['direction'] == 'max' else '>='} {r['target']:.2f}x"
            verdict = "PASS" if r["passed"] else "FAIL"
        out.append((r["name"], f"{r['by_min']:.3f}x ({r['clock']})", target, verdict))
    for c in result["checks"]:
        target = f"{'<=' if c['direction'] == 'max' else '>='} {c['target']:g} {c['unit']}".rstrip()
        out.append((c["name"], f"{c['value']:.4g} {c['unit']}".rstrip(), target, "PASS" if c["passed"] else "FAIL"))
    return out


def main() -> int:
    selected = scripts(sys.argv[1:])
    if not selected:
        print(f"no benchmark matches {sys.argv[1:]}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    outcomes = []
    for script in selected:
        print(f"\n{'=' * 100}\n{script.name}\n{'=' * 100}", flush=True)
        outcomes.append((script, *run(script)))

    print(f"\n{'=' * 100}\nSUMMARY\n{'=' * 100}")
    print(f"{'benchmark':<26} {'measure':<52} {'value':<20} {'target':<12} verdict")
    failed = 0
    for script, result, code, seconds in outcomes:
        name = script.stem.removeprefix("bench_")
        if result is None:
            failed += 1
            print(f"{name:<26} {'(crashed: exit ' + str(code) + ', no result line)':<52} {'':<20} {'':<12} FAIL")
            continue
        if code != 0:
            failed += 1
        for i, (measure, value, target, verdict) in enumerate(rows(result)):
            print(f"{name if i == 0 else '':<26} {measure:<52} {value:<20} {target:<12} {verdict}")
        print(f"{'':<26} {'-> ' + ('PASS' if code == 0 else 'FAIL') + f' in {seconds:.0f} s':<52}")
    total = time.perf_counter() - started
    print(f"\n{len(outcomes) - failed}/{len(outcomes)} benchmarks met their targets; total {total:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
