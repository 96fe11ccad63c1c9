"""Compare implementations with honest statistics: ``compare()`` and ``benchmark_operation()``.

    >>> result = compare(["implementation_a", "implementation_b"], lambda impl: run(impl))
    >>> result = compare({"json": encode_json, "pickle": encode_pickle})
    >>> result.fastest, result.ratio("pickle"), result.comparison("pickle").verdict
    >>> result.to_json(); ComparisonResult.from_json(text).compare_to(result)

How a measurement is made (the choices pyperf and timeit made, and why):
- **Calibration.** A function that takes 1 us cannot be timed one call at a time: the clock
  read itself costs ~50 ns and the interpreter's noise more. Each subject gets its own inner
  loop count, doubled until one sample lasts at least ``min_time`` (default 5 ms); samples
  report time *per call*. The loop (``for _ in itertools.repeat(None, loops)``) costs
  ~10-20 ns per call and is not subtracted.
- **Warm-up.** The first ``warmup`` rounds (default 2) and every calibration run are
  discarded: caches, lazily imported modules and SQLAlchemy's compiled-statement cache are
  warm before anything counts.
- **Interleaving.** Subjects are measured round by round, one sample each per round, in an
  order that reverses every round (A B, B A, ...), so drift on a shared machine (another
  process starting, frequency scaling, a growing database) lands on every subject alike
  instead of on whichever ran last.
- **Garbage collection.** ``gc.collect()`` runs (untimed) before every sample, so one
  subject's garbage is never collected on another's clock. A full collection of a process
  that has imported SQLAlchemy, numpy and scipy takes ~25 ms, which made it 90% of a quick
  comparison; so the heap that exists when measuring begins is collected once and *frozen*
  (``gc.freeze()``, undone at the end; skipped if the application froze objects itself), and
  the per-sample collections only visit objects created since. The price: a generation-2
  collection that happens inside a timed loop skips the frozen objects, so it is cheaper than
  it would be in production (they are rare: one per ~25% growth of the long-lived heap).
  The collector stays *on* while timing by default, because the collections a function causes
  are part of its cost in production; ``disable_gc=True`` turns it off inside the timed loop,
  as ``timeit`` does.
- **Queries and memory.** Every sample runs inside ``flowscope.operation("benchmark.<name>")``
  (a span, so benchmarks show up in traces and in the aggregator); the clock reads are inside
  the span, so its ~15 us never lands in a sample. Queries per call come from the operation's
  query tally; the memory delta is the RSS probe (``/proc/self/statm``) read right around the
  timed loop. RSS moves in pages and only when the allocator asks the OS, so the memory
  ranking uses a separate, untimed pass under ``tracemalloc`` (the peak of Python allocations
  during one call, median of three calls): ``tracemalloc`` makes allocation-heavy code several
  times slower, so it never runs while timing.
- **Clocks.** ``clock="wall"`` (``time.perf_counter``, the default: what a user waits for,
  database round trips included) or ``clock="cpu"`` (``time.process_time``: CPU time of this
  process, immune to other processes taking the CPU, blind to time spent waiting on a database).

Results are data (samples kept, statistics derived, JSON round trip); see :mod:`._statistics`
for the significance test.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..telemetry import configure, operation
from ..telemetry._frames import innermost_frame
from ..telemetry._probes import rss_bytes
from . import _statistics
from ._errors import InvalidBenchmarkError

FORMAT = "flowscope.benchmark.comparison"
FORMAT_VERSION = 1
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
DEFAULT_ITERATIONS = 20
DEFAULT_WARMUP = 2
DEFAULT_MIN_TIME = 0.005
MAX_LOOPS = 10_000_000
_NO_ARGUMENT = object()


@dataclass(frozen=True)
class Sample:
    """One timed sample: ``loops`` calls, reported per call."""

    seconds_per_call: float
    memory_delta_bytes: int      # RSS after - before the timed loop (the whole sample)
    queries_per_call: float


@dataclass(frozen=True)
class Settings:
    """How a comparison was measured (saved with it, checked when comparing saved results)."""

    iterations: int
    warmup: int
    min_time: float
    clock: str
    disable_gc: bool
    trace_memory: bool
    alpha: float
    min_effect: float
    confidence: float
    seed: int


@dataclass(frozen=True)
class SubjectResult:
    """Every sample of one subject and the statistics derived from them (seconds per call)."""

    name: str
    loops: int                                   # calls per sample, calibrated
    samples: tuple[Sample, ...]
    mean: float
    median: float
    stdev: float
    minimum: float
    maximum: float
    p95: float
    ci_low: float | None                         # confidence interval of the median
    ci_high: float | None
    confidence: float
    memory_delta_bytes: float                    # median RSS delta of a sample
    allocated_bytes_per_call: int | None         # tracemalloc peak of one call (untimed pass)
    queries_per_call: float                      # mean

    @property
    def times(self) -> tuple[float, ...]:
        """Seconds per call, one value per sample."""
        return tuple(s.seconds_per_call for s in self.samples)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubjectResult:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["samples"] = tuple(Sample(**s) for s in data.get("samples", ()))
        return cls(**values)


def subject_result(name: str, loops: int, samples: list[Sample], allocated: int | None,
                   confidence: float) -> SubjectResult:
    d = _statistics.describe([s.seconds_per_call for s in samples], confidence)
    return SubjectResult(
        name=name, loops=loops, samples=tuple(samples), mean=d.mean, median=d.median, stdev=d.stdev,
        minimum=d.minimum, maximum=d.maximum, p95=d.p95, ci_low=d.ci_low, ci_high=d.ci_high,
        confidence=confidence,
        memory_delta_bytes=_statistics.median([float(s.memory_delta_bytes) for s in samples]),
        allocated_bytes_per_call=allocated,
        queries_per_call=sum(s.queries_per_call for s in samples) / len(samples))


@dataclass(frozen=True)
class ResultComparison:
    """A new comparison against a saved one: per subject present in both, new / saved."""

    changes: tuple[_statistics.Significance, ...]
    only_in_saved: tuple[str, ...]
    only_in_new: tuple[str, ...]

    def change(self, name: str) -> _statistics.Significance:
        for c in self.changes:
            if c.subject == name:
                return c
        raise KeyError(f"no subject {name!r} in both results; compared: {', '.join(c.subject for c in self.changes)}")

    def regressions(self, percent: float) -> tuple[_statistics.Significance, ...]:
        """Subjects significantly slower than in the saved result, by more than ``percent``."""
        return tuple(c for c in self.changes if c.significant and c.change_percent > percent)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ComparisonResult:
    """What :func:`compare` measured: per subject the samples and statistics, and the verdicts.

    The first subject is the baseline; ``comparisons`` holds every other subject against it.
    """

    subjects: tuple[SubjectResult, ...]
    baseline: str
    comparisons: tuple[_statistics.Significance, ...]
    fastest: str
    slowest: str
    most_memory_efficient: str
    settings: Settings
    environment: dict[str, Any] = field(default_factory=dict)

    def subject(self, name: str) -> SubjectResult:
        for s in self.subjects:
            if s.name == name:
                return s
        raise KeyError(f"no subject {name!r}; subjects: {', '.join(s.name for s in self.subjects)}")

    def comparison(self, name: str) -> _statistics.Significance:
        """``name`` against the baseline (the first subject)."""
        for c in self.comparisons:
            if c.subject == name:
                return c
        if name == self.baseline:
            raise KeyError(f"{name!r} is the baseline; every other subject is compared with it")
        raise KeyError(f"no subject {name!r}; subjects: {', '.join(s.name for s in self.subjects)}")

    def ratio(self, name: str) -> float:
        """median(name) / median(baseline); 1.0 for the baseline itself."""
        return 1.0 if name == self.baseline else self.comparison(name).ratio

    @property
    def ratios(self) -> dict[str, float]:
        return {s.name: self.ratio(s.name) for s in self.subjects}

    def compare_to(self, saved: ComparisonResult | str | Path | Mapping[str, Any]) -> ResultComparison:
        """This result against a saved one (a result, its JSON text, a path to it, or its dict)."""
        return compare_saved(saved, self)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format": FORMAT, "version": FORMAT_VERSION, **data}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_html(self) -> str:
        """A self-contained HTML page: the verdicts against the baseline, then every subject."""
        from ._html import comparison_html  # jinja2 only when a page is asked for

        return comparison_html(self)

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_text(self.to_json() + "\n", encoding="utf-8")
        return target

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComparisonResult:
        if data.get("format") != FORMAT:
            raise InvalidBenchmarkError(
                f"not a saved flowscope comparison (format {data.get('format')!r}, expected {FORMAT!r}); "
                "save one with ComparisonResult.to_json() or `flowscope bench --json FILE`")
        if data.get("version", 0) > FORMAT_VERSION:
            raise InvalidBenchmarkError(f"saved comparison has format version {data['version']}; this flowscope "
                                        f"reads up to {FORMAT_VERSION}: upgrade flowscope")
        return cls(
            subjects=tuple(SubjectResult.from_dict(s) for s in data["subjects"]),
            baseline=data["baseline"],
            comparisons=tuple(_statistics.Significance(**c) for c in data["comparisons"]),
            fastest=data["fastest"], slowest=data["slowest"],
            most_memory_efficient=data["most_memory_efficient"],
            settings=Settings(**data["settings"]),
            environment=dict(data.get("environment", {})))

    @classmethod
    def from_json(cls, text: str) -> ComparisonResult:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidBenchmarkError(f"saved comparison is not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise InvalidBenchmarkError("saved comparison must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ComparisonResult:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def compare_saved(old: ComparisonResult | str | Path | Mapping[str, Any],
                  new: ComparisonResult | str | Path | Mapping[str, Any]) -> ResultComparison:
    """Compare two results subject by subject (``new`` / ``old``), with the same test as compare()."""
    before, after = _as_result(old), _as_result(new)
    if before.settings.clock != after.settings.clock:
        raise InvalidBenchmarkError(
            f"the saved result was timed on the {before.settings.clock!r} clock and the new one on "
            f"{after.settings.clock!r}; measure both with the same clock")
    old_names = [s.name for s in before.subjects]
    new_names = [s.name for s in after.subjects]
    common = [n for n in new_names if n in old_names]
    changes = []
    for name in common:
        a, b = after.subject(name), before.subject(name)
        if len(a.samples) < 2 or len(b.samples) < 2:
            raise InvalidBenchmarkError(f"subject {name!r} needs at least two samples on each side to compare")
        changes.append(_statistics.significance(
            name, a.times, name, b.times, alpha=after.settings.alpha, min_effect=after.settings.min_effect,
            confidence=after.settings.confidence, seed=after.settings.seed,
            subject_label=f"{name} (new)", baseline_label=f"{name} (saved)"))
    return ResultComparison(changes=tuple(changes),
                            only_in_saved=tuple(n for n in old_names if n not in new_names),
                            only_in_new=tuple(n for n in new_names if n not in old_names))


def _as_result(value: ComparisonResult | str | Path | Mapping[str, Any]) -> ComparisonResult:
    if isinstance(value, ComparisonResult):
        return value
    if isinstance(value, Mapping):
        return ComparisonResult.from_dict(value)
    if isinstance(value, Path) or (isinstance(value, str) and not value.lstrip().startswith("{")):
        path = Path(value)
        if not path.is_file():
            raise InvalidBenchmarkError(f"no saved comparison at {str(path)!r}")
        return ComparisonResult.load(path)
    if isinstance(value, str):
        return ComparisonResult.from_json(value)
    raise InvalidBenchmarkError(f"expected a ComparisonResult, its JSON, a dict or a path; got {type(value).__name__}")


# -- measuring ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Target:
    name: str
    fn: Callable[..., Any]
    argument: Any = _NO_ARGUMENT


def compare(subjects: Iterable[Any] | Mapping[str, Callable[[], Any]],
            fn: Callable[[Any], Any] | None = None, *, iterations: int = DEFAULT_ITERATIONS,
            warmup: int = DEFAULT_WARMUP, min_time: float = DEFAULT_MIN_TIME, clock: str = "wall",
            disable_gc: bool = False, trace_memory: bool = True, alpha: float = 0.05,
            min_effect: float = 0.02, confidence: float = 0.95, seed: int = 0,
            max_loops: int = MAX_LOOPS) -> ComparisonResult:
    """Measure every subject and compare each with the first (see the module docstring).

    ``subjects`` is either a list with ``fn`` (``fn(subject)`` is what is timed) or a dict of
    name -> zero-argument callable. ``iterations`` samples are kept per subject (at least 2 to
    compare), after ``warmup`` discarded rounds.
    """
    targets = _targets(subjects, fn)
    settings = _settings(iterations, warmup, min_time, clock, disable_gc, trace_memory, alpha, min_effect,
                         confidence, seed, max_loops, minimum_iterations=2 if len(targets) > 1 else 1)
    results = _measure(targets, settings, max_loops)
    baseline = results[0]
    comparisons = tuple(
        _statistics.significance(r.name, r.times, baseline.name, baseline.times, alpha=alpha,
                                 min_effect=min_effect, confidence=confidence, seed=seed)
        for r in results[1:])
    by_time = sorted(results, key=lambda r: r.median)
    if trace_memory and all(r.allocated_bytes_per_call is not None for r in results):
        leanest = min(results, key=lambda r: r.allocated_bytes_per_call or 0)
    else:
        leanest = min(results, key=lambda r: r.memory_delta_bytes)
    return ComparisonResult(subjects=tuple(results), baseline=baseline.name, comparisons=comparisons,
                            fastest=by_time[0].name, slowest=by_time[-1].name,
                            most_memory_efficient=leanest.name, settings=settings,
                            environment=_environment())


def benchmark_operation(name: str, fn: Callable[[], Any], iterations: int = 10, *,
                        warmup: int = DEFAULT_WARMUP, min_time: float = DEFAULT_MIN_TIME,
                        clock: str = "wall", disable_gc: bool = False, trace_memory: bool = True,
                        confidence: float = 0.95, max_loops: int = MAX_LOOPS) -> SubjectResult:
    """The statistics of one zero-argument function, measured as :func:`compare` measures."""
    if not isinstance(name, str) or not name:
        raise InvalidBenchmarkError("benchmark_operation() needs a non-empty operation name")
    if not callable(fn):
        raise InvalidBenchmarkError(f"benchmark_operation({name!r}, fn): fn must be callable, got {type(fn).__name__}")
    settings = _settings(iterations, warmup, min_time, clock, disable_gc, trace_memory, 0.05, 0.02, confidence,
                         0, max_loops, minimum_iterations=1)
    return _measure([_Target(name, fn)], settings, max_loops)[0]


def _targets(subjects: Any, fn: Callable[[Any], Any] | None) -> list[_Target]:
    if isinstance(subjects, Mapping):
        if fn is not None:
            raise InvalidBenchmarkError("pass either a dict of name -> callable, or a list of subjects and fn; "
                                        "not both")
        targets = []
        for name, target in subjects.items():
            if not callable(target):
                raise InvalidBenchmarkError(f"subject {name!r} is not callable ({type(target).__name__}); "
                                            "a dict must map names to zero-argument callables")
            targets.append(_Target(str(name), target))
    else:
        if isinstance(subjects, (str, bytes)) or not isinstance(subjects, Iterable):
            raise InvalidBenchmarkError("subjects must be a list (with fn) or a dict of name -> callable, "
                                        f"got {type(subjects).__name__}")
        items = list(subjects)
        if fn is None:
            if all(callable(s) for s in items):
                targets = [_Target(_name_of(s), s) for s in items]
            else:
                raise InvalidBenchmarkError("compare(subjects, fn): fn is missing; it is called as fn(subject) "
                                            "for each subject (or pass a dict of name -> callable)")
        else:
            if not callable(fn):
                raise InvalidBenchmarkError(f"fn must be callable, got {type(fn).__name__}")
            targets = [_Target(_name_of(s), fn, s) for s in items]
    if not targets:
        raise InvalidBenchmarkError("compare() needs at least one subject")
    names = [t.name for t in targets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidBenchmarkError(f"subject names must be unique; repeated: {', '.join(duplicates)} "
                                    "(use a dict to name them)")
    return targets


def _name_of(subject: Any) -> str:
    if isinstance(subject, str):
        return subject
    name = getattr(subject, "__qualname__", None) or getattr(subject, "__name__", None)
    return str(name) if name else repr(subject)


def _settings(iterations: int, warmup: int, min_time: float, clock: str, disable_gc: bool, trace_memory: bool,
              alpha: float, min_effect: float, confidence: float, seed: int, max_loops: int,
              minimum_iterations: int) -> Settings:
    if not isinstance(iterations, int) or iterations < minimum_iterations:
        why = "a comparison needs two samples per subject" if minimum_iterations > 1 else "one sample"
        raise InvalidBenchmarkError(f"iterations must be at least {minimum_iterations} ({why}), got {iterations!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise InvalidBenchmarkError(f"warmup must be 0 or more rounds, got {warmup!r}")
    if not (isinstance(min_time, (int, float)) and math.isfinite(min_time) and min_time >= 0):
        raise InvalidBenchmarkError(f"min_time must be a number of seconds >= 0, got {min_time!r}")
    if clock not in CLOCKS:
        raise InvalidBenchmarkError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if not 0 < alpha < 1:
        raise InvalidBenchmarkError(f"alpha must be between 0 and 1, got {alpha!r}")
    if not 0 <= min_effect < 1:
        raise InvalidBenchmarkError(f"min_effect must be a fraction between 0 and 1, got {min_effect!r}")
    if not 0 < confidence < 1:
        raise InvalidBenchmarkError(f"confidence must be between 0 and 1, got {confidence!r}")
    if not isinstance(max_loops, int) or max_loops < 1:
        raise InvalidBenchmarkError(f"max_loops must be at least 1, got {max_loops!r}")
    return Settings(iterations=iterations, warmup=warmup, min_time=float(min_time), clock=clock,
                    disable_gc=disable_gc, trace_memory=trace_memory, alpha=alpha, min_effect=min_effect,
                    confidence=confidence, seed=seed)


def _measure(targets: list[_Target], settings: Settings, max_loops: int) -> list[SubjectResult]:
    configure()   # query attribution (the engine instrumentor) and the span pipeline
    timer = CLOCKS[settings.clock]
    loops = {t.name: _calibrate(t, timer, settings.min_time, max_loops) for t in targets}
    samples: dict[str, list[Sample]] = {t.name: [] for t in targets}
    gc.collect()
    freeze = gc.get_freeze_count() == 0   # the application's own freeze is left alone
    if freeze:
        gc.freeze()
    try:
        for round_number in range(settings.warmup + settings.iterations):
            order = targets if round_number % 2 == 0 else targets[::-1]
            for target in order:
                sample = _sample(target, loops[target.name], timer, settings.disable_gc)
                if round_number >= settings.warmup:
                    samples[target.name].append(sample)
    finally:
        if freeze:
            gc.unfreeze()
    allocated = {t.name: _allocated_per_call(t) if settings.trace_memory else None for t in targets}
    return [subject_result(t.name, loops[t.name], samples[t.name], allocated[t.name], settings.confidence)
            for t in targets]


def _run(target: _Target, loops: int) -> None:
    fn, argument = target.fn, target.argument
    if argument is _NO_ARGUMENT:
        for _ in itertools.repeat(None, loops):
            fn()
    else:
        for _ in itertools.repeat(None, loops):
            fn(argument)


def _calibrate(target: _Target, timer: Callable[[], float], min_time: float, max_loops: int) -> int:
    """The smallest power-of-two-ish loop count whose run lasts at least ``min_time``."""
    loops = 1
    while True:
        start = timer()
        _call_noting(target, loops)
        elapsed = timer() - start
        if elapsed >= min_time or loops >= max_loops:
            return loops
        if elapsed <= 0:          # below the clock's resolution (process_time: ~1 us)
            loops = min(max_loops, loops * 10)
        else:                     # aim 20% past min_time, at most 10x per step, at least 2x
            loops = min(max_loops, loops * 10, max(loops * 2, math.ceil(loops * min_time * 1.2 / elapsed)))


def _call_noting(target: _Target, loops: int) -> None:
    try:
        _run(target, loops)
    except Exception as err:
        if hasattr(err, "add_note"):
            err.add_note(f"(raised while benchmarking subject {target.name!r})")
        raise


def _sample(target: _Target, loops: int, timer: Callable[[], float], disable_gc: bool) -> Sample:
    gc.collect()
    with operation(f"benchmark.{target.name}", **{"workflow.benchmark.subject": target.name,
                                                  "workflow.benchmark.loops": loops}):
        frame = innermost_frame()
        queries_before = frame.query_count if frame is not None else 0
        gc_was_enabled = gc.isenabled()
        if disable_gc:
            gc.disable()
        try:
            rss_before = rss_bytes()
            start = timer()
            _call_noting(target, loops)
            elapsed = timer() - start
            rss_after = rss_bytes()
        finally:
            if disable_gc and gc_was_enabled:
                gc.enable()
        queries = (frame.query_count - queries_before) if frame is not None else 0
    return Sample(seconds_per_call=elapsed / loops, memory_delta_bytes=rss_after - rss_before,
                  queries_per_call=queries / loops)


def _allocated_per_call(target: _Target, calls: int = 3) -> int:
    """Peak Python allocation of one call (median of ``calls``), under tracemalloc, untimed."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    peaks = []
    try:
        for _ in range(calls):
            gc.collect()
            tracemalloc.reset_peak()
            baseline = tracemalloc.get_traced_memory()[0]
            _call_noting(target, 1)
            peaks.append(max(0, tracemalloc.get_traced_memory()[1] - baseline))
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return int(_statistics.median([float(p) for p in peaks]))


def _environment() -> dict[str, Any]:
    from .._version import __version__

    return {"flowscope": __version__, "python": sys.version.split()[0],
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
