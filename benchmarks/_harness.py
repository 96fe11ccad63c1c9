"""Shared helpers of the benchmark scripts: interleaved rounds, robust ratios, result lines.

Design decisions (the machine is a noisy 2-core VM shared with other work):
- Variants are measured *side by side in one process*, interleaved round by round, and the
  order alternates every round (A B, B A, A B, ...) so slow drift (another process starting,
  CPU frequency, a growing database) lands on both sides alike.
- The headline ratio is ``min(variant) / min(baseline)`` over the rounds: noise on a shared
  machine only ever *adds* time, so the fastest round of each side is the closest to its true
  cost (the reasoning of ``timeit``'s documentation). The median of the per-round paired
  ratios is printed beside it, so a reader sees when the two estimators disagree.
- Two clocks per sample: wall time (``perf_counter``) and the process's CPU time
  (``process_time``, all threads, so a batch exporter's thread is charged). CPU-bound
  benchmarks decide on CPU time, which other processes on the machine cannot inflate by taking
  the CPU away; benchmarks that wait on a disk decide on wall time. Each script says which.
- Samples are kept (as pyperf does) and every statistic is derived from them.
- Each script prints a human-readable report and, last, one machine-readable line
  ``BENCH_RESULT {json}`` that ``run_all.py`` parses; the exit status is 0 when every target
  is met, 1 otherwise.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter, process_time
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

# The scripts import flowscope from the source tree even when it is not pip-installed.
_SRC = Path(__file__).resolve().parent.parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))


@dataclass
class Samples:
    """Per-unit costs of each variant, one sample per round, on two clocks."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def on(self, clock: str) -> dict[str, list[float]]:
        return self.wall if clock == "wall" else self.cpu


@dataclass
class Variant:
    """One side of a comparison: ``run`` is timed; ``prepare``/``finish`` run untimed around it."""

    run: Callable[[], int]
    prepare: Callable[[], None] | None = None
    finish: Callable[[], None] | None = None


def interleave(variants: dict[str, Variant | Callable[[], int]], rounds: int,
               warmup: int = 1, between: Callable[[], None] | None = None) -> Samples:
    """Run each variant once per round, alternating the order; return per-unit samples.

    Each ``run`` does one chunk of work and returns how many units (spans, queries, actions)
    it did. Both clocks are kept: ``wall`` (``perf_counter``) and ``cpu`` (``process_time``:
    the CPU time of every thread of this process, so the batch exporter's thread is counted,
    while time the machine gave to *other* processes is not). ``between`` runs, untimed,
    after every chunk (e.g. to flush a span queue so each chunk starts from the same state).
    """
    table = {name: v if isinstance(v, Variant) else Variant(v) for name, v in variants.items()}
    names = list(table)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            variant = table[name]
            if variant.prepare is not None:
                variant.prepare()
            gc.collect()
            w0, c0 = perf_counter(), process_time()
            units = variant.run()
            c1, w1 = process_time(), perf_counter()
            if variant.finish is not None:
                variant.finish()
            if between is not None:
                between()
            if r >= warmup:
                wall[name].append((w1 - w0) / units)
                cpu[name].append((c1 - c0) / units)
    return Samples(wall, cpu)


@dataclass
class Ratio:
    """``variant`` over ``baseline`` from interleaved samples (larger = variant costs more)."""

    name: str
    by_min: float
    paired_median: float
    clock: str = "cpu"
    target: float | None = None
    direction: str = "max"      # "max": ratio must be <= target; "min": ratio must be >= target
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.direction == "max":
            return self.by_min <= self.target
        return self.by_min >= self.target


def ratio(name: str, samples: Samples, variant: str, baseline: str, *, clock: str = "cpu",
          target: float | None = None, direction: str = "max", note: str = "") -> Ratio:
    """``variant`` / ``baseline`` per unit on ``clock`` (min/min, and the paired median)."""
    v, b = samples.on(clock)[variant], samples.on(clock)[baseline]
    paired = [x / y for x, y in zip(v, b)]
    return Ratio(name, min(v) / min(b), statistics.median(paired), clock, target, direction, note)


def print_samples(samples: Samples, unit_name: str, scale: float = 1e6, unit: str = "us") -> None:
    for clock in ("cpu", "wall"):
        for name, values in samples.on(clock).items():
            print(f"  {clock:<4} {name:<30} per {unit_name}: {describe(values, scale, unit)}")


def describe(samples: Sequence[float], scale: float = 1e6, unit: str = "us") -> str:
    """``min / median / max`` of samples, scaled (seconds -> us by default)."""
    s = sorted(samples)
    return (f"min {s[0] * scale:8.2f} {unit}  median {statistics.median(s) * scale:8.2f} {unit}  "
            f"max {s[-1] * scale:8.2f} {unit}  (n={len(s)})")


@dataclass
class Check:
    """A target that is not a ratio (memory, accuracy)."""

    name: str
    value: float
    target: float
    unit: str = ""
    direction: str = "max"
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.value <= self.target if self.direction == "max" else self.value >= self.target


@dataclass
class Report:
    benchmark: str
    ratios: list[Ratio] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.ratios) and all(c.passed for c in self.checks)

    def print_and_exit(self) -> None:
        print()
        for r in self.ratios:
            verdict = ("no target" if r.passed is None else
                       f"target {'<=' if r.direction == 'max' else '>='} {r.target:.2f}x: "
                       f"{'PASS' if r.passed else 'FAIL'}")
            print(f"  {r.name:<48} {r.by_min:6.3f}x  (paired median {r.paired_median:6.3f}x, {r.clock})"
                  f"  {verdict}")
            if r.note:
                print(f"      {r.note}")
        for c in self.checks:
            op = "<=" if c.direction == "max" else ">="
            print(f"  {c.name:<48} {c.value:10.4g} {c.unit}  target {op} {c.target:g} {c.unit}: "
                  f"{'PASS' if c.passed else 'FAIL'}")
            if c.note:
                print(f"      {c.note}")
        print(f"\n{self.benchmark}: {'PASS' if self.passed else 'FAIL'}")
        payload = {"benchmark": self.benchmark, "passed": self.passed,
                   "ratios": [dict(asdict(r), passed=r.passed) for r in self.ratios],
                   "checks": [dict(asdict(c), passed=c.passed) for c in self.checks],
                   "info": self.info}
        print("BENCH_RESULT " + json.dumps(payload), flush=True)
        sys.exit(0 if self.passed else 1)


def env_int(name: str, default: int) -> int:
    """An integer knob from the environment (``BENCH_ROUNDS=3`` for a quick look)."""
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def pristine_dialect(engine, pristine: bool) -> None:  # type: ignore[no-untyped-def]
    """Make ``engine`` execute as if no dialect event listener had ever existed (or undo it).

    ``event.listen(Engine, "do_execute", ...)`` sets ``Dialect._has_events = True`` on the
    class, and removing the listener never resets it: every later query then loops over an
    empty listener list. A baseline measured in that state is slower than a never-instrumented
    process, which would flatter the instrumented side. An instance attribute shadows the class
    flag for this engine's dialect only; deleting it lets instrumented rounds see the class flag.
    """
    if pristine:
        engine.dialect._has_events = False
    else:
        engine.dialect.__dict__.pop("_has_events", None)


class DiscardingExporter(SpanExporter):
    """Accepts every batch and throws it away (counts the spans, to prove none was dropped)."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

