"""The ``flowscope`` command.

    $ flowscope demo                                   # sqlite:///flowscope.db in the current directory
    $ flowscope demo --database-url postgresql+psycopg://user:pass@localhost/db --executions 50
    $ flowscope check scenarios/checkout.py            # CI gate: exit 1 on a medium or high finding

Errors the user can fix (a bad database URL, a missing driver, a server that does not answer)
are one line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from ._version import __version__
from .workflows import DEFAULT_DATABASE_URL


class _UserError(click.ClickException):
    """A one-line ``Error: ...`` with exit status 2 (click's UsageError would add a usage block)."""

    exit_code = 2


_html_option = click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
                            help="Also write the report as a self-contained HTML page (to open in a browser, "
                                 "or keep as a CI artifact).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowscope")
def main() -> None:
    """Monitor, benchmark and optimize workflow executions, built on OpenTelemetry."""


@main.command()
@click.option("--database-url", default=DEFAULT_DATABASE_URL, show_default=True, metavar="URL",
              help="SQLAlchemy database URL; the example tables in it are recreated.")
@click.option("--executions", "executions", type=click.IntRange(1, 100_000), default=20, show_default=True,
              metavar="N", help="Executions per example workflow.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated example data.")
@_html_option
def demo(database_url: str, executions: int, seed: int, html_path: str | None) -> None:
    """Run the example workflows against a real database and time every action."""
    from .demo import DatabaseURLError, print_demo, run_demo  # keep `flowscope --help` fast

    try:
        result = run_demo(database_url, executions_per_workflow=executions, seed=seed)
    except DatabaseURLError as err:
        raise _UserError(f"--database-url: {err}") from None
    console = _console()
    print_demo(result, console)
    if html_path:
        _write_file("--html", html_path, result.report.to_html(), console)


