"""Terminal rendering of benchmark comparisons and load tests with rich (no data computed here).

    >>> print_comparison(result, Console())
    >>> print_load_test(load_result, Console())
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from ..reports._units import format_bytes, format_range, format_seconds
from ._compare import ComparisonResult, ResultComparison
from ._load_result import LoadTestResult


def print_comparison(result: ComparisonResult, console: Console) -> None:
    """Per-subject statistics (per call), then each subject's verdict against the baseline."""
    s = result.settings
    table = Table(title=(f"Benchmark: {s.iterations} samples per subject after {s.warmup} warm-up rounds, "
                         f"{s.clock} clock, time per call"), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("Subject", no_wrap=True)
    for header in ("Loops", "Median", f"{s.confidence:.0%} CI", "Mean", "Std dev", "Min", "p95", "Max", "Queries",
                   "Alloc", "Ratio"):
        table.add_column(header, justify="right", no_wrap=True)
    for subject in result.subjects:
        ci = format_range(subject.ci_low, subject.ci_high)
        ratio = "baseline" if subject.name == result.baseline else f"{result.ratio(subject.name):.3f}x"
        table.add_row(subject.name, str(subject.loops), format_seconds(subject.median), ci,
                      format_seconds(subject.mean), format_seconds(subject.stdev), format_seconds(subject.minimum),
                      format_seconds(subject.p95), format_seconds(subject.maximum), f"{subject.queries_per_call:.2f}",
                      format_bytes(subject.allocated_bytes_per_call), ratio)
    console.print(table)
    console.print("  Loops: calls per sample (calibrated); CI: of the median; Queries and Alloc: per call "
                  "(Alloc: Python allocation peak, tracemalloc); Ratio: median / the baseline's median", style="dim",
                  soft_wrap=True)
    for comparison in result.comparisons:
        style = "bold" if comparison.significant else "dim"
        console.print(f"  {comparison.verdict}", style=style, soft_wrap=True)
    if len(result.subjects) > 1:
        console.print(f"  fastest: {result.fastest}   slowest: {result.slowest}   "
                      f"most memory-efficient: {result.most_memory_efficient}")
        console.print(f"  test: Mann-Whitney U, alpha {s.alpha:g}, minimum effect {s.min_effect:.0%}", style="dim")


def print_result_comparison(change: ResultComparison, console: Console) -> None:
    """The new result against a saved one."""
    console.print("[bold]Against the saved result[/bold]")
    for c in change.changes:
        console.print(f"  {c.verdict}", style="bold" if c.significant else "dim", soft_wrap=True)
    if change.only_in_saved:
        console.print(f"  only in the saved result: {', '.join(change.only_in_saved)}", style="dim")
    if change.only_in_new:
        console.print(f"  not in the saved result: {', '.join(change.only_in_new)}", style="dim")


def print_load_test(result: LoadTestResult, console: Console) -> None:
    """Summary, latency per action, errors, per-operation statistics and notes."""
    title = "Load test" + (" (INTERRUPTED: partial results)" if result.interrupted else "")
    summary = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_header=False)
    summary.add_column("What", no_wrap=True)
    summary.add_column("Value")
    rows = [
        ("Workflow", result.workflow),
        ("Mode", f"{result.mode} ({result.workers} worker{'s' if result.workers != 1 else ''}), "
                 f"{result.concurrent_executions} concurrent executions x {result.operations_per_execution} "
                 f"operations, policy: {result.action_policy}, seed {result.seed}"),
        ("Database", result.database + (" (temporary)" if result.temporary_database else "")),
        ("Throughput", f"{result.throughput:.2f} workflows/s, {result.operations_per_second:.2f} operations/s"),
        ("Total time", f"{result.total_seconds:.3f} s (setup {result.setup_seconds:.3f} s, not counted)"),
        ("Executions", f"{result.executions_started} started, {result.executions_completed} completed, "
                       f"{result.executions_failed} failed"),
        ("Operations", f"{result.operations_planned} planned: {result.operations_performed} performed, "
                       f"{result.operations_failed} failed, {result.operations_skipped_no_action} no action "
                       f"available, {result.operations_not_run} not run"),
        ("Errors", str(result.errors_total)),
        ("Peak memory", f"{format_bytes(result.peak_memory_bytes)} RSS "
                        f"(at start {format_bytes(result.memory_at_start_bytes)})"),
    ]
    for what, value in rows:
        summary.add_row(what, value)
    console.print(summary)

    latency = Table(title="Latency per action (ms, exact percentiles)", title_justify="left", box=box.SIMPLE_HEAD)
    latency.add_column("Action", no_wrap=True)
    for header in ("Count", "Mean", "p50", "p95", "p99", "Max"):
        latency.add_column(header, justify="right")
    for s in result.latency:
        latency.add_row(s.action, str(s.count), f"{s.mean_ms:.2f}", f"{s.p50_ms:.2f}", f"{s.p95_ms:.2f}",
                        f"{s.p99_ms:.2f}", f"{s.max_ms:.2f}")
    console.print(latency)

    if result.errors:
        errors = Table(title="Errors by type", title_justify="left", box=box.SIMPLE_HEAD)
        for header in ("Type", "Count", "Actions", "First message"):
            errors.add_column(header)
        for e in result.errors:
            errors.add_row(e.type, str(e.count), ", ".join(f"{a} x{n}" for a, n in e.actions.items()), e.example)
        console.print(errors)

    if result.operation_stats:
        ops = Table(title="Operations (aggregated spans; durations in ms, quantiles within 1%)", title_justify="left",
                    box=box.SIMPLE_HEAD)
        ops.add_column("Operation", no_wrap=True)
        for header in ("Count", "Errors", "p50", "p95", "p99", "Queries/op", "Query ms/op"):
            ops.add_column(header, justify="right")
        for op in result.operation_stats:
            d = op.duration_ms
            ops.add_row(op.name, str(op.count), str(op.errors), f"{d.p50:.2f}", f"{d.p95:.2f}", f"{d.p99:.2f}",
                        f"{op.query_count.mean:.1f}", f"{op.query_ms.mean:.2f}")
        console.print(ops)
    for note in result.notes:
        console.print(f"note: {note}", style="dim", soft_wrap=True)
