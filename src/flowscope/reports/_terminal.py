"""Terminal rendering of reports with rich (tables; no data is computed here).

    >>> from rich.console import Console
    >>> print_process_report(process_report(), Console())
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from ..analysis._recommendation import Recommendation, grouped
from ._process_report import ProcessReport
from ._traces import TraceView

_SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}


def print_process_report(report: ProcessReport, console: Console, limit: int = 15) -> None:
    """Operations table (slowest p95 first), bottlenecks, the slowest recent trace, then
    recommendations."""
    table = Table(title="Operations (slowest p95 first; durations in ms, quantiles within 1%)",
                  title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("Operation", no_wrap=True)
    for header in ("Count", "Errors", "p50", "p95", "p99", "Max", "Queries/op", "Query ms/op", "Max RSS Δ KiB"):
        table.add_column(header, justify="right")
    for op in report.operations[:limit]:
        d = op.duration_ms
        table.add_row(op.name, str(op.count), str(op.errors), f"{d.p50:.2f}", f"{d.p95:.2f}", f"{d.p99:.2f}",
                      f"{d.max:.2f}", f"{op.query_count.mean:.1f}", f"{op.query_ms.mean:.2f}",
                      f"{op.rss_delta_bytes.maximum / 1024:.0f}")
    console.print(table)
    if len(report.operations) > limit:
        console.print(f"... and {len(report.operations) - limit} more operations", style="dim")

    if not report.operations:
        console.print("No operation has been measured.", style="yellow")
    print_unmeasured(report, console)

    b = report.bottlenecks
    console.print("[bold]Bottlenecks[/bold]")
    if b.slowest:
        console.print(f"  slowest (p95):      {b.slowest[0].name} {b.slowest[0].duration_ms.p95:.2f} ms")
    if b.most_queries:
        console.print(f"  most queries:       {b.most_queries[0].name} {b.most_queries[0].query_count.mean:.1f} per operation")
    if b.most_memory:
        console.print(f"  most memory:        {b.most_memory[0].name} "
                      f"{b.most_memory[0].rss_delta_bytes.maximum / 1024:.0f} KiB RSS growth (max)")
    for operation, fp in b.n_plus_one:
        via = f" via {fp.relationship}" if fp.relationship else ""
        at = f" at {fp.call_site}" if fp.call_site else ""
        console.print(f"  N+1 pattern:        {operation}: {fp.max_repeats_in_span}x in one operation "
                      f"({fp.max_distinct_parameters_in_span} parameter sets){via}{at}", soft_wrap=True)
        console.print(f"                      {fp.fingerprint}", style="dim", soft_wrap=True)

    if report.slowest_traces:
        console.print(_trace_tree(report.slowest_traces[0], limit))

    print_recommendations(report.recommendations, console)
    dropped = report.telemetry_health.get("dropped_spans", 0)
    failures = report.telemetry_health.get("failures", {})
    if dropped or failures:
        console.print(f"Telemetry: {dropped} spans dropped by the exporter, failures: {failures}", style="yellow")


def _trace_tree(trace: TraceView, limit: int) -> Tree:
    """The trace's spans as a tree: start offset and duration in ms, queries of operations."""
    tree = Tree(f"[bold]Slowest recent trace[/bold] {trace.duration_ms:.2f} ms, trace {trace.trace_id}")
    parents: list[Tree] = [tree]
    for span in trace.spans[:limit]:
        queries = f", {span.query_count} queries" if span.query_count is not None else ""
        style = "red" if span.error else ("" if span.operation else "dim")
        label = f"{span.name}  +{span.offset_ms:.2f} ms, {span.duration_ms:.2f} ms{queries}"
        del parents[span.depth + 1:]
        parents.append(parents[min(span.depth, len(parents) - 1)].add(label, style=style))
    hidden = len(trace.spans) - min(limit, len(trace.spans)) + trace.truncated
    if hidden:
        tree.add(f"... and {hidden} more spans", style="dim")
    return tree


def print_recommendations(recommendations: Sequence[Recommendation], console: Console) -> None:
    """Most valuable first; a finding several operations share (same statement, relationship
    and line) is printed once, with the other operations listed."""
    groups = grouped(list(recommendations))
    console.print(f"[bold]Recommendations[/bold] ({len(recommendations)}"
                  + (f", {len(groups)} distinct" if len(groups) != len(recommendations) else "") + ")")
    if not recommendations:
        console.print("  none: no measurement crossed a threshold", style="dim")
    for group in groups:
        rec = group.first
        style = _SEVERITY_STYLE[rec.severity]
        console.print(f"  [{style}]{rec.severity:<6}[/{style}] {rec.kind:<16} {rec.message}", soft_wrap=True)
        if group.others:
            console.print(f"         also in: {', '.join(group.others)}", soft_wrap=True)
        if rec.evidence.fingerprint:
            console.print(f"         statement: {rec.evidence.fingerprint}", style="dim", soft_wrap=True)
        console.print(f"         fix: {rec.suggestion}", soft_wrap=True)


def print_unmeasured(report: ProcessReport, console: Console) -> None:
    """What ran outside any operation, so no finding can cover it."""
    missing = report.unmeasured
    if not missing.queries:
        return
    console.print(f"[yellow]{missing.queries} queries ran outside any operation[/yellow] (not measured: wrap the "
                  "code in flowscope.operation, or install the OpenTelemetry instrumentation of its framework)")
    for statement in missing.statements:
        at = f" at {statement.call_site}" if statement.call_site else ""
        console.print(f"  {statement.count}x {statement.fingerprint}{at}", soft_wrap=True)