def _console() -> Console:
    """Rich console; wide enough for the report's tables when output is piped or logged."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


# Everything after the target is the scenario's (allow_interspersed_args=False): flowscope's own
# options come before it, so a script's --json or --fail-on is never taken by flowscope.
@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("target", metavar="SCRIPT.py|MODULE:FUNCTION")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--fail-on", type=click.Choice(["low", "medium", "high", "never"]), default=None,
              help="Exit 1 when a recommendation of this severity or higher is found "
                   "[default: [tool.flowscope] fail_on, else medium].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write the verdict and the whole report as JSON.")
@_html_option
@click.option("--annotations", type=click.Choice(["none", "github"]), default="none", show_default=True,
              help="github: also print each finding as a GitHub Actions annotation (on the line of code).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write the findings as a JUnit XML test report (GitLab, Jenkins, ...).")
@click.option("--sarif", "sarif_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write the findings as SARIF 2.1.0 (GitHub code scanning).")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Fail only on findings not in this baseline; say which of its findings are gone.")
@click.option("--write-baseline", "write_baseline_path", type=click.Path(dir_okay=False, writable=True),
              metavar="FILE", help="Write today's findings as a baseline (the check's verdict is unchanged).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Read [tool.flowscope] from this file [default: the first pyproject.toml from here up].")
def check(target: str, args: tuple[str, ...], fail_on: str | None, json_path: str | None, html_path: str | None,
          annotations: str, junit_path: str | None, sarif_path: str | None, baseline_path: str | None,
          write_baseline_path: str | None, config_path: str | None) -> None:
    """Run a scenario with flowscope on, print the report, and fail on its findings (a CI gate).

    \b
    $ flowscope check --fail-on medium scenarios/checkout.py
    $ flowscope check --json flowscope-check.json --html flowscope-check.html myapp.jobs:nightly
    $ flowscope check --annotations github scenarios/checkout.py   # in a GitHub Actions step
    $ flowscope check --junit flowscope-check.xml scenarios/checkout.py   # GitLab, Jenkins, ...
    $ flowscope check --sarif flowscope.sarif --baseline flowscope-baseline.json scenarios/checkout.py

    flowscope's options come before the target; what follows it is the scenario's own arguments.
    Exit status: 0 passed, 1 a finding at or above --fail-on, 2 the scenario could not run (or
    the configuration or baseline is unusable).
    """
    import json
    from pathlib import Path

    from .ci._baseline import BaselineError, baseline_json, read_baseline
    from .ci._project_config import ConfigError, load_project_config
    from .performance import BenchmarkError, CheckError, print_process_report, run_check

    try:
        config = load_project_config(Path(config_path) if config_path else None)
        baseline = read_baseline(baseline_path) if baseline_path else None
        result = run_check(target, args, fail_on=fail_on or config.fail_on or "medium", config=config,
                           baseline=baseline)
    except (CheckError, BenchmarkError, ConfigError, BaselineError) as err:
        raise _UserError(str(err)) from None
    console = _console()
    print_process_report(result.report, console)
    _print_adoption(result, console)
    if write_baseline_path:
        _write_file("--write-baseline", write_baseline_path, baseline_json(result.report.recommendations), console)
    if sarif_path:
        from .ci._sarif import sarif_json

        _write_file("--sarif", sarif_path, sarif_json(result), console)
    if json_path:
        _write_file("--json", json_path, json.dumps(result.to_dict(), indent=2, default=str), console)
    if html_path:
        _write_file("--html", html_path, result.report.to_html(), console)
    if junit_path:
        from .ci._formats import junit_xml

        _write_file("--junit", junit_path, junit_xml(result), console)
    if annotations == "github":
        from .ci._formats import github_annotations

        for line in github_annotations(result):
            click.echo(line)
    if result.unmeasured_only:
        console.print(f"[bold red]check failed[/bold red]: {result.unmeasured_only}")
        raise SystemExit(1)
    if result.passed:
        console.print(f"[bold green]check passed[/bold green]: no recommendation at or above {result.fail_on}"
                      + (" that the baseline does not know" if result.baseline is not None else ""))
        return
    console.print(f"[bold red]check failed[/bold red]: {len(result.failing)} recommendation(s) at or "
                  f"above {result.fail_on}" + (" not in the baseline" if result.baseline is not None else "")
                  + ": " + ", ".join(f"{r.kind} in {r.operation}" for r in result.failing),
                  soft_wrap=True)
    raise SystemExit(1)


def _print_adoption(result: Any, console: Console) -> None:
    """What [tool.flowscope] ignored and what the baseline knew, in a few lines."""
    for rec, rule in result.ignored:
        console.print(f"ignored ({result.config.source}): {rec.kind} in {rec.operation}: {rule.reason}", soft_wrap=True)
    compared = result.baseline
    if compared is None:
        return
    console.print(f"baseline: {len(compared.new)} new, {len(compared.known)} known (not failing), "
                  f"{len(compared.gone)} gone", soft_wrap=True)
    for key in compared.gone:
        where = f" at {key.file} in {key.function}" if key.file else ""
        console.print(f"  gone: {key.kind} in {key.operation}{where} (fixed, or not run this time)", soft_wrap=True)


# -- benchmarking and load testing (issue 4) ------------------------------------------------------

@main.command()
@click.argument("targets", nargs=-1, required=True, metavar="MODULE:FUNCTION...")
@click.option("--iterations", "-i", type=int, default=20, show_default=True, metavar="N",
              help="Samples kept per function (at least 2 to compare).")
@click.option("--warmup", type=int, default=2, show_default=True, metavar="N", help="Rounds discarded first.")
@click.option("--min-time", type=float, default=0.005, show_default=True, metavar="SECONDS",
              help="Shortest sample; fast functions are looped until a sample lasts this long.")
@click.option("--clock", type=click.Choice(["wall", "cpu"]), default="wall", show_default=True,
              help="wall: elapsed time (includes database waits); cpu: this process's CPU time "
                   "(ignores other processes on a busy machine).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap interval.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write the result (every sample) as JSON.")
@_html_option
@click.option("--compare-to", "saved_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="A result saved with --json earlier: say what changed since, per function.")
@click.option("--fail-on-regression", "regression_percent", type=click.FloatRange(min=0), default=None,
              metavar="PCT", help="With --compare-to: exit 1 when a function is significantly slower than "
                                  "in the saved result by more than PCT percent.")
def bench(targets: tuple[str, ...], iterations: int, warmup: int, min_time: float, clock: str, seed: int,
          json_path: str | None, html_path: str | None, saved_path: str | None,
          regression_percent: float | None) -> None:
    """Time zero-argument functions and compare each with the first (Mann-Whitney U test).

    \b
    $ flowscope bench mymodule:encode_json mymodule:encode_msgpack --json bench.json
    $ flowscope bench mymodule:encode_json mymodule:encode_msgpack --compare-to bench.json
    $ flowscope bench mymodule:encode_json --compare-to main.json --fail-on-regression 10   # a CI gate
    """
    if regression_percent is not None and saved_path is None:
        raise _UserError("--fail-on-regression needs --compare-to FILE (the saved result to compare with)")
    from .benchmark._targets import callable_target
    from .benchmark._terminal import print_comparison, print_result_comparison
    from .performance import BenchmarkError, ComparisonResult, compare

    try:
        functions = {target: callable_target(target, from_current_directory=True) for target in targets}
        saved = ComparisonResult.load(saved_path) if saved_path else None
        result = compare(functions, iterations=iterations, warmup=warmup, min_time=min_time, clock=clock,
                         seed=seed)
        change = result.compare_to(saved) if saved is not None else None
    except BenchmarkError as err:
        raise _UserError(str(err)) from None
    except OSError as err:
        raise _UserError(f"--compare-to: {err}") from None
    console = _console()
    print_comparison(result, console)
    if change is not None:
        print_result_comparison(change, console)
    if json_path:
        _write_file("--json", json_path, result.to_json(), console)
    if html_path:
        _write_file("--html", html_path, result.to_html(), console)
    if change is not None and regression_percent is not None:
        slower = change.regressions(regression_percent)
        if slower:
            console.print(f"[bold red]regression[/bold red]: " + "; ".join(
                f"{c.subject} is {c.change_percent:+.1f}% slower than in {saved_path} (p={c.p_value:.3g})"
                for c in slower) + f", over the {regression_percent:g}% allowed", soft_wrap=True)
            raise SystemExit(1)
        console.print(f"[bold green]no regression[/bold green] over {regression_percent:g}% against {saved_path}")


@main.command("load-test")
@click.argument("target", metavar="MODULE:WORKFLOW_CLASS")
@click.option("--concurrency", "-c", type=int, default=10, show_default=True, metavar="N",
              help="Executions running at once.")
@click.option("--operations", "-n", type=int, default=5, show_default=True, metavar="N",
              help="Actions each execution performs at most.")
@click.option("--processes", is_flag=True, help="Run executions in worker processes (past the GIL).")
@click.option("--workers", type=int, default=None, metavar="N",
              help="Worker processes with --processes [default: one per CPU].")
@click.option("--database-url", default=None, metavar="URL",
              help="SQLAlchemy URL [default: a temporary SQLite file, removed afterwards].")
@click.option("--policy", type=click.Choice(["first", "random"]), default="first", show_default=True,
              help="Which available action each execution performs.")
@click.option("--user", default="load-test", show_default=True, help="The user performing the actions.")
@click.option("--seed", type=int, default=None, help="Seed of the random policy [default: chosen and reported].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write the result as JSON.")
@_html_option
def load_test_command(target: str, concurrency: int, operations: int, processes: bool, workers: int | None,
                      database_url: str | None, policy: str, user: str, seed: int | None,
                      json_path: str | None, html_path: str | None) -> None:
    """Run many executions of a workflow class at once: throughput, latency, errors.

    \b
    $ flowscope load-test flowscope.examples:DocumentApproval -c 10 -n 5
    $ flowscope load-test myapp.workflows:Onboarding -c 40 --processes --database-url postgresql+psycopg://...

    Ctrl-C stops early and still prints what was measured (exit status 130).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .benchmark._targets import workflow_class
    from .benchmark._terminal import print_load_test
    from .performance import BenchmarkError, LoadProgress, load_test

    console = _console()
    try:
        workflow = workflow_class(target, from_current_directory=True)
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("operations"), TextColumn("{task.fields[errors]} errors"), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task(f"load-testing {workflow.__qualname__}", total=concurrency * max(operations, 0),
                                errors=0)

            def advance(state: LoadProgress) -> None:
                bar.update(task, completed=state.done, errors=state.errors)

            result = load_test(workflow, concurrent_executions=concurrency, operations_per_execution=operations,
                               mode="processes" if processes else "threads", database_url=database_url,
                               action_policy=policy, seed=seed, workers=workers, user=user, progress=advance)
    except BenchmarkError as err:
        raise _UserError(str(err)) from None
    print_load_test(result, console)
    if json_path:
        _write_file("--json", json_path, result.to_json(), console)
    if html_path:
        _write_file("--html", html_path, result.to_html(), console)
    if result.interrupted:
        raise SystemExit(130)


def _write_file(option: str, path: str, text: str, console: Console) -> None:
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    except OSError as err:
        raise _UserError(f"{option}: cannot write {path}: {err}") from None
    console.print(f"wrote {path}", style="dim")
